"""Issue 7, fuzzing: the visitor frame parser and every JSON endpoint (the widget's session and attachments, the
console's JSON routes, the signed server API) take thousands of generated inputs: no 5xx, no crash, and no
unhandled exception in the logs; what is refused gets a 4xx with a JSON message.

The endpoints are called in-process (Flask's test client; httpx's ASGI transport for the widget's session request,
which the edge serves), on the test database, so every log record of the app can be caught (a handler on the root
logger). Each test's example count is bounded; in all a few thousand.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desk.protocol import FrameError, Hello, Ping, Pong, Send, Typing, parse_client_frame
from desk.settings import Limits
from tests.admin.conftest import Person
from tests.clients import asgi_post, in_process
from tests.conftest import Stack

LIMITS = Limits()
SESSION = "/api/v1/widget/session"
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- what the generators make ------------------------------------------------------------------------------------

# Text that includes what breaks naive code: NUL, lone surrogates, RTL marks, very long runs.
WILD_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60) | st.sampled_from(
    ["", " ", "\x00", "\ud800", "\u202e", "null", "-1", "1e309", "9" * 30, "NaN", "a" * 5000, "<script>", "../../etc"]
)
# What a client can put in a URL or a form: any text but lone surrogates (which cannot be encoded to be sent).
FORM_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    ["", " ", "\x00", "\u202e", "-1", "9" * 30, "a" * 5000, "<script>", "%00", "' OR 1=1 --", "*", "\\"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | WILD_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WILD_TEXT, inner, max_size=4), max_leaves=12
)


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with some of the expected keys, each a plausible or a wild value, and maybe stray keys."""
    optional = {key: strategy | JSON_VALUES for key, strategy in fields.items()}
    return st.fixed_dictionaries({}, optional=optional).flatmap(
        lambda d: st.dictionaries(WILD_TEXT, JSON_VALUES, max_size=2).map(lambda extra: {**extra, **d})
    )


def to_json(value: Any) -> str:
    """JSON as a client might send it: Python's encoder, which writes NaN/Infinity and lone surrogates escaped."""
    return json.dumps(value)


FRAMES = shaped(
    {
        "type": st.sampled_from(["hello", "message", "typing", "ping", "pong", "ack", "HELLO", ""]),
        "client_id": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7F), max_size=70),
        "body": WILD_TEXT,
        "last_seq": st.integers(min_value=-5, max_value=2**64),
    }
)


# -- the frame parser ---------------------------------------------------------------------------------------------


@settings(max_examples=1500, deadline=None)
@given(raw=st.one_of(FRAMES.map(to_json), JSON_VALUES.map(to_json), st.text(), st.binary()))
def test_the_frame_parser_answers_every_input_with_a_frame_or_a_frame_error(raw: str | bytes) -> None:
    try:
        frame = parse_client_frame(raw, LIMITS)
    except FrameError as refused:
        error = refused.frame()
        assert error["type"] == "error" and error["code"] and error["message"]
        json.dumps(error)  # it can be sent back
        return
    assert isinstance(frame, Hello | Send | Typing | Ping | Pong)
    if isinstance(frame, Send):  # what is taken can be stored and sent on
        assert frame.body.strip() and len(frame.body) <= LIMITS.message_chars and "\x00" not in frame.body
        frame.body.encode("utf-8")
        assert 1 <= len(frame.client_id) <= LIMITS.client_id_chars and frame.client_id.isascii()
    if isinstance(frame, Hello):
        assert isinstance(frame.last_seq, int) and frame.last_seq >= 0


def test_the_frame_parser_refuses_a_frame_over_the_size_limit() -> None:
    big = to_json({"type": "message", "client_id": "a", "body": "x" * (LIMITS.frame_bytes + 1)})
    with pytest.raises(FrameError) as refused:
        parse_client_frame(big, LIMITS)
    assert refused.value.code == "frame_too_large"


# -- the app, in-process, with its logs watched ------------------------------------------------------------------


