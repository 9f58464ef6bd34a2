"""Issue 7, abuse limits: floods of sockets and frames are throttled with an error frame naming the limit and a
close code, while a normal visitor on the same server keeps chatting; sessions per address; origins checked on
every handshake (docs/operations.md, "Abuse limits").

Everything runs on the Procfile's processes. Clients come from different loopback addresses (127.0.0.x), which
the server sees as different client addresses, so each test's "attacker" and "visitor" are told apart as they
would be on the internet. The ack latency under the flood is measured by bench/flood.py, not asserted here. The
per-visitor limits (one token from many addresses) are tests/security/test_visitor_limits.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets

from desk.settings import Limits
from tests.clients import Agent
from tests.conftest import Stack
from tests.factories import new_people

DEFAULTS = Limits()
# A web process of its own with small limits, so that going over each costs a few requests.
TIGHT = {
    "DESKBELL_CONNECTIONS_PER_IP_PER_MINUTE": "6",
    "DESKBELL_SOCKETS_PER_IP": "3",
    "DESKBELL_SESSIONS_PER_IP_PER_HOUR": "3",
    "DESKBELL_FRAMES_PER_SECOND": "5",
    "DESKBELL_FRAME_BURST": "5",
    "DESKBELL_GRACEFUL_SECONDS": "1",  # its teardown need not wait for the flood's sockets
}


def address() -> str:
    """A loopback address no other test uses: a client address with all its limits unspent."""
    return f"127.{uuid.uuid4().int % 250 + 1}.{uuid.uuid4().int % 250 + 1}.{uuid.uuid4().int % 250 + 2}"


def new_session(base_url: str, site_key: str, source: str, **extra: Any) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as http:
        return http.post(f"{base_url}/api/v1/widget/session", json={"site_key": site_key, **extra})


def ws_url(base_url: str, token: str) -> str:
    return base_url.replace("http://", "ws://") + f"/ws/visitor?token={token}"


@dataclass
class Outcome:
    """How one socket ended: the frames it got and the close code."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    code: int | None = None

    @property
    def limit(self) -> str | None:
        errors = [f for f in self.frames if f.get("code") == "rate_limited"]
        return errors[0]["limit"] if errors else None


async def until_closed(ws: Any, outcome: Outcome, timeout: float = 20) -> Outcome:
    try:
        while True:
            outcome.frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.ConnectionClosed as closed:
        outcome.code = closed.rcvd.code if closed.rcvd else None
    return outcome


@dataclass
class ChattingVisitor:
    """A well-behaved visitor: one message at a time, each waited for until acked."""

    base_url: str
    site_key: str
    source: str
    ws: Any = None
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)

    async def connect(self) -> None:
        response = await asyncio.to_thread(new_session, self.base_url, self.site_key, self.source)
        assert response.status_code == 200, response.text
        self.ws = await websockets.connect(
            ws_url(self.base_url, response.json()["visitor_token"]), local_addr=(self.source, 0)
        )
        await self.ws.send(json.dumps({"type": "hello", "last_seq": 0}))
        assert (await self.next("welcome"))["type"] == "welcome"

    async def next(self, kind: str) -> dict[str, Any]:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if frame["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
            assert frame["type"] != "error", frame
            if frame["type"] == kind:
                return frame

    async def say(self, body: str) -> dict[str, Any]:
        client_id = f"c{len(self.sent)}"
        self.sent.append(body)
        await self.ws.send(json.dumps({"type": "message", "client_id": client_id, "body": body}))
        self.acks[client_id] = await self.next("ack")
        return self.acks[client_id]


# -- the flood -----------------------------------------------------------------------------------------------


def refused_at_handshake(refused: websockets.InvalidStatus) -> Outcome:
    """An HTTP refusal of the WebSocket handshake, as an Outcome: the status, and its JSON body as the error."""
    response = refused.response
    body = json.loads(response.body or b"{}")
    error = {"type": "error", "code": body.get("error"), "limit": body.get("limit"), "message": body.get("message")}
    error["retry_after"] = int(response.headers.get("Retry-After", 0))
    return Outcome([error], response.status_code)


async def open_sockets(base_url: str, token: str, source: str, count: int) -> list[Outcome]:
    """`count` sockets from one address, a few handshakes at a time, each saying hello. Those let in (welcomed)
    are held open until all are done; the others record the error frame and close code they got."""
    gate = asyncio.Semaphore(20)
    held: list[Any] = []

    async def one() -> Outcome:
        outcome = Outcome()
        async with gate:
            try:
                ws = await websockets.connect(ws_url(base_url, token), local_addr=(source, 0), open_timeout=30)
            except websockets.InvalidStatus as refused:  # back too soon after being told: 429 at the handshake
                return refused_at_handshake(refused)
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps({"type": "hello", "last_seq": 0}))
            try:
                first = json.loads(await asyncio.wait_for(ws.recv(), 30))
            except websockets.ConnectionClosed as closed:
                outcome.code = closed.rcvd.code if closed.rcvd else None
                return outcome
            if first["type"] == "welcome":
                held.append(ws)
                outcome.frames.append({"type": "open"})
                return outcome
            outcome.frames.append(first)
            return await until_closed(ws, outcome)

    try:
        return await asyncio.gather(*(one() for _ in range(count)))
    finally:
        await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)


