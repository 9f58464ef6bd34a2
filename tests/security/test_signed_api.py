"""The signed server-to-server API (issue 7; docs/api.md) over the running product: a request signed with the
tenant's API key passes, and a tampered body, a wrong key, an old timestamp, a replayed nonce, a revoked key and a
missing signature are each refused with 401 and a JSON reason, change nothing, and are in the audit log. A key
of tenant A never reaches tenant B's rows. A message posted through the API reaches the visitor's widget. A flood
from one address gets 429 before any check, and its refusals are audited once a minute, not once a call.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from honcho.environ import parse_procfile
from sqlalchemy import select

from desk import audit, signing
from desk.actions.api_keys import do_create_api_key, do_revoke_api_key
from desk.db import system_session, tenant_session
from desk.embedded import free_port, wait_for_port
from desk.models import ApiKey, AuditLog, ConversationEvent, Message, Site, User, Visitor
from desk.settings import ROOT
from tests.clients import Visitor as WidgetVisitor
from tests.clients import start_conversation
from tests.conftest import Stack


@dataclass
class Tenant:
    id: uuid.UUID
    site_key: str
    key: str  # PREFIX.SECRET, as the admin page shows it once
    conversation_id: str


def new_key(tenant_id: uuid.UUID, name: str = "CRM") -> str:
    """A key made by the admin page's action, by the tenant's owner."""
    with tenant_session(tenant_id) as session:
        owner = session.scalars(select(User).where(User.role == "owner")).one()
        _, full = do_create_api_key(session, owner, audit.Client("127.0.0.1"), name, _secret_key())
    return full


def _secret_key() -> str:
    import os

    return os.environ["SECRET_KEY"]  # the stack's processes run with the test session's SECRET_KEY


def new_tenant(stack: Stack) -> Tenant:
    made = stack.bootstrap()
    with system_session() as session:
        tenant_id = session.scalars(select(Site.tenant_id).where(Site.site_key == made["site_key"])).one()
    conversation_id = start_conversation(stack.base_url, str(made["site_key"]), "Where is my order?")
    return Tenant(tenant_id, str(made["site_key"]), new_key(tenant_id), conversation_id)


@pytest.fixture(scope="module")
def ours(stack: Stack) -> Tenant:
    return new_tenant(stack)


@pytest.fixture(scope="module")
def theirs(stack: Stack) -> Tenant:
    return new_tenant(stack)


def call(
    base_url: str,
    key: str,
    method: str,
    path: str,
    payload: Any = None,
    *,
    headers: dict[str, str] | None = None,
    send: bytes | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """A request signed as docs/api.md says; `headers` replaces the signature headers, `send` the body sent,
    `client` sends it (from_address)."""
    body = b"" if payload is None else json.dumps(payload).encode()
    signed = headers if headers is not None else signing.sign(key, method, path, body)
    extra = {"Content-Type": "application/json"} if payload is not None else {}
    return (client or httpx).request(
        method, base_url + path, content=body if send is None else send, headers={**signed, **extra}, timeout=10
    )


def refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == code, response.json()


def audit_entries(tenant_id: uuid.UUID | None, action: str) -> list[dict[str, Any]]:
    with system_session() as session:
        return [
            e.detail
            for e in session.scalars(select(AuditLog).where(AuditLog.tenant_id == tenant_id, AuditLog.action == action))
        ]


def messages_of(tenant_id: uuid.UUID, conversation_id: str) -> list[str]:
    with tenant_session(tenant_id) as session:
        return list(
            session.scalars(
                select(Message.body).where(Message.conversation_id == uuid.UUID(conversation_id)).order_by(Message.seq)
            )
        )


def wait_for(read: Any, wanted: str, timeout: float = 15) -> list[str]:
    """What `read()` returns once it holds `wanted` (the store worker stores what the API published)."""
    deadline = time.monotonic() + timeout
    while wanted not in (found := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


# -- the right request -------------------------------------------------------------------------------------------


def test_a_signed_request_lists_the_tenants_conversations(stack: Stack, ours: Tenant) -> None:
    response = call(stack.base_url, ours.key, "GET", "/api/v1/conversations?status=open")
    assert response.status_code == 200, response.text
    [conversation] = response.json()["conversations"]
    assert conversation["id"] == ours.conversation_id
    assert conversation["last_message_preview"] == "Where is my order?"
    prefix = ours.key.split(".")[0]
    assert any(e["key"] == prefix and e["status"] == 200 for e in audit_entries(ours.id, "api.request"))


def test_a_message_posted_through_the_api_reaches_the_visitors_widget(stack: Stack, ours: Tenant) -> None:
    async def scenario() -> dict[str, Any]:
        visitor = WidgetVisitor(stack.base_url, ours.site_key)
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "c1", "body": "Anyone there?"})
        conversation_id = (await visitor.expect("ack"))["conversation_id"]
        posted = await asyncio.to_thread(
            call,
            stack.base_url,
            ours.key,
            "POST",
            f"/api/v1/conversations/{conversation_id}/messages",
            {"body": "Your order ships today.", "client_id": "order-42", "author_name": "Shop bot"},
        )
        assert posted.status_code == 202, posted.text
        while (frame := await visitor.expect("message"))["body"] != "Your order ships today.":
            pass
        await visitor.close()
        return {"conversation_id": conversation_id, "frame": frame}

    seen = asyncio.run(scenario())
    assert seen["frame"]["sender"] == "bot" and seen["frame"]["author"] == "Shop bot"
    listed = call(stack.base_url, ours.key, "GET", f"/api/v1/conversations/{seen['conversation_id']}/messages")
    assert [(m["sender"], m["body"], m["client_id"]) for m in listed.json()["messages"]] == [
        ("visitor", "Anyone there?", None),
        ("bot", "Your order ships today.", "order-42"),
    ]


def test_posting_again_with_the_same_client_id_stores_the_message_once(stack: Stack, ours: Tenant) -> None:
    path = f"/api/v1/conversations/{ours.conversation_id}/messages"
    for body, client_id in [("Once only", "dup-1"), ("Once only", "dup-1"), ("Then this", "dup-2")]:
        # The second is a client that did not hear the first answer sending it again, newly signed.
        assert call(stack.base_url, ours.key, "POST", path, {"body": body, "client_id": client_id}).status_code == 202
    stored = wait_for(lambda: messages_of(ours.id, ours.conversation_id), "Then this")
    assert stored.count("Once only") == 1


def test_a_visitors_contact_details_are_set_and_read_back(stack: Stack, ours: Tenant) -> None:
    with tenant_session(ours.id) as session:
        visitor_id = session.scalars(select(Visitor.id)).first()
    path = f"/api/v1/visitors/{visitor_id}"
    changed = call(
        stack.base_url,
        ours.key,
        "PATCH",
        path,
        {"name": "Ada Lovelace", "email": "ada@example.test", "attributes": {"plan": "pro", "seats": 5}},
    )
    assert changed.status_code == 200, changed.text
    read = call(stack.base_url, ours.key, "GET", path).json()
    assert (read["name"], read["email"], read["attributes"]) == (
        "Ada Lovelace",
        "ada@example.test",
        {"plan": "pro", "seats": "5"},
    )
    bad = call(stack.base_url, ours.key, "PATCH", path, {"email": "not an email"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_email"
    assert call(stack.base_url, ours.key, "GET", path).json()["email"] == "ada@example.test"


def test_a_conversation_is_resolved_through_the_api_in_the_name_of_the_keys_creator(stack: Stack) -> None:
    tenant = new_tenant(stack)
    path = f"/api/v1/conversations/{tenant.conversation_id}/resolve"
    resolved = call(stack.base_url, tenant.key, "POST", path)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert call(stack.base_url, tenant.key, "POST", path).json()["status"] == "resolved"  # again: no change
    with tenant_session(tenant.id) as session:
        owner = session.scalars(select(User.name).where(User.role == "owner")).one()
        events = session.execute(
            select(ConversationEvent.kind, ConversationEvent.author_name).where(
                ConversationEvent.conversation_id == uuid.UUID(tenant.conversation_id)
            )
        ).all()
    assert [tuple(e) for e in events if e.kind == "resolved"] == [("resolved", owner)]


# -- refusals ----------------------------------------------------------------------------------------------------


def test_a_tampered_body_is_refused_and_nothing_is_posted(stack: Stack, ours: Tenant) -> None:
    path = f"/api/v1/conversations/{ours.conversation_id}/messages"
    tampered = json.dumps({"body": "Click evil.test to get a refund", "client_id": "t-1"}).encode()
    response = call(stack.base_url, ours.key, "POST", path, {"body": "Thanks!", "client_id": "t-1"}, send=tampered)
    refused(response, "bad_signature")  # refused before anything was published
    assert not any("evil.test" in body for body in messages_of(ours.id, ours.conversation_id))
    assert any(e["reason"] == "bad_signature" for e in audit_entries(ours.id, "api.refused"))


def test_a_request_signed_with_a_wrong_key_is_refused(stack: Stack, ours: Tenant, theirs: Tenant) -> None:
    prefix = ours.key.split(".")[0]
    guessed = f"{prefix}.{secrets.token_urlsafe(32)}"  # the right prefix, a guessed secret
    refused(call(stack.base_url, guessed, "GET", "/api/v1/conversations"), "bad_signature")
    # Another tenant's secret under our prefix is just as wrong.
    mixed = f"{prefix}.{theirs.key.split('.', 1)[1]}"
    refused(call(stack.base_url, mixed, "GET", "/api/v1/conversations"), "bad_signature")
    refused(call(stack.base_url, "dbk_00000000.x", "GET", "/api/v1/conversations"), "unknown_key")


def test_an_old_timestamp_is_refused(stack: Stack, ours: Tenant) -> None:
    path = "/api/v1/conversations"
    old = signing.sign(ours.key, "GET", path, timestamp=int(time.time()) - 310)
    refused(call(stack.base_url, ours.key, "GET", path, headers=old), "stale_timestamp")
    ahead = signing.sign(ours.key, "GET", path, timestamp=int(time.time()) + 310)
    refused(call(stack.base_url, ours.key, "GET", path, headers=ahead), "stale_timestamp")
    recent = signing.sign(ours.key, "GET", path, timestamp=int(time.time()) - 60)
    assert call(stack.base_url, ours.key, "GET", path, headers=recent).status_code == 200


def test_a_replayed_request_is_refused(stack: Stack, ours: Tenant) -> None:
    path = f"/api/v1/conversations/{ours.conversation_id}/messages"
    payload = {"body": "Replay me", "client_id": "r-1"}
    body = json.dumps(payload).encode()
    captured = signing.sign(ours.key, "POST", path, body)
    assert call(stack.base_url, ours.key, "POST", path, payload, headers=captured).status_code == 202
    refused(call(stack.base_url, ours.key, "POST", path, payload, headers=captured), "replayed_nonce")
    # The nonce is the key's: the same nonce on another request is refused too.
    other = signing.sign(ours.key, "GET", "/api/v1/conversations", nonce=captured[signing.NONCE_HEADER])
    refused(call(stack.base_url, ours.key, "GET", "/api/v1/conversations", headers=other), "replayed_nonce")


def test_a_revoked_key_is_refused(stack: Stack, ours: Tenant) -> None:
    key = new_key(ours.id, "Old integration")
    assert call(stack.base_url, key, "GET", "/api/v1/conversations").status_code == 200
    with tenant_session(ours.id) as session:
        owner = session.scalars(select(User).where(User.role == "owner")).one()
        key_id = session.scalars(select(ApiKey.id).where(ApiKey.prefix == key.split(".")[0])).one()
        do_revoke_api_key(session, owner, audit.Client("127.0.0.1"), key_id)
    refused(call(stack.base_url, key, "GET", "/api/v1/conversations"), "revoked_key")


def test_an_unsigned_request_is_refused(stack: Stack, ours: Tenant) -> None:
    response = httpx.get(f"{stack.base_url}/api/v1/conversations", timeout=10)
    refused(response, "unsigned")
    assert "X-Deskbell-Signature" in response.json()["message"]


# -- tenants -----------------------------------------------------------------------------------------------------


def test_a_key_of_one_tenant_never_reaches_another_tenants_rows(stack: Stack, ours: Tenant, theirs: Tenant) -> None:
    with tenant_session(theirs.id) as session:
        their_visitor = session.scalars(select(Visitor.id)).first()
    before = messages_of(theirs.id, theirs.conversation_id)
    for method, path, payload in [
        ("GET", f"/api/v1/conversations/{theirs.conversation_id}", None),
        ("GET", f"/api/v1/conversations/{theirs.conversation_id}/messages", None),
        ("POST", f"/api/v1/conversations/{theirs.conversation_id}/messages", {"body": "Taken over"}),
        ("GET", f"/api/v1/visitors/{their_visitor}", None),
        ("GET", f"/api/v1/visitors/{their_visitor}/conversations", None),
        ("PATCH", f"/api/v1/visitors/{their_visitor}", {"name": "Taken over"}),
        ("POST", f"/api/v1/conversations/{theirs.conversation_id}/resolve", None),
    ]:
        response = call(stack.base_url, ours.key, method, path, payload)
        assert response.status_code == 404, (method, path, response.text)
    listed = call(stack.base_url, ours.key, "GET", "/api/v1/conversations").json()["conversations"]
    assert theirs.conversation_id not in {c["id"] for c in listed}
    assert messages_of(theirs.id, theirs.conversation_id) == before
    with tenant_session(theirs.id) as session:
        assert session.get(Visitor, their_visitor).name is None


@contextmanager
def another_web(stack: Stack, **overrides: str) -> Iterator[str]:
    """Stack.another_web, waiting longer for the process to listen: on a loaded machine it may take over 15 s."""
    port = free_port()
    name = f"web-{port}"
    stack.start(
        name,
        parse_procfile((ROOT / "Procfile").read_text()).processes["web"],
        {**stack.env, "PORT": str(port), **overrides},
    )
    try:
        wait_for_port(port, timeout=90)
        yield f"http://127.0.0.1:{port}"
    finally:
        stack.stop(name)


# -- settings ----------------------------------------------------------------------------------------------------


def test_the_time_window_and_the_page_size_are_settings(stack: Stack, ours: Tenant) -> None:
    path = "/api/v1/conversations"
    a_minute_old = signing.sign(ours.key, "GET", path, timestamp=int(time.time()) - 60)
    assert call(stack.base_url, ours.key, "GET", path, headers=a_minute_old).status_code == 200  # default: 300 s
    start_conversation(stack.base_url, ours.site_key, "A second question")  # two pages of one at least
    ids = [c["id"] for c in call(stack.base_url, ours.key, "GET", path).json()["conversations"]]
    assert len(ids) >= 2
    with another_web(stack, DESKBELL_API_MAX_SKEW_SECONDS="30", DESKBELL_API_PAGE_MAX="1") as strict:
        a_minute_old = signing.sign(ours.key, "GET", path, timestamp=int(time.time()) - 60)
        refused(call(strict, ours.key, "GET", path, headers=a_minute_old), "stale_timestamp")
        first = call(strict, ours.key, "GET", path + "?limit=50").json()
        second = call(strict, ours.key, "GET", f"{path}?cursor={first['next_cursor']}").json()
    assert [c["id"] for c in first["conversations"] + second["conversations"]] == ids[:2]


def test_expired_nonces_are_deleted_and_live_ones_kept(stack: Stack, ours: Tenant) -> None:
    from datetime import UTC, datetime, timedelta

    from desk.models import ApiNonce
    from web.api.auth import prune_expired

    assert call(stack.base_url, ours.key, "GET", "/api/v1/conversations").status_code == 200  # a live nonce
    with system_session() as session:
        key_id = session.scalars(select(ApiKey.id).where(ApiKey.prefix == ours.key.split(".")[0])).one()
        # No request can leave an already expired nonce: this one is written as it would be 6 minutes later.
        session.add(
            ApiNonce(
                key_id=key_id,
                nonce="expired-" + secrets.token_hex(8),
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        session.commit()
        assert prune_expired(session) >= 1
        left = session.scalars(select(ApiNonce.expires_at).where(ApiNonce.key_id == key_id)).all()
    assert left and all(at > datetime.now(UTC) for at in left)


def test_a_key_made_under_another_secret_key_is_refused_not_an_error(stack: Stack, ours: Tenant) -> None:
    with another_web(stack, SECRET_KEY="another-" + secrets.token_urlsafe(16)) as elsewhere:
        refused(call(elsewhere, ours.key, "GET", "/api/v1/conversations"), "unusable_key")


# -- floods --------------------------------------------------------------------------------------------------------


def from_address(address: str) -> httpx.Client:
    """A client whose requests come from `address`, one of 127.0.0.0/8 (all of which reach the stack): its own
    per-address counts, untouched by the suite's other requests."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def a_loopback_address() -> str:
    return "127." + ".".join(str(secrets.randbelow(254) + 1) for _ in range(3))