class Errors(logging.Handler):
    """Every record at ERROR or above, from any logger: Flask logs an unhandled exception as one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        found = [f"{r.name}: {r.getMessage()[:300]} {r.exc_text or ''}"[:1500] for r in self.records]
        self.records.clear()
        return found


@pytest.fixture(scope="module")
def errors() -> Iterator[Errors]:
    handler = Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def app(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The Flask app as `web` runs it, on the test database and NATS, with the per-address session and API limits off
    (the fuzzer is one address making thousands) and its own data folder."""
    from web import create_app

    env = {
        "DESKBELL_SESSIONS_PER_IP_PER_HOUR": "0",
        "DESKBELL_API_REQUESTS_PER_IP_PER_MINUTE": "0",
        "DESKBELL_UPLOADS_PER_HOUR": "100000",
        "DESKBELL_DATA": str(tmp_path_factory.mktemp("fuzz-data")),
    }
    with mock.patch.dict(os.environ, env):
        flask_app = create_app()
    yield flask_app
    bus = flask_app.extensions.get("deskbell.bus")
    if bus is not None:
        bus.close()  # else it outlives the suite's nats-server, reconnecting


@pytest.fixture(scope="module")
def edge(app: Flask) -> Any:
    """The whole ASGI application around `app`, as `web` serves it (the session request is the edge's)."""
    return in_process(app)


@pytest.fixture(scope="module")
def place(stack: Stack, app: Flask) -> dict[str, Any]:
    """A tenant (made by `deskbell bootstrap`), a visitor's token and conversation, a logged-in agent's test client
    with its CSRF token, and an API key."""
    from tests.clients import session as start_session
    from tests.clients import start_conversation

    made = stack.bootstrap("fuzzy")
    conversation = start_conversation(stack.base_url, str(made["site_key"]), "Fuzz me")
    session = start_session(stack.base_url, str(made["site_key"])).json()
    agent = app.test_client()
    login = made["agents"][0]
    token = Person.csrf_of(agent.get("/login").get_data(as_text=True))
    landed = agent.post("/login", data={"email": login["email"], "password": login["password"], "csrf_token": token})
    assert landed.status_code in (302, 303), landed.get_data(as_text=True)[:300]
    csrf = Person.csrf_of(agent.get(f"/console/c/{conversation}").get_data(as_text=True))
    return {
        "site_key": made["site_key"],
        "visitor_token": session["visitor_token"],
        "visitor_id": session["visitor_id"],
        "conversation": conversation,
        "agent": agent,
        "csrf": csrf,
        "owner_email": made["owner_email"],
    }


def answered_well(response: Any, where: str) -> None:
    """No 5xx, and a refusal says why in JSON."""
    assert response.status_code < 500, f"{where}: {response.status_code} {response.get_data(as_text=True)[:300]}"
    if response.status_code >= 400 and response.mimetype == "application/json":
        body = response.get_json()
        assert isinstance(body, dict) and (body.get("error") or body.get("message")), f"{where}: {body}"


def no_errors_logged(errors: Errors) -> None:
    found = errors.take()
    assert found == [], "\n".join(found[:5])


# -- the widget's session ------------------------------------------------------------------------------------------

TOKENS = st.sampled_from(["", "x", "a.b.c", "eyJ0eXAiOiJKV1QifQ." + "A" * 40]) | FORM_TEXT
SESSION_FIELDS = {
    "site_key": WILD_TEXT,
    "visitor_token": TOKENS,
    "identity": shaped(
        {"external_id": WILD_TEXT, "hash": WILD_TEXT | st.just("0" * 64), "name": WILD_TEXT, "email": WILD_TEXT}
    ),
    "email": WILD_TEXT | st.emails().map(str),
    "page": shaped(
        {
            "url": WILD_TEXT | st.just("https://shop.test/?utm_source=x&utm_medium=%00"),
            "title": WILD_TEXT,
            "referrer": WILD_TEXT,
        }
    ),  # fmt: skip
    "attributes": st.dictionaries(WILD_TEXT, SCALARS, max_size=6),
    "language": WILD_TEXT,
    "timezone": WILD_TEXT,
    "screen": WILD_TEXT,
}


@FUZZ
@given(data=st.data())
def test_the_widget_session_answers_every_body_without_a_server_error(
    edge: Any, place: dict[str, Any], errors: Errors, data: st.DataObject
) -> None:
    errors.take()  # only what this example causes
    body = data.draw(shaped(SESSION_FIELDS))
    # Most examples name the real site and carry its real token, so they get past the first checks.
    if data.draw(st.booleans()):
        body["site_key"] = place["site_key"]
    if data.draw(st.booleans()):
        body.setdefault("visitor_token", place["visitor_token"])
    raw = data.draw(st.sampled_from(["json", "json", "json", "bytes"]))
    if raw == "json":
        content, kind = to_json(body).encode(), "application/json"
    else:
        content = data.draw(st.binary(max_size=200))
        kind = data.draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
    response = asgi_post(edge, SESSION, content=content, headers={"Content-Type": kind})
    where = f"session {body!r}"[:400]
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.json()["error"] and response.json()["message"], f"{where}: {response.text[:300]}"
    no_errors_logged(errors)