async def flood_frames(base_url: str, token: str, source: str, stop: asyncio.Event) -> list[Outcome]:
    """Pings as fast as the socket takes them (10,000 a second and more on loopback), reconnecting whenever the
    server closes the socket, until `stop` or until the server no longer lets this address connect."""
    outcomes: list[Outcome] = []
    ping = json.dumps({"type": "ping"})
    while not stop.is_set():
        outcome = Outcome()
        outcomes.append(outcome)
        try:
            async with websockets.connect(ws_url(base_url, token), local_addr=(source, 0)) as ws:
                reader = asyncio.create_task(until_closed(ws, outcome))
                with contextlib.suppress(websockets.ConnectionClosed):
                    for i in range(10_000):
                        await ws.send(ping)
                        if i % 500 == 0:
                            await asyncio.sleep(0)  # let the reader hear the error frame
                await reader
        except (OSError, websockets.InvalidHandshake):
            break
        if outcome.limit != "frames_per_second":
            break  # refused at the door now (connections per minute): the flood is throttled for good
    return outcomes


# The limits that turn a socket away at the door (1013), per address and per visitor.
DOOR_LIMITS = (
    "connections_per_ip_per_minute",
    "sockets_per_ip",
    "connections_per_visitor_per_minute",
    "sockets_per_visitor",
)

# The documented defaults, set here so that the test stack's own settings (which may relax them for the rest of
# the suite, all of whose clients share 127.0.0.1) do not change what this proves.
DEFAULT_SETTINGS = {
    "DESKBELL_CONNECTIONS_PER_IP_PER_MINUTE": str(DEFAULTS.connections_per_ip_per_minute),
    "DESKBELL_SOCKETS_PER_IP": str(DEFAULTS.sockets_per_ip),
    "DESKBELL_SESSIONS_PER_IP_PER_HOUR": str(DEFAULTS.sessions_per_ip_per_hour),
    "DESKBELL_CONNECTIONS_PER_VISITOR_PER_MINUTE": str(DEFAULTS.connections_per_visitor_per_minute),
    "DESKBELL_SOCKETS_PER_VISITOR": str(DEFAULTS.sockets_per_visitor),
    "DESKBELL_FRAMES_PER_SECOND": str(DEFAULTS.frames_per_second),
    "DESKBELL_FRAME_BURST": str(DEFAULTS.frame_burst),
}


@pytest.fixture(scope="module")
def web_with_defaults(stack: Stack) -> Iterator[str]:
    with stack.another_web(**DEFAULT_SETTINGS, DESKBELL_GRACEFUL_SECONDS="1") as base_url:
        yield base_url



