"""The whole message path on the real processes: widget socket → edge → JetStream → worker → PostgreSQL →
console, and back (issue: the whole message path). Every test talks to the Procfile's processes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import nats
import websockets
from honcho.environ import parse_procfile

from desk import subjects
from desk.settings import ROOT
from tests.clients import Agent, Visitor, session
from tests.conftest import Stack
from tests.factories import tenant_id_of
from tests.test_dead_letter import wait_until_gone


def test_two_hundred_messages_are_acked_once_in_order_and_the_agent_replies(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    agent_login = tenant["agents"][0]

    async def scenario() -> None:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        welcome = await visitor.connect()
        assert welcome["last_seq"] == 0

        for i in range(200):
            await visitor.send({"type": "message", "client_id": f"m-{i}", "body": f"Hello, is anyone there? #{i}"})
        acks: dict[str, dict] = {}
        while len(acks) < 200:
            ack = await visitor.expect("ack")
            assert ack["client_id"] not in acks, f"second ack for {ack['client_id']}"
            acks[ack["client_id"]] = ack
        assert sorted(a["seq"] for a in acks.values()) == list(range(1, 201))
        assert [acks[f"m-{i}"]["seq"] for i in range(200)] == list(range(1, 201)), "seq order is send order"
        conversation_id = acks["m-0"]["conversation_id"]
        assert {a["conversation_id"] for a in acks.values()} == {conversation_id}

        agent = Agent(stack.base_url)
        assert agent.login(agent_login["email"], agent_login["password"]).status_code == 200
        seen_by_agent = await asyncio.to_thread(agent.thread, conversation_id)
        assert seen_by_agent == [f"Hello, is anyone there? #{i}" for i in range(200)]

        reply = await asyncio.to_thread(agent.reply, conversation_id, "Yes! How can I help?")
        assert reply.status_code == 200
        while True:
            frame = await visitor.expect("message")
            if frame["sender"] == "agent":
                break
        assert frame["seq"] == 201
        assert frame["body"] == "Yes! How can I help?"
        assert frame["author"] == agent_login["email"].split("@")[0].title()
        await visitor.close()

        again = Visitor(stack.base_url, tenant["site_key"], token=visitor.token)
        welcome = await again.connect(last_seq=150)
        assert welcome["last_seq"] == 201
        replayed = [await again.expect("message") for _ in range(51)]
        assert [f["seq"] for f in replayed] == list(range(151, 202))
        assert replayed[-1]["body"] == "Yes! How can I help?"
        await again.send({"type": "ping"})
        assert (await again.expect("pong"))["type"] == "pong"
        assert [f for f in again.frames if f["type"] == "message" and f["seq"] <= 150] == []
        await again.close()

    asyncio.run(scenario())


def test_a_visitors_messages_wait_in_jetstream_not_on_the_socket_while_the_worker_is_away(stack: Stack) -> None:
    """The edge publishes each message as soon as JetStream holds the one before it, not once it is stored: a
    burst sent while no worker runs is all on disk at once, and is acked in send order when the worker is back."""
    tenant = stack.bootstrap()
    tenant_id = tenant_id_of(tenant)
    group = stack.processes["worker"].pid
    stack.stop("worker")
    wait_until_gone(group)

    async def scenario() -> None:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        sent = {f"w-{i}": f"While you were away #{i}" for i in range(5)}
        for client_id, body in sent.items():
            await visitor.send({"type": "message", "client_id": client_id, "body": body})
        subject = subjects.inbound(tenant_id, uuid.UUID(visitor.visitor_id))
        nc = await nats.connect(stack.env["NATS_URL"])
        try:
            for _ in range(100):
                info = await nc.jetstream().stream_info(subjects.IN_STREAM, subjects_filter=subject)
                if (info.state.subjects or {}).get(subject) == 5:
                    break
                await asyncio.sleep(0.1)
            assert (info.state.subjects or {}).get(subject) == 5, "the burst is in JetStream before any is stored"
        finally:
            await nc.close()
            stack.start("worker", parse_procfile((ROOT / "Procfile").read_text()).processes["worker"])

        acks: dict[str, int] = {}
        while len(acks) < len(sent):
            frame = await visitor.recv(timeout=60)
            if frame["type"] == "ack":
                assert frame["client_id"] not in acks, f"second ack for {frame['client_id']}"
                acks[frame["client_id"]] = frame["seq"]
            elif frame["type"] == "error" and frame.get("retry"):  # the worker took long to start: as the widget
                client_id = frame["client_id"]
                await visitor.send({"type": "message", "client_id": client_id, "body": sent[client_id]})
        assert [acks[c] for c in sent] == [1, 2, 3, 4, 5], "seq order is send order"
        await visitor.close()

    asyncio.run(scenario())


def test_the_visitor_socket_refuses_compression_which_would_cost_each_idle_socket_over_100_kib(stack: Stack) -> None:
    """Browsers (and this client) offer permessage-deflate; the edge agrees to none (web/__main__.py)."""
    tenant = stack.bootstrap()

    async def scenario() -> None:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        offered = visitor.ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in offered
        assert visitor.ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await visitor.send({"type": "ping"})
        assert (await visitor.expect("pong"))["type"] == "pong"
        await visitor.close()

    asyncio.run(scenario())


def test_a_socket_that_says_hello_late_is_sent_what_was_stored_meanwhile_once_and_in_order(stack: Stack) -> None:
    """A socket reads its thread once, as it opens (issue 10: a storm of connections); what is stored after that
    read and before the socket's `hello` follows the `welcome`: a few from its queue, more than the queue holds
    (web/edge/visitor.py, BEFORE_HELLO) from PostgreSQL."""
    tenant = stack.bootstrap("alice")

    async def scenario(later: int) -> tuple[dict, list[dict]]:
        first = Visitor(stack.base_url, tenant["site_key"])
        await first.connect()
        await first.send({"type": "message", "client_id": "m-1", "body": "First"})
        await first.expect("ack")
        late = Visitor(stack.base_url, tenant["site_key"], token=first.token)
        late.ws = await websockets.connect(f"{stack.ws_url}?token={first.token}")
        await asyncio.sleep(1)  # the late socket has read its thread by now
        for i in range(2, later + 2):
            await first.send({"type": "message", "client_id": f"m-{i}", "body": f"Later #{i}"})
        for _ in range(later):
            await first.expect("ack")
        await late.send({"type": "hello", "last_seq": 1})  # it has shown the first: not behind as it opened
        welcome = await late.expect("welcome")
        messages = [await late.expect("message") for _ in range(later)]
        with contextlib.suppress(TimeoutError):  # nothing more: no message twice
            messages.append(await late.expect("message", timeout=2))
        await first.close()
        await late.close()
        return welcome, messages

    for later in (1, 150):
        welcome, messages = asyncio.run(scenario(later))
        assert 1 <= welcome["last_seq"] <= later + 1
        assert [(m["seq"], m["body"]) for m in messages] == [(i, f"Later #{i}") for i in range(2, later + 2)]


def test_the_same_client_id_twice_gets_the_same_ack_and_one_message(stack: Stack) -> None:
    tenant = stack.bootstrap()

    async def scenario() -> None:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "once", "body": "first"})
        first = await visitor.expect("ack")
        await visitor.send({"type": "message", "client_id": "once", "body": "first, sent again"})
        second = await visitor.expect("ack", timeout=5)
        assert first == second
        await visitor.send({"type": "message", "client_id": "next", "body": "second"})
        assert (await visitor.expect("ack"))["seq"] == 2
        assert [f["body"] for f in visitor.received("message")] == ["first", "second"]
        await visitor.close()

    asyncio.run(scenario())


def test_invalid_frames_get_an_error_and_the_socket_keeps_working(stack: Stack) -> None:
    tenant = stack.bootstrap()

    async def scenario() -> None:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        bad = [
            ("not json", "invalid_json"),
            ('["a list"]', "invalid_frame"),
            ('{"type": "teleport"}', "unknown_type"),
            ('{"type": "message", "client_id": "", "body": "x"}', "invalid_client_id"),
            ('{"type": "message", "client_id": "has space", "body": "x"}', "invalid_client_id"),
            ('{"type": "message", "client_id": "' + "x" * 65 + '", "body": "x"}', "invalid_client_id"),
            ('{"type": "message", "client_id": "ok", "body": "   "}', "invalid_body"),
            ('{"type": "message", "client_id": "ok", "body": "' + "x" * 4001 + '"}', "message_too_long"),
            ('{"type": "hello", "last_seq": -1}', "invalid_last_seq"),
        ]
        for text, code in bad:
            await visitor.send(text)
            error = await visitor.expect("error")
            assert error["code"] == code, text
            assert error["message"]
        await visitor.send({"type": "message", "client_id": "ok", "body": "x" * 4000})
        assert (await visitor.expect("ack"))["seq"] == 1
        await visitor.close()

    asyncio.run(scenario())


def test_a_forged_or_foreign_token_is_refused(stack: Stack) -> None:
    tenant = stack.bootstrap()
    other = stack.bootstrap()

    async def close_code(token: str) -> int:
        async with websockets.connect(f"{stack.ws_url}?token={token}") as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code
        raise AssertionError("socket stayed open")

    assert asyncio.run(close_code("forged")) == 4401
    token = session(stack.base_url, tenant["site_key"]).json()["visitor_token"]
    assert asyncio.run(close_code(token[:-2] + "xx")) == 4401
    # A token of one site does not resume a visitor on another site: it gets a new visitor there.
    first = session(stack.base_url, tenant["site_key"]).json()
    moved = session(stack.base_url, other["site_key"], token=first["visitor_token"]).json()
    assert moved["visitor_id"] != first["visitor_id"]
    resumed = session(stack.base_url, tenant["site_key"], token=first["visitor_token"]).json()
    assert resumed["visitor_id"] == first["visitor_id"]


def test_session_errors_say_what_is_wrong(stack: Stack) -> None:
    unknown = session(stack.base_url, "no-such-site")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_site"
    url = f"{stack.base_url}/api/v1/widget/session"
    not_json = httpx.post(url, content="{", headers={"Content-Type": "application/json"}, timeout=5)
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "invalid_json"
    assert httpx.post(url, content='{"site_key": "x"}', timeout=5).json()["message"] == (
        "body must be a JSON object, sent as Content-Type: application/json"
    )
    # A fixed limit of 1 MiB a body (docs/protocol.md, "Limits"), told before the body is read.
    too_large = httpx.post(url, json={"site_key": "x", "page": {"title": "x" * 1024 * 1024}}, timeout=5)
    assert too_large.status_code == 413
    assert too_large.json() == {"error": "too_large", "message": "a session request carries at most 1048576 bytes"}
    wrong_method = httpx.get(url, timeout=5)
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")
    assert wrong_method.headers["Allow"] == "POST, OPTIONS"


def test_a_cross_origin_widget_may_ask_for_a_session(stack: Stack) -> None:
    site_key = stack.bootstrap()["site_key"]
    url = f"{stack.base_url}/api/v1/widget/session"
    asked = {"Origin": "https://shop.test", "Access-Control-Request-Method": "POST"}
    preflight = httpx.options(url, headers={**asked, "Access-Control-Request-Headers": "content-type"}, timeout=5)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.test"
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type"
    answered = session(stack.base_url, site_key, origin="https://shop.test")
    assert answered.headers["Access-Control-Allow-Origin"] == "https://shop.test"
    assert answered.headers["Access-Control-Expose-Headers"] == "Retry-After"  # a 429's wait, for the widget
    said = httpx.post(url, json={"site_key": site_key}, headers={"X-Request-ID": "widget-req-1"}, timeout=5)
    assert said.headers["X-Request-ID"] == "widget-req-1"  # as every response of the web process carries it


def test_a_site_with_allowed_origins_refuses_other_origins(stack: Stack) -> None:
    site_key = stack.bootstrap(origins=("https://shop.test",))["site_key"]
    assert session(stack.base_url, site_key, origin="https://evil.test").status_code == 403
    allowed = session(stack.base_url, site_key, origin="https://shop.test")
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.test"
    # No Origin: a server-side client, judged by its token alone.
    assert session(stack.base_url, site_key).status_code == 200


def test_a_page_title_that_cannot_be_stored_is_left_out_not_refused(stack: Stack) -> None:
    tenant = stack.bootstrap()
    response = httpx.post(
        f"{stack.base_url}/api/v1/widget/session",
        # JSON escapes that Python's json.dumps would not write: a NUL and a lone surrogate
        content=('{"site_key": "' + tenant["site_key"] + '", "page": {"title": "bad \\u0000 \\ud800"}}'),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["visitor_token"]


def test_liveness_and_readiness_report_the_version_and_each_dependency(stack: Stack) -> None:
    alive = httpx.get(stack.base_url + "/healthz").json()
    assert alive == {"status": "ok", "version": alive["version"]}
    ready = httpx.get(stack.base_url + "/readyz").json()
    assert ready == {"status": "ok", "database": "ok", "nats": "ok", "version": alive["version"]}
