"""Issue 6: taking access away ends live connections at once, not at their next reconnect. An admin deactivates
an agent: the agent's console stream is told why and ends, everyone else's stays. A platform operator suspends a
tenant: its visitors' sockets get an error frame and are closed, its console streams end; other tenants chat on.
(web/edge/access.py; the refusals on reconnect are tests/security/test_sessions.py's and the admin tests'.)"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import websockets

from tests.admin.conftest import Person, logged_in, saas_url  # noqa: F401 - saas_url is a fixture
from tests.clients import Visitor, session, start_conversation
from tests.conftest import Stack
from tests.factories import new_people, platform_operator


class Stream:
    """A console's live stream read on a thread: the (event, data) pairs it sent, and whether the server ended it."""

    def __init__(self, person: Person) -> None:
        self.events: list[tuple[str, str]] = []
        self.ended = threading.Event()
        self._person = person
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event = ""
        try:
            with self._person.client.stream("GET", "/live/console", timeout=httpx.Timeout(15, read=60)) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        self.events.append((event, line.removeprefix("data:").strip()))
            self.ended.set()  # the server finished the response
        except httpx.HTTPError:
            pass

    def wait_for(self, found: Callable[[tuple[str, str]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(found(e) for e in list(self.events)):
                return
            time.sleep(0.05)
        raise AssertionError(f"no such event within {timeout} s; heard {self.events}")


def stream_status(person: Person) -> int:
    with person.client.stream("GET", "/live/console", timeout=15) as response:
        return response.status_code


def test_deactivating_an_agent_ends_their_console_stream_at_once_and_no_one_elses(stack: Stack) -> None:
    people = new_people()
    agent = logged_in(stack.base_url, people["agent"])
    admin = logged_in(stack.base_url, people["admin"])
    agents_stream, admins_stream = Stream(agent), Stream(admin)
    for stream in (agents_stream, admins_stream):
        stream.wait_for(lambda e: e[0] == "resync")  # subscribed

    assert admin.post(f"/admin/agents/{people['agent']['id']}/deactivate").status_code == 303

    assert agents_stream.ended.wait(20), f"the agent's stream is still open; it heard {agents_stream.events}"
    assert agents_stream.events[-1] == ("revoked", "deactivated")
    assert stream_status(agent) == 401
    conversation_id = start_conversation(stack.base_url, str(people["site_key"]), "Anyone there?")
    admins_stream.wait_for(lambda e: e == ("conversation", conversation_id))
    assert not admins_stream.ended.is_set()
    assert ("revoked", "deactivated") not in admins_stream.events


def test_signing_an_agent_out_everywhere_ends_each_of_their_console_streams_at_once(stack: Stack) -> None:
    people = new_people()
    at_desk, on_laptop = logged_in(stack.base_url, people["agent"]), logged_in(stack.base_url, people["agent"])
    admin = logged_in(stack.base_url, people["admin"])
    streams = [Stream(at_desk), Stream(on_laptop)]
    for stream in streams:
        stream.wait_for(lambda e: e[0] == "resync")

    assert admin.post(f"/admin/agents/{people['agent']['id']}/sign-out").status_code == 303

    for stream in streams:
        assert stream.ended.wait(20), f"a stream is still open; it heard {stream.events}"
        assert stream.events[-1] == ("revoked", "signed_out")
    assert stream_status(at_desk) == 401


async def closed_with(visitor: Visitor) -> tuple[list[dict[str, Any]], int | None]:
    """The frames a visitor's socket got until the server closed it, and the close code."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(visitor.ws.recv(), 20)))
    except websockets.ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


def test_suspending_a_tenant_closes_its_visitors_sockets_and_console_streams_and_no_other_tenants(
    stack: Stack, saas_url: str  # noqa: F811 - the fixture
) -> None:
    people, others = new_people(), new_people()
    operator = logged_in(saas_url, platform_operator())
    agents_stream = Stream(logged_in(saas_url, people["agent"]))
    others_stream = Stream(logged_in(saas_url, others["agent"]))
    for stream in (agents_stream, others_stream):
        stream.wait_for(lambda e: e[0] == "resync")

    async def scenario() -> tuple[list[dict[str, Any]], int | None, dict[str, Any], tuple[Any, ...]]:
        visitor = Visitor(saas_url, str(people["site_key"]))
        other_visitor = Visitor(saas_url, str(others["site_key"]))
        await visitor.connect()
        await other_visitor.connect()
        suspended = await asyncio.to_thread(operator.post, f"/platform/tenants/{people['tenant_id']}/suspend")
        assert suspended.status_code == 303
        frames, code = await closed_with(visitor)
        await other_visitor.send({"type": "message", "client_id": "after", "body": "Still open here?"})
        ack = await other_visitor.expect("ack")
        await other_visitor.close()
        # Coming back with the token it holds: refused, on either transport.
        ws_url = saas_url.replace("http://", "ws://") + "/ws/visitor"
        visitor.ws = await websockets.connect(f"{ws_url}?token={visitor.token}")
        again = await closed_with(visitor)
        params = {"token": visitor.token, "last_seq": 0, "wait": 0}
        polled = await asyncio.to_thread(httpx.get, f"{saas_url}/lp/visitor", params=params, timeout=15)
        return frames, code, ack, (again, polled)

    frames, code, ack, (again, polled) = asyncio.run(scenario())
    assert [f for f in frames if f["type"] == "error"] == [
        {
            "type": "error",
            "code": "unavailable",
            "message": "this chat is not available at the moment",
            "retry": True,
        }
    ]
    assert code == 1013, "try again later"
    assert (again[0][-1]["code"], again[1]) == ("unavailable", 1013)
    assert polled.status_code == 403 and polled.json()["error"] == "tenant_suspended"
    assert agents_stream.ended.wait(20), f"the agent's stream is still open; it heard {agents_stream.events}"
    assert agents_stream.events[-1] == ("revoked", "suspended")
    others_stream.wait_for(lambda e: e == ("conversation", ack["conversation_id"]))
    assert not others_stream.ended.is_set()


def test_a_waiting_long_poll_of_a_suspended_tenant_answers_at_once_with_the_unavailable_frame(
    stack: Stack, saas_url: str  # noqa: F811 - the fixture
) -> None:
    people = new_people()
    operator = logged_in(saas_url, platform_operator())
    token = session(saas_url, str(people["site_key"])).json()["visitor_token"]
    tenant_id = people["tenant_id"]

    def poll() -> httpx.Response:  # waits for news: up to DESKBELL_POLL_SECONDS (25 s)
        return httpx.get(f"{saas_url}/lp/visitor", params={"token": token, "last_seq": 0}, timeout=60)

    answered: list[dict[str, Any]] = []
    for head_start in (1, 3, 8):  # seconds for the poll to begin waiting; no event says when it has
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(poll)
            time.sleep(head_start)
            assert operator.post(f"/platform/tenants/{tenant_id}/suspend").status_code == 303
            answer = waiting.result()
        answered = answer.json().get("frames", []) if answer.status_code == 200 else []
        if any(f["type"] == "error" for f in answered):
            break
        # The poll asked only after the suspension (refused with 403): give it a longer head start.
        assert operator.post(f"/platform/tenants/{tenant_id}/resume").status_code == 303

    assert answered[-1] == {
        "type": "error",
        "code": "unavailable",
        "message": "this chat is not available at the moment",
        "retry": True,
    }


def test_in_saas_mode_a_console_stream_on_another_tenants_domain_is_refused(
    stack: Stack, saas_url: str  # noqa: F811 - the fixture
) -> None:
    from desk import domains
    from desk.db import system_session

    people, others = new_people(), new_people()
    with system_session() as session:
        theirs = domains.do_set_domain(session, others["tenant_id"], f"{others['slug']}.example.test")
    agent = logged_in(saas_url, people["agent"])

    with agent.client.stream("GET", "/live/console", headers={"Host": str(theirs)}, timeout=15) as response:
        refused = response.status_code
    assert refused == 403
    assert stream_status(agent) == 200, "on an address that is no tenant's, as before"