def test_a_socket_flood_and_a_frame_flood_are_throttled_while_a_visitor_keeps_chatting(
    stack: Stack, web_with_defaults: str
) -> None:
    base_url = web_with_defaults
    tenant = new_people()
    site_key = str(tenant["site_key"])
    opener, flooder, visitor_address = address(), address(), address()

    async def scenario() -> tuple[list[Outcome], list[Outcome], ChattingVisitor]:
        visitor = ChattingVisitor(base_url, site_key, visitor_address)
        await visitor.connect()
        for i in range(5):
            await visitor.say(f"Before the flood #{i}")
        tokens = [
            (await asyncio.to_thread(new_session, base_url, site_key, source)).json()["visitor_token"]
            for source in (opener, flooder)
        ]
        stop = asyncio.Event()
        sockets = asyncio.create_task(open_sockets(base_url, tokens[0], opener, 1000))
        frames = asyncio.create_task(flood_frames(base_url, tokens[1], flooder, stop))
        for i in range(20):
            await visitor.say(f"During the flood #{i}")
        socket_outcomes = await sockets
        stop.set()
        frame_outcomes = await frames
        for i in range(5):
            await visitor.say(f"After the flood #{i}")
        await visitor.ws.close()
        return socket_outcomes, frame_outcomes, visitor

    socket_outcomes, frame_outcomes, visitor = asyncio.run(scenario())

    let_in = [o for o in socket_outcomes if o.frames == [{"type": "open"}]]
    turned_away = [o for o in socket_outcomes if o.limit in DOOR_LIMITS]
    assert len(let_in) <= DEFAULTS.sockets_per_visitor, "the opener's sockets are all one visitor's"
    assert len(let_in) + len(turned_away) == 1000, [o for o in socket_outcomes if o not in let_in + turned_away][:3]
    # Told in an error frame and 1013 (try again later); back before the seconds it was told: 429 at the handshake.
    assert {o.code for o in turned_away} <= {1013, 429} and 1013 in {o.code for o in turned_away}
    assert all(o.frames[0]["retry_after"] >= 1 for o in turned_away)

    assert frame_outcomes[0].limit == "frames_per_second"
    assert frame_outcomes[0].code == 1008, "policy violation"
    # Cut long before its 10,000 pings were answered (how many exactly depends on how fast the server read them).
    assert len([f for f in frame_outcomes[0].frames if f["type"] == "pong"]) < 1000
    assert frame_outcomes[-1].limit in ("frames_per_second", *DOOR_LIMITS)

    assert len(visitor.acks) == 30, "every message of the normal visitor is acked"
    conversation_id = next(iter(visitor.acks.values()))["conversation_id"]
    agent = Agent(base_url)
    login = tenant["agent"]
    assert isinstance(login, dict) and agent.login(login["email"], login["password"]).status_code == 200
    assert agent.thread(conversation_id) == visitor.sent, "and the agent sees every one"
    assert httpx.get(f"{base_url}/healthz", timeout=10).status_code == 200


# -- each limit on its own -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(stack: Stack) -> Iterator[str]:
    with stack.another_web(**TIGHT) as base_url:
        yield base_url


def test_a_socket_over_the_frame_rate_gets_an_error_frame_and_is_closed_while_others_stay_open(
    stack: Stack, tight: str
) -> None:
    tenant = new_people()  # in-process: quicker than the CLI
    source = address()
    token = new_session(tight, str(tenant["site_key"]), source).json()["visitor_token"]

    async def scenario() -> tuple[Outcome, list[dict[str, Any]]]:
        async with websockets.connect(ws_url(tight, token), local_addr=(source, 0)) as calm:
            await calm.send(json.dumps({"type": "hello", "last_seq": 0}))
            async with websockets.connect(ws_url(tight, token), local_addr=(source, 0)) as fast:
                for _ in range(20):
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await fast.send(json.dumps({"type": "ping"}))
                # Closed at once, though it went on sending after the refusal: the edge reads its close reply (the
                # client library gives up on a close after 20 s, well past this wait).
                outcome = await until_closed(fast, Outcome(), timeout=10)
            await calm.send(json.dumps({"type": "message", "client_id": "still-here", "body": "Still here?"}))
            heard = []
            while not any(f["type"] == "ack" for f in heard):
                heard.append(json.loads(await asyncio.wait_for(calm.recv(), 20)))
            return outcome, heard

    outcome, heard = asyncio.run(scenario())
    pongs, last = [f["type"] for f in outcome.frames[:-1]], outcome.frames[-1]
    # The first 5 of the 20 pings (the burst) are answered, then the socket is refused; a busy machine may refill a
    # token or a few (5 a second) while it reads them, hence up to 9 pongs.
    assert pongs == ["pong"] * len(pongs) and 5 <= len(pongs) <= 9
    assert last == {
        "type": "error",
        "code": "rate_limited",
        "message": "more than 5 frames a second; reconnect and slow down",
        "retry": False,
        "limit": "frames_per_second",
        "retry_after": 1,
    }
    assert outcome.code == 1008
    assert heard[0]["type"] == "welcome" and heard[-1]["client_id"] == "still-here"


