"""Tenant isolation over the running product (issue 6): tenant A's agent, admin and owner aim every console and
admin route that takes an id at tenant B's rows, fetch B's files, open the visitor socket with B's visitor and
listen to the console's live stream, and none of it shows or changes anything of B's.

The routes are read from the Flask app's url_map, so a route added later is walked too: any argument named
`*_id` (or a uuid or int converter) is aimed at B's row of that kind (AIMS; a new kind of id fails the walk until
it is added there). Every answer must be 404 or 403, or 400 for a form the route could not even read; and B's
rows, read before and after straight from PostgreSQL, must be the same.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select, text
from werkzeug.routing import Rule
from werkzeug.routing.converters import AnyConverter, IntegerConverter, UUIDConverter

from desk import tokens
from desk.actions import rules as routing_rules
from desk.actions.tenants import do_create_user
from desk.audit import Client
from desk.db import system_session, tenant_session
from desk.models import ApiKey, Invite, Label, Message, Schedule, Site, Tenant, User
from tests.clients import Agent, Visitor, session, start_conversation
from tests.conftest import Stack
from tests.factories import new_team
from tests.test_attachments import tiny_png
from web.edge import thread as edge_thread

# In every text tenant B writes: no answer to tenant A may contain it.
MARK = "bea-secret-" + secrets.token_hex(4)
# A word in the same texts, to search for: a page may repeat the search, never what it found.
WORD = "quokka" + secrets.token_hex(3)
REFUSED = {401, 403, 404}  # 401: the signed API refuses a caller without a signature (web/api/auth.py)
UNREADABLE = 400  # the route refused the form before looking anything up: also changes nothing
# Columns the product's own background work changes on its own (the presence sweeper turns silent agents away).
VOLATILE = {"users": {"presence", "presence_seen_at"}}
# What a form posted at B's rows carries: enough for any route here to act, were it to find the row.
FORM = {
    "body": "Written by tenant A",
    "name": "Taken over",
    "shortcut": "taken",
    "scope": "shared",
    "role": "admin",
    "email": "intruder@example.test",
    "presence": "online",
    "seq": "1",
    "client_id": "isolation-1",
    "label": "taken",
    "labels": "taken",
    "note": "taken",
    "until": "2030-01-01T00:00",
    "color": "#000000",
    "timezone": "UTC",
    "max_chats": "1",
    "allowed_origins": "https://evil.test",
    "is_active": "true",
}
UPLOAD = {"file": ("note.txt", b"Written by tenant A", "text/plain")}


@dataclass
class Theirs:
    """Tenant B and one row of every kind it owns, each made the way the product makes it where it can."""

    login: dict[str, Any]
    tenant_id: uuid.UUID
    site_id: uuid.UUID
    visitor_id: uuid.UUID
    visitor_token: str
    conversation_id: uuid.UUID
    message_id: int
    attachment_id: uuid.UUID
    attachment_filename: str
    attachment_url: str
    canned_id: uuid.UUID
    shared_canned_id: uuid.UUID
    agent_id: uuid.UUID
    owner_id: uuid.UUID
    team_id: uuid.UUID
    label_id: uuid.UUID
    key_id: uuid.UUID
    invite_id: uuid.UUID
    schedule_id: uuid.UUID
    rule_id: str  # a routing rule: a key in tenants.settings, not a row
    agent: Agent  # B's own agent, logged in: what the search finds when it may


@dataclass
class Ours:
    """Tenant A: its agent, an admin and the owner, logged in to the console."""

    login: dict[str, Any]
    tenant_id: uuid.UUID
    site_id: uuid.UUID
    people: dict[str, Agent] = field(default_factory=dict)


# A route argument that names a row -> tenant B's row of that kind.
AIMS: dict[str, Callable[[Theirs], object]] = {
    "conversation_id": lambda b: b.conversation_id,
    "message_id": lambda b: b.message_id,
    "visitor_id": lambda b: b.visitor_id,
    "attachment_id": lambda b: b.attachment_id,
    "canned_id": lambda b: b.canned_id,
    "user_id": lambda b: b.agent_id,
    "agent_id": lambda b: b.agent_id,
    "site_id": lambda b: b.site_id,
    "team_id": lambda b: b.team_id,
    "label_id": lambda b: b.label_id,
    "key_id": lambda b: b.key_id,
    "invite_id": lambda b: b.invite_id,
    "schedule_id": lambda b: b.schedule_id,
    "rule_id": lambda b: b.rule_id,
    "tenant_id": lambda b: b.tenant_id,
}


def tenant_ids(login: dict[str, Any]) -> tuple[uuid.UUID, uuid.UUID]:
    with system_session() as s:
        site = s.scalars(select(Site).where(Site.site_key == login["site_key"])).one()
        assert s.scalar(select(Tenant.slug).where(Tenant.id == site.tenant_id)) == login["tenant"]
        return site.tenant_id, site.id


def user_id(email: str) -> uuid.UUID:
    with system_session() as s:
        found = s.scalar(select(User.id).where(User.email == email))
        assert found is not None
        return found


def logged_in(base_url: str, email: str, password: str) -> Agent:
    agent = Agent(base_url)
    assert agent.login(email, password).status_code == 200
    assert agent.client.get("/console").status_code == 200
    return agent


def save_canned(agent: Agent, shortcut: str, body: str, shared: bool = False) -> uuid.UUID:
    page = agent.client.get("/console/canned").text
    data = {"shortcut": shortcut, "body": body, "csrf_token": Agent.csrf(page)} | (
        {"scope": "shared"} if shared else {}
    )
    assert agent.client.post("/console/canned", data=data).status_code == 200
    [found] = [r for r in agent.client.get("/console/canned/search", params={"q": shortcut}).json()["results"]
               if r["shortcut"] == shortcut and r["shared"] == shared]  # fmt: skip
    return uuid.UUID(found["id"])


def make_theirs(stack: Stack) -> Theirs:
    login = stack.bootstrap("bea")
    tenant_id, site_id = tenant_ids(login)

    async def visit() -> tuple[str, str, str]:
        visitor = Visitor(stack.base_url, str(login["site_key"]))
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "b-1", "body": f"{MARK} {WORD} my order number is 4711"})
        conversation = (await visitor.expect("ack"))["conversation_id"]
        await visitor.close()
        assert visitor.token and visitor.visitor_id
        return visitor.token, visitor.visitor_id, conversation

    token, visitor_id, conversation_id = asyncio.run(visit())
    bea = logged_in(stack.base_url, login["agents"][0]["email"], login["agents"][0]["password"])
    owner = logged_in(stack.base_url, login["owner_email"], login["owner_password"])
    assert bea.reply(conversation_id, f"{MARK} {WORD} we are on it").status_code == 200
    deadline = time.monotonic() + 30  # stored by the store worker after the POST: B's rows settle only then
    while len(bea.thread(conversation_id)) < 2:
        assert time.monotonic() < deadline, "B's reply was never stored"
        time.sleep(0.2)
    upload = httpx.post(
        f"{stack.base_url}/api/v1/widget/attachments",
        params={"token": token},
        files={"file": ("receipt.png", tiny_png(), "image/png")},
        timeout=10,
    )
    assert upload.status_code == 201, upload.text
    canned_id = save_canned(bea, "bea", f"{MARK} {WORD} own reply")
    shared_canned_id = save_canned(owner, "team", f"{MARK} {WORD} shared reply", shared=True)
    agent_id = user_id(login["agents"][0]["email"])
    team_id = new_team(tenant_id, f"{MARK} {WORD} team", agent_id)
    # Labels, invites, API keys and business hours have no action of their own yet (the admin pages make them):
    # these rows are added as those pages would.
    with tenant_session(tenant_id) as s:
        label = Label(name=f"{MARK} {WORD} label")
        invite = Invite(
            email=f"new@{login['tenant']}.test",
            token_hash=secrets.token_hex(32),
            expires_at=datetime.now(UTC) + timedelta(days=7),
        )
        key = ApiKey(name=f"{MARK} {WORD} key", prefix=secrets.token_hex(6), secret_hash=secrets.token_hex(32))
        schedule = Schedule(team_id=team_id, timezone="Europe/Paris", weekly={"mon": [["09:00", "17:00"]]})
        s.add_all([label, invite, key, schedule])
        s.commit()
        message_id = s.scalar(select(Message.id).where(Message.conversation_id == uuid.UUID(conversation_id)))
        rule = routing_rules.do_add_rule(
            s,
            s.get(User, user_id(login["owner_email"])),
            Client("127.0.0.1", "setup"),
            {"when": "page_contains", "value": f"/{WORD}", "team_id": str(team_id)},
        )
    attachment = upload.json()
    return Theirs(
        login=login,
        tenant_id=tenant_id,
        site_id=site_id,
        visitor_id=uuid.UUID(visitor_id),
        visitor_token=token,
        conversation_id=uuid.UUID(conversation_id),
        message_id=message_id,
        attachment_id=uuid.UUID(attachment["id"]),
        attachment_filename=attachment["filename"],
        attachment_url=attachment["url"],
        canned_id=canned_id,
        shared_canned_id=shared_canned_id,
        agent_id=agent_id,
        owner_id=user_id(login["owner_email"]),
        team_id=team_id,
        label_id=label.id,
        key_id=key.id,
        invite_id=invite.id,
        schedule_id=schedule.id,
        rule_id=rule["id"],
        agent=bea,
    )


def make_ours(stack: Stack) -> Ours:
    login = stack.bootstrap("amy")
    tenant_id, site_id = tenant_ids(login)
    admin_email, admin_password = f"admin@{login['tenant']}.test", secrets.token_urlsafe(12)
    with tenant_session(tenant_id) as s:
        do_create_user(s, email=admin_email, name="Ada", role="admin", password=admin_password)
    ours = Ours(login=login, tenant_id=tenant_id, site_id=site_id)
    agent = login["agents"][0]
    ours.people["agent"] = logged_in(stack.base_url, agent["email"], agent["password"])
    ours.people["admin"] = logged_in(stack.base_url, admin_email, admin_password)
    ours.people["owner"] = logged_in(stack.base_url, login["owner_email"], login["owner_password"])
    return ours


@pytest.fixture(scope="module")
def theirs(stack: Stack) -> Theirs:
    return make_theirs(stack)


@pytest.fixture(scope="module")
def ours(stack: Stack) -> Ours:
    return make_ours(stack)


# -- B's rows, straight from PostgreSQL ----------------------------------------------------------------------------


def rows_of(tenant_id: uuid.UUID) -> dict[str, list[str]]:
    """Every row of every table with a tenant_id (found in the catalog, so new tables count), and the tenant."""
    with system_session() as s:
        tables = s.scalars(
            text(
                "SELECT table_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY table_name"
            )
        ).all()
        found = {"tenants": _rows(s, "tenants", "id", tenant_id)}
        for table in tables:
            found[table] = _rows(s, table, "tenant_id", tenant_id)
    return found


def _rows(s: Any, table: str, column: str, tenant_id: uuid.UUID) -> list[str]:
    rows = s.execute(text(f"SELECT * FROM {table} WHERE {column} = :t"), {"t": tenant_id}).mappings()
    skip = VOLATILE.get(table, set())
    return sorted(json.dumps({k: v for k, v in row.items() if k not in skip}, default=str) for row in rows)


@pytest.fixture
def unchanged(theirs: Theirs) -> Iterator[None]:
    """B's rows are the same after the test as before it (once the worker has finished B's own work)."""
    before = settled(theirs.tenant_id)
    yield
    time.sleep(0.5)  # anything a request set off in the worker
    after = rows_of(theirs.tenant_id)
    changed = {t: (before[t], after.get(t)) for t in before if before[t] != after.get(t)}
    assert not changed, f"tenant B's rows changed: {changed}"


def settled(tenant_id: uuid.UUID, timeout: float = 15) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    rows = rows_of(tenant_id)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = rows_of(tenant_id)
        if again == rows:
            return rows
        rows = again
    raise AssertionError("tenant B's rows kept changing")


# -- the walk ------------------------------------------------------------------------------------------------------


def web_rules() -> list[Rule]:
    """The web app's routes, read from an app whose NATS connection is closed (it would outlive the suite's)."""
    from web import create_app

    app = create_app()
    if (bus := app.extensions["deskbell.bus"]) is not None:
        bus.close()
    return list(app.url_map.iter_rules())


def aimed_rules() -> list[Rule]:
    """Every route of the web app with an argument that names a row."""
    return sorted(
        (r for r in web_rules() if any(_names_a_row(r, a) for a in r.arguments)),
        key=lambda r: r.rule,
    )


def _names_a_row(rule: Rule, argument: str) -> bool:
    return argument.endswith("_id") or isinstance(rule._converters[argument], UUIDConverter | IntegerConverter)


def aimed_url(rule: Rule, b: Theirs) -> str:
    values: dict[str, object] = {}
    for argument in rule.arguments:
        converter = rule._converters[argument]
        if _names_a_row(rule, argument):
            assert argument in AIMS, f"{rule.rule} takes `{argument}`: add tenant B's row of that kind to AIMS"
            values[argument] = AIMS[argument](b)
        elif argument == "filename":
            values[argument] = b.attachment_filename
        elif isinstance(converter, AnyConverter):
            values[argument] = sorted(converter.items)[0]
        else:
            values[argument] = "x"
    built = rule.build(values, append_unknown=False)
    assert built is not None
    return built[1]


def test_the_walk_covers_the_console_and_admin_routes_that_take_an_id() -> None:
    walked = {r.rule for r in aimed_rules()}
    assert "/console/c/<uuid:conversation_id>" in walked
    assert "/attachments/<uuid:attachment_id>/<filename>" in walked
    assert "/console/canned/<uuid:canned_id>" in walked


@pytest.mark.parametrize("role", ["agent", "admin", "owner"])
def test_a_tenants_people_reach_nothing_of_another_tenant_by_id(
    stack: Stack, ours: Ours, theirs: Theirs, role: str, unchanged: None
) -> None:
    person = ours.people[role]
    csrf = person.csrf_header()["X-CSRFToken"]
    answers: dict[str, int] = {}
    leaks: list[str] = []
    for rule in aimed_rules():
        url = aimed_url(rule, theirs)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET":
                response = person.client.get(url, follow_redirects=False)
            else:
                response = person.client.request(
                    method,
                    url,
                    data=FORM | {"csrf_token": csrf},
                    files=UPLOAD,  # multipart, so a route that takes a file gets as far as looking up the row
                    headers={"X-CSRFToken": csrf},
                    follow_redirects=False,
                )
            answers[f"{method} {url}"] = response.status_code
            if MARK in response.text:
                leaks.append(f"{method} {url}")

    allowed = REFUSED | {UNREADABLE}
    assert {call: status for call, status in answers.items() if status not in allowed} == {}
    assert leaks == []
    assert person.client.get("/console").status_code == 200, "still logged in: the refusals were not for that"


def listed_pages() -> list[str]:
    """Every GET page of the web app that names no row (lists, search, exports), each choice of an `any` argument."""
    pages = []
    for rule in web_rules():
        converters = [rule._converters[a] for a in rule.arguments]
        if "GET" not in rule.methods or not all(isinstance(c, AnyConverter) for c in converters):
            continue
        choices = [{}] if not rule.arguments else [{a: o} for a in rule.arguments for o in rule._converters[a].items]
        pages += [rule.build(values, append_unknown=False)[1] for values in choices]  # type: ignore[index]
    return sorted(pages)


@pytest.mark.parametrize("role", ["agent", "admin", "owner"])
def test_a_tenants_lists_searches_and_exports_show_nothing_of_another_tenant(
    stack: Stack, ours: Ours, theirs: Theirs, role: str
) -> None:
    person = ours.people[role]
    # `q` for every page: the console's search and the saved replies' search look for B's word.
    shown = [page for page in listed_pages() if MARK in person.client.get(page, params={"q": WORD}).text]
    assert "/console/search" in listed_pages()
    assert MARK in theirs.agent.client.get("/console/search", params={"q": WORD}).text  # B's own agent finds it
    assert shown == []


# -- files ---------------------------------------------------------------------------------------------------------


def test_another_tenants_file_is_not_found_by_its_agents_or_visitors(
    stack: Stack, ours: Ours, theirs: Theirs, unchanged: None
) -> None:
    our_visitor = session(stack.base_url, str(ours.login["site_key"])).json()["visitor_token"]

    answers = {role: person.client.get(theirs.attachment_url).status_code for role, person in ours.people.items()} | {
        "our visitor": httpx.get(theirs.attachment_url, params={"token": our_visitor}).status_code
    }

    assert answers == {"agent": 404, "admin": 404, "owner": 404, "our visitor": 404}
    assert httpx.get(theirs.attachment_url, params={"token": theirs.visitor_token}).status_code == 200  # B's own


# -- the visitor socket --------------------------------------------------------------------------------------------


def test_another_tenants_visitor_token_on_our_site_starts_a_new_empty_thread(
    stack: Stack, ours: Ours, theirs: Theirs, unchanged: None
) -> None:
    async def scenario() -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        visitor = Visitor(stack.base_url, str(ours.login["site_key"]), token=theirs.visitor_token)
        welcome = await visitor.connect()
        await asyncio.sleep(1)  # anything the socket would replay or forward
        with_frames = []
        try:
            while True:
                with_frames.append(await visitor.recv(timeout=0.5))
        except TimeoutError:
            pass
        await visitor.close()
        assert visitor.visitor_id is not None
        return visitor.visitor_id, welcome, with_frames

    visitor_id, welcome, frames = asyncio.run(scenario())

    assert visitor_id != str(theirs.visitor_id)
    assert welcome["last_seq"] == 0
    assert [f for f in frames if f["type"] not in ("ping", "pong")] == []


MIXED_CLAIMS = {  # (tenant, site) of a token for their visitor
    "our tenant and site, their visitor": lambda a, b: (a.tenant_id, a.site_id),
    "their tenant, our site, their visitor": lambda a, b: (b.tenant_id, a.site_id),
    "our tenant, their site and visitor": lambda a, b: (a.tenant_id, b.site_id),
}


@pytest.mark.parametrize("claims", MIXED_CLAIMS)
def test_a_signed_token_that_mixes_tenants_is_refused_by_the_socket_and_the_long_poll(
    stack: Stack, ours: Ours, theirs: Theirs, claims: str, unchanged: None
) -> None:
    """Tokens are signed, so these can only come from a bug; the tenant scoping still finds no such visitor."""
    tenant, site = MIXED_CLAIMS[claims](ours, theirs)
    secret = stack.env["SECRET_KEY"]
    token = tokens.issue(secret, tokens.VisitorClaims(tenant, site, theirs.visitor_id))

    async def socket_close_code() -> int | str:
        async with websockets.connect(f"{stack.ws_url}?token={token}") as ws:
            try:
                await ws.send(json.dumps({"type": "hello", "last_seq": 0}))
                return f"answered: {await asyncio.wait_for(ws.recv(), 10)}"
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else "closed without a code"

    poll = httpx.get(f"{stack.base_url}/lp/visitor", params={"token": token, "last_seq": 0, "wait": 0}, timeout=10)

    assert asyncio.run(socket_close_code()) == 4401
    assert poll.status_code == 401 and MARK not in poll.text


@pytest.mark.parametrize("claims", MIXED_CLAIMS)
def test_a_new_sockets_read_names_the_tenant_itself_where_row_level_security_lets_all_through(
    ours: Ours, theirs: Theirs, claims: str
) -> None:
    """The socket's one read runs in Core (issue 10), which the ORM's tenant criteria do not reach: run in a system
    session, which row-level security does not limit, it still finds no site or no visitor for a mixed token."""
    tenant, site = MIXED_CLAIMS[claims](ours, theirs)

    def read(tenant_id: uuid.UUID, site_id: uuid.UUID) -> Any:
        ids = {"tenant_id": tenant_id, "site_id": site_id, "visitor_id": theirs.visitor_id}
        with system_session() as s:
            return s.connection().execute(edge_thread._ADMISSION, ids).first()

    mixed, own = read(tenant, site), read(theirs.tenant_id, theirs.site_id)
    # The columns: the site's allowed origins, the tenant's status, then the thread: its last seq (None: no such
    # visitor, so the socket closes with 4401), its open conversation, how far agents have read.
    assert mixed is None or tuple(mixed[2:]) == (None, None, 0)
    assert own is not None and own[2] is not None and own[3] == theirs.conversation_id


# -- the console's live stream -------------------------------------------------------------------------------------


class Stream:
    """The console's SSE stream, read on a thread: (event, data) pairs as they come."""

    def __init__(self, agent: Agent) -> None:
        self.events: list[tuple[str, str]] = []
        self._agent, self._stop = agent, threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event = ""
        try:
            with self._agent.client.stream("GET", "/live/console", timeout=httpx.Timeout(10, read=30)) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        event = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        self.events.append((event, line.removeprefix("data:").strip()))
        except httpx.HTTPError:
            pass

    def wait_for(self, found: Callable[[tuple[str, str]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(found(e) for e in list(self.events)):
                return
            time.sleep(0.05)
        raise AssertionError(f"no such event within {timeout} s; heard {self.events}")

    def close(self) -> None:
        self._stop.set()


def test_the_console_stream_carries_nothing_of_another_tenant(stack: Stack, ours: Ours, theirs: Theirs) -> None:
    stream = Stream(ours.people["agent"])
    try:
        stream.wait_for(lambda e: e[0] == "resync")  # subscribed
        their_key = str(theirs.login["site_key"])
        their_conversation = start_conversation(stack.base_url, their_key, f"{MARK} {WORD} are you there")
        our_conversation = start_conversation(stack.base_url, str(ours.login["site_key"]), "Hello from A's visitor")
        stream.wait_for(lambda e: e == ("conversation", our_conversation))  # the stream is live
    finally:
        stream.close()

    theirs_mentioned = [e for e in stream.events if their_conversation in e[1] or MARK in e[1]]
    conversations = {data for name, data in stream.events if name == "conversation"}
    assert theirs_mentioned == []
    assert conversations == {our_conversation}