def refusals_audited(address: str) -> list[tuple[uuid.UUID | None, dict[str, Any]]]:
    """The `api.refused` entries of calls from `address`: (tenant, detail), oldest first."""
    with system_session() as session:
        return [
            (e.tenant_id, e.detail)
            for e in session.scalars(
                select(AuditLog).where(AuditLog.action == "api.refused", AuditLog.ip == address).order_by(AuditLog.id)
            )
        ]


def guessed_key(key: str) -> str:
    """The key's prefix with a guessed secret: every call signed with it is a bad signature."""
    return f"{key.split('.')[0]}.{secrets.token_urlsafe(32)}"


def test_an_address_over_the_request_limit_gets_429_before_its_signature_is_checked(
    stack: Stack, ours: Tenant
) -> None:
    path, address = "/api/v1/conversations", a_loopback_address()
    with another_web(stack, DESKBELL_API_REQUESTS_PER_IP_PER_MINUTE="3") as limited, from_address(address) as flood:
        for _ in range(3):
            refused(call(limited, guessed_key(ours.key), "GET", path, client=flood), "bad_signature")
        over = [call(limited, ours.key, "GET", path, client=flood) for _ in range(5)]  # well signed, not checked
        elsewhere = call(limited, ours.key, "GET", path)  # from 127.0.0.1
    assert [r.status_code for r in over] == [429] * 5
    assert over[0].json() == {
        "error": "rate_limited",
        "limit": "api_requests_per_ip_per_minute",
        "message": "more than 3 API requests a minute from your address; retry later",
    }
    assert 1 <= int(over[0].headers["Retry-After"]) <= 20
    assert elsewhere.status_code == 200, elsewhere.text
    # Audited as one entry for each reason: the bad signatures in our tenant, the flood installation-wide.
    assert [(t, d["reason"]) for t, d in refusals_audited(address)] == [
        (ours.id, "bad_signature"),
        (None, "rate_limited"),
    ]