def test_sockets_over_the_per_address_limits_are_turned_away_and_other_addresses_are_not(
    stack: Stack, tight: str
) -> None:
    tenant = new_people()  # in-process: quicker than the CLI
    source, other = address(), address()
    token = new_session(tight, str(tenant["site_key"]), source).json()["visitor_token"]

    def connect(source: str) -> Any:
        return websockets.connect(ws_url(tight, token), local_addr=(source, 0))

    async def scenario() -> tuple[list[Outcome], list[Outcome]]:
        held = [await connect(source) for _ in range(3)]
        try:
            over = [await until_closed(await connect(source), Outcome())]
        finally:
            for ws in held:
                await ws.close()
        # The edge counts a socket closed once its handler has finished, a moment after the close handshake.
        await asyncio.sleep(1)
        # 4 of the 6 new connections a minute are spent; the 7th is refused whatever is open.
        for _ in range(2):
            async with connect(source):
                pass
        over.append(await until_closed(await connect(source), Outcome()))
        elsewhere = []
        async with connect(other) as ws:
            await ws.send(json.dumps({"type": "hello", "last_seq": 0}))
            elsewhere.append(Outcome([json.loads(await asyncio.wait_for(ws.recv(), 10))]))
        return over, elsewhere

    over, elsewhere = asyncio.run(scenario())
    assert [(o.limit, o.code) for o in over] == [("sockets_per_ip", 1013), ("connections_per_ip_per_minute", 1013)]
    assert over[0].frames[0]["message"] == "at most 3 chat connections from one network at once"
    assert over[1].frames[0]["retry_after"] >= 1
    assert elsewhere[0].frames[0]["type"] == "welcome"


def test_an_address_back_over_a_limit_before_its_retry_after_is_refused_at_the_handshake(
    stack: Stack, tight: str
) -> None:
    """Told once, in an error frame, to wait; a client that does not (a flood: a widget waits) gets a plain 429 at
    the handshake, which costs the edge no WebSocket at all."""
    tenant = new_people()
    source = address()
    token = new_session(tight, str(tenant["site_key"]), source).json()["visitor_token"]

    def connect() -> Any:
        return websockets.connect(ws_url(tight, token), local_addr=(source, 0))

    async def scenario() -> tuple[Outcome, Outcome]:
        held = [await connect() for _ in range(3)]  # the address's 3 sockets
        try:
            told = await until_closed(await connect(), Outcome())
            try:
                await connect()
                raise AssertionError("a socket was opened")
            except websockets.InvalidStatus as refused:
                again = refused_at_handshake(refused)
        finally:
            for ws in held:
                await ws.close()
        return told, again

    told, again = asyncio.run(scenario())
    assert (told.limit, told.code, told.frames[0]["retry_after"]) == ("sockets_per_ip", 1013, 5)
    assert (again.code, again.limit, again.frames[0]["retry_after"]) == (429, "sockets_per_ip", 5)
    assert again.frames[0]["message"] == "at most 3 chat connections from one network at once"


def test_long_polls_count_as_connections_and_get_429_with_retry_after(stack: Stack, tight: str) -> None:
    tenant = new_people()  # in-process: quicker than the CLI
    source = address()
    token = new_session(tight, str(tenant["site_key"]), source).json()["visitor_token"]
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as http:
        answers = [
            http.get(f"{tight}/lp/visitor", params={"token": token, "last_seq": 0, "wait": 0}) for _ in range(7)
        ]
    assert [a.status_code for a in answers] == [200] * 6 + [429]
    assert answers[-1].json() == {
        "error": "rate_limited",
        "limit": "connections_per_ip_per_minute",
        "message": "too many new connections from your network; reconnect later",
    }
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_a_long_polling_post_over_ten_frames_worth_of_bytes_is_refused_before_it_is_read(stack: Stack) -> None:
    cap = 10 * DEFAULTS.frame_bytes  # docs/protocol.md, "Limits"
    url = f"{stack.base_url}/lp/visitor"
    too_large = httpx.post(url, params={"token": "x"}, content=b"x" * (cap + 1), timeout=10)
    assert too_large.status_code == 413
    assert too_large.json() == {"error": "too_large", "message": f"a request carries at most {cap} bytes"}
    # At the cap it is read, and judged on what it says: not JSON.
    at_cap = httpx.post(url, params={"token": "x"}, content=b"x" * cap, timeout=10)
    assert (at_cap.status_code, at_cap.json()["error"]) == (400, "invalid_json")