def widget_json_routes(app: Flask) -> list[str]:
    """Every POST route of the widget's API but the upload (multipart, fuzzed below): new ones join by themselves."""
    rules = app.url_map.iter_rules()
    return sorted(
        r.rule
        for r in rules
        if r.endpoint.startswith("widget_api.") and "POST" in (r.methods or ()) and "attachments" not in r.rule
    )


@FUZZ
@given(data=st.data())
def test_every_widget_json_route_answers_every_body_without_a_server_error(
    app: Flask, place: dict[str, Any], errors: Errors, data: st.DataObject
) -> None:
    errors.take()  # only what this example causes
    route = data.draw(st.sampled_from(widget_json_routes(app)))
    body = data.draw(shaped({**SESSION_FIELDS, "body": WILD_TEXT, "message": WILD_TEXT, "name": WILD_TEXT}))
    if data.draw(st.booleans()):
        body["visitor_token"] = place["visitor_token"]
        body["site_key"] = place["site_key"]
    token = place["visitor_token"] if data.draw(st.booleans()) else data.draw(TOKENS)
    response = app.test_client().post(
        route, query_string={"token": token}, data=to_json(body), content_type="application/json"
    )
    answered_well(response, f"{route} {body!r}"[:400])
    no_errors_logged(errors)


# -- attachments: the widget's and the console's --------------------------------------------------------------------