def test_repeated_bad_signatures_from_one_address_write_one_audit_entry_a_minute(stack: Stack, ours: Tenant) -> None:
    path, address = "/api/v1/conversations", a_loopback_address()
    with from_address(address) as client:
        for _ in range(5):
            refused(call(stack.base_url, guessed_key(ours.key), "GET", path, client=client), "bad_signature")
    [(tenant, detail)] = refusals_audited(address)
    assert (tenant, detail["reason"], detail["key"]) == (ours.id, "bad_signature", ours.key.split(".")[0])


def test_the_entry_after_a_quiet_spell_counts_the_refusals_left_out(stack: Stack, ours: Tenant) -> None:
    path, address = "/api/v1/conversations", a_loopback_address()
    with another_web(stack, DESKBELL_API_REFUSED_AUDIT_SECONDS="5") as web, from_address(address) as client:
        refused(call(web, guessed_key(ours.key), "GET", path, client=client), "bad_signature")
        window_ends = time.monotonic() + 5.05  # the first call's entry was written before its answer
        for _ in range(3):
            refused(call(web, guessed_key(ours.key), "GET", path, client=client), "bad_signature")
        time.sleep(max(0.0, window_ends - time.monotonic()))  # the audit's window (5 s here) passes
        refused(call(web, guessed_key(ours.key), "GET", path, client=client), "bad_signature")
    assert [d.get("left_out") for _, d in refusals_audited(address)] == [None, 3]