def test_a_long_polling_post_carries_at_most_a_bursts_worth_of_frames_besides_messages(
    stack: Stack, tight: str
) -> None:
    tenant = new_people()
    source = address()
    token = new_session(tight, str(tenant["site_key"]), source).json()["visitor_token"]
    message = {"type": "message", "client_id": "m1", "body": "Hello over polling"}

    def post(frames: list[dict[str, Any]]) -> httpx.Response:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as http:
            body = json.dumps({"frames": frames})
            return http.post(f"{tight}/lp/visitor", params={"token": token}, content=body)

    refused = post([{"type": "ping"}] * 6 + [message])
    taken = post([{"type": "ping"}] * 5 + [message])

    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json() == {
        "error": "rate_limited",
        "limit": "frames_per_second",
        "message": "at most 5 frames besides messages in one request",
    }
    assert taken.status_code == 200
    assert [f["type"] for f in taken.json()["frames"]] == ["pong"] * 5 + ["ack"]
    assert taken.json()["frames"][-1]["seq"] == 1, "the refused request stored nothing"


def test_new_sessions_per_address_are_limited_with_429_and_retry_after_but_resuming_is_not(
    stack: Stack, tight: str
) -> None:
    tenant = new_people()  # in-process: quicker than the CLI
    site_key = str(tenant["site_key"])
    source = address()
    created = [new_session(tight, site_key, source) for _ in range(3)]
    refused = new_session(tight, site_key, source)
    resumed = new_session(tight, site_key, source, visitor_token=created[0].json()["visitor_token"])
    elsewhere = new_session(tight, site_key, address())

    assert [r.status_code for r in created] == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "rate_limited",
        "message": "too many new chat sessions from your network; try again later",
    }
    assert int(refused.headers["Retry-After"]) > 1000  # 3 an hour: the next one in 20 minutes
    assert resumed.status_code == 200 and resumed.json()["visitor_id"] == created[0].json()["visitor_id"]
    assert elsewhere.status_code == 200


def test_a_frame_over_the_size_limit_gets_an_error_frame_and_the_socket_stays_open(stack: Stack) -> None:
    tenant = new_people()  # in-process: quicker than the CLI
    source = address()
    token = new_session(stack.base_url, str(tenant["site_key"]), source).json()["visitor_token"]

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(ws_url(stack.base_url, token), local_addr=(source, 0)) as ws:
            await ws.send(json.dumps({"type": "ping", "padding": "x" * DEFAULTS.frame_bytes}))
            await ws.send(json.dumps({"type": "ping"}))
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]

    too_large, pong = asyncio.run(scenario())
    assert too_large["code"] == "frame_too_large" and str(DEFAULTS.frame_bytes) in too_large["message"]
    assert pong == {"type": "pong"}


# -- origins -------------------------------------------------------------------------------------------------


def test_a_foreign_origin_is_refused_by_the_socket_and_the_long_poll(stack: Stack) -> None:
    tenant = stack.bootstrap(origins=("https://shop.test",))
    source = address()
    token = new_session(stack.base_url, str(tenant["site_key"]), source).json()["visitor_token"]

    async def close_code(origin: str) -> int | str:
        url = ws_url(stack.base_url, token)
        async with websockets.connect(url, origin=origin, local_addr=(source, 0)) as ws:  # type: ignore[arg-type]
            try:
                await ws.send(json.dumps({"type": "hello", "last_seq": 0}))
                return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else "closed without a code"

    def poll(origin: str) -> httpx.Response:
        params = {"token": token, "last_seq": 0, "wait": 0}
        return httpx.get(f"{stack.base_url}/lp/visitor", params=params, headers={"Origin": origin}, timeout=10)

    assert asyncio.run(close_code("https://evil.test")) == 4403
    assert asyncio.run(close_code("https://shop.test")) == "welcome"
    refused = poll("https://evil.test")
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    assert refused.json()["message"] == "origin not allowed"
    assert poll("https://shop.test").status_code == 200
    sent = httpx.post(
        f"{stack.base_url}/lp/visitor",
        params={"token": token},
        content=json.dumps({"frames": [{"type": "message", "client_id": "x1", "body": "from evil"}]}),
        headers={"Origin": "https://evil.test", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert sent.status_code == 403