# A file name travels in a multipart header: text a client can encode (no lone surrogates), however odd.
FILE_NAMES = st.text(st.characters(exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    ["a.png", "../../etc/passwd", "x.svg", "x.html", ".htaccess", "CON", "a" * 300]
)
CONTENTS = st.binary(max_size=300) | st.sampled_from(
    [b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, b"<svg onload=alert(1)>", b"%PDF-1.4\n", b"GIF89a", b"\xff\xd8\xff\xe0"]
)
CONTENT_TYPES = st.sampled_from(["image/png", "image/svg+xml", "text/html", "application/pdf", "text/plain", ""])


@FUZZ
@given(data=st.data())
def test_the_widget_upload_answers_every_request_without_a_server_error(
    app: Flask, place: dict[str, Any], errors: Errors, data: st.DataObject
) -> None:
    errors.take()  # only what this example causes
    token = place["visitor_token"] if data.draw(st.booleans()) else data.draw(TOKENS)
    field = data.draw(st.sampled_from(["file", "file", "upload", ""]))
    files = {field: (FileLike(data.draw(CONTENTS)), data.draw(FILE_NAMES), data.draw(CONTENT_TYPES))}
    client = app.test_client()
    response = client.post(
        "/api/v1/widget/attachments",
        query_string={"token": token},
        data=files,
        content_type="multipart/form-data",
        headers={"Origin": data.draw(st.sampled_from(["https://shop.test", "null", ""]))},
    )
    answered_well(response, f"widget upload {files[field][1:]!r}")
    no_errors_logged(errors)


class FileLike:
    """Bytes as werkzeug's test client wants a file: something with read()."""

    def __init__(self, data: bytes) -> None:
        import io

        self.stream = io.BytesIO(data)

    def read(self, *args: Any) -> bytes:
        return self.stream.read(*args)


@FUZZ
@given(data=st.data())
def test_the_console_json_routes_answer_every_request_without_a_server_error(
    app: Flask, place: dict[str, Any], errors: Errors, data: st.DataObject
) -> None:
    errors.take()  # only what this example causes
    agent: FlaskClient = place["agent"]
    headers = {"X-CSRFToken": place["csrf"], "HX-Request": "true"}
    conversation = place["conversation"] if data.draw(st.booleans()) else str(data.draw(st.uuids()))
    route = data.draw(st.sampled_from(["canned", "search", "attach", "read", "presence", "heartbeat", "typing"]))
    if route == "canned":
        response = agent.get("/console/canned/search", query_string={"q": data.draw(FORM_TEXT)})
    elif route == "search":
        response = agent.get(
            "/console/search", query_string={"q": data.draw(FORM_TEXT)}, headers={"HX-Request": "true"}
        )
    elif route == "attach":
        files = {"file": (FileLike(data.draw(CONTENTS)), data.draw(FILE_NAMES), data.draw(CONTENT_TYPES))}
        response = agent.post(
            f"/console/c/{conversation}/attachments", data=files, headers=headers, content_type="multipart/form-data"
        )
    elif route == "read":
        seq = data.draw(FORM_TEXT | st.integers(min_value=-(2**70), max_value=2**70).map(str))
        response = agent.post(f"/console/c/{conversation}/read", data={"seq": seq}, headers=headers)
    elif route == "presence":
        response = agent.post("/console/presence", data={"presence": data.draw(FORM_TEXT)}, headers=headers)
    elif route == "heartbeat":
        response = agent.post("/console/presence/heartbeat", headers=headers)
    else:
        response = agent.post(
            f"/console/c/{conversation}/typing", data=data.draw(JSON_VALUES).__repr__(), headers=headers
        )
    answered_well(response, f"console {route}")
    assert "/login" not in response.headers.get("Location", ""), "the fuzzer's agent was logged out"
    no_errors_logged(errors)


# -- the signed server-to-server API --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_key(app: Flask, place: dict[str, Any]) -> str:
    """A key made by the admin action, as the API keys page makes one."""
    from sqlalchemy import select

    from desk.actions.api_keys import do_create_api_key
    from desk.audit import Client
    from desk.db import system_session, tenant_session
    from desk.models import User

    with system_session() as session:
        owner = session.scalar(select(User).where(User.email == place["owner_email"]))
        tenant_id, owner_id = owner.tenant_id, owner.id
    with tenant_session(tenant_id) as session:
        _key, full = do_create_api_key(
            session, session.get(User, owner_id), Client("127.0.0.1", "pytest"), "fuzz", app.config["SECRET_KEY"]
        )
        session.commit()
    return full


API_BODIES = shaped(
    {
        "body": WILD_TEXT,
        "sender": st.sampled_from(["agent", "bot", "visitor", ""]) | WILD_TEXT,
        "author_name": WILD_TEXT,
        "client_id": WILD_TEXT,
        "name": WILD_TEXT,
        "email": WILD_TEXT,
        "attributes": st.dictionaries(WILD_TEXT, SCALARS, max_size=4),
    }
)


@FUZZ
@given(data=st.data())
def test_the_signed_api_answers_every_signed_request_without_a_server_error(
    app: Flask, place: dict[str, Any], api_key: str, errors: Errors, data: st.DataObject
) -> None:
    errors.take()  # only what this example causes
    signing = pytest.importorskip("desk.signing")
    conversation = place["conversation"] if data.draw(st.booleans()) else str(data.draw(st.uuids()))
    visitor = place["visitor_id"] if data.draw(st.booleans()) else str(data.draw(st.uuids()))
    method, path = data.draw(
        st.sampled_from(
            [
                ("GET", "/api/v1/conversations"),
                ("GET", f"/api/v1/conversations/{conversation}"),
                ("GET", f"/api/v1/conversations/{conversation}/messages"),
                ("POST", f"/api/v1/conversations/{conversation}/messages"),
                ("POST", f"/api/v1/conversations/{conversation}/resolve"),
                ("GET", f"/api/v1/visitors/{visitor}"),
                ("PATCH", f"/api/v1/visitors/{visitor}"),
                ("GET", f"/api/v1/visitors/{visitor}/conversations"),
            ]
        )
    )
    if method == "GET":
        query = data.draw(st.dictionaries(st.sampled_from(["limit", "cursor", "status", "since", "q"]), FORM_TEXT))
        from urllib.parse import urlencode

        path = path + ("?" + urlencode(query) if query else "")
        body = b""
    else:
        body = to_json(data.draw(API_BODIES | JSON_VALUES)).encode() if data.draw(st.booleans()) else data.draw(
            st.binary(max_size=200))  # fmt: skip
    headers = signing.sign(api_key, method, path, body)
    client = app.test_client()
    response = client.open(path, method=method, data=body, headers={**headers, "Content-Type": "application/json"})
    answered_well(response, f"api {method} {path} {body[:200]!r}")
    assert response.status_code != 401, f"a correctly signed request was refused: {response.get_json()}"
    no_errors_logged(errors)
