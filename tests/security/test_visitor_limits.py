"""Issue 7, per-visitor limits: one visitor's token used from many addresses (an attacker moving to a fresh address
whenever one is turned away) is limited by the visitor it names, in sockets open at once and in new connections a
minute, sockets and long-polls alike; other visitors are unaffected (docs/operations.md, "Abuse limits").

Every connection here comes from a fresh loopback address, so the per-address limits (off on the test stack, and
unspent on a fresh address anyway) play no part: only the visitor is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import Stack
from tests.factories import new_people
from tests.security.test_flood import Outcome, address, new_session, until_closed, ws_url

HELLO = json.dumps({"type": "hello", "last_seq": 0})


@pytest.fixture(scope="module")
def three_sockets(stack: Stack) -> Iterator[str]:
    """A web process of its own letting a visitor have 3 sockets open, with no limit on new connections."""
    settings = {"DESKBELL_SOCKETS_PER_VISITOR": "3", "DESKBELL_CONNECTIONS_PER_VISITOR_PER_MINUTE": "0"}
    with stack.another_web(**settings, DESKBELL_GRACEFUL_SECONDS="1") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def three_connections(stack: Stack) -> Iterator[str]:
    """A web process of its own letting a visitor make 3 new connections a minute (the next one 20 s later)."""
    with stack.another_web(DESKBELL_CONNECTIONS_PER_VISITOR_PER_MINUTE="3", DESKBELL_GRACEFUL_SECONDS="1") as base_url:
        yield base_url


def visitor_tokens(base_url: str, count: int) -> list[str]:
    site_key = str(new_people()["site_key"])  # in-process: quicker than the CLI
    return [new_session(base_url, site_key, address()).json()["visitor_token"] for _ in range(count)]


async def connect(base_url: str, token: str) -> Any | Outcome:
    """A socket from a fresh address that says hello: the socket once welcomed, else how it was turned away."""
    ws = await websockets.connect(ws_url(base_url, token), local_addr=(address(), 0))
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(HELLO)
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), 20))
    except websockets.ConnectionClosed as closed:
        return Outcome(code=closed.rcvd.code if closed.rcvd else None)
    if first["type"] == "welcome":
        return ws
    return await until_closed(ws, Outcome([first]))


async def next_frame(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if frame["type"] == kind:
            return frame


def poll(base_url: str, token: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address()), timeout=10) as http:
        return http.get(f"{base_url}/lp/visitor", params={"token": token, "last_seq": 0, "wait": 0})


def test_one_visitors_sockets_from_many_addresses_beyond_its_limit_are_turned_away_until_one_closes(
    stack: Stack, three_sockets: str
) -> None:
    token, other_token = visitor_tokens(three_sockets, 2)

    async def scenario() -> tuple[list[Outcome], dict[str, Any], dict[str, Any], Any, list[Outcome]]:
        held = [await connect(three_sockets, token) for _ in range(3)]
        try:
            over = [await connect(three_sockets, token) for _ in range(2)]
            other = await connect(three_sockets, other_token)
            await held[0].send(json.dumps({"type": "message", "client_id": "m1", "body": "Still with you"}))
            ack = await next_frame(held[0], "ack")
            await held[2].send(json.dumps({"type": "ping"}))
            pong = await next_frame(held[2], "pong")
            await held[1].close()
            # The server gives the count back once it has closed its side: retried until then.
            waited: list[Outcome] = []
            again = await connect(three_sockets, token)
            while isinstance(again, Outcome) and len(waited) < 40:
                waited.append(again)
                await asyncio.sleep(0.25)
                again = await connect(three_sockets, token)
            for ws in (other, again):
                if not isinstance(ws, Outcome):
                    await ws.close()
            return over, ack, pong, (other, again), waited
        finally:
            for ws in held:
                if not isinstance(ws, Outcome):
                    await ws.close()

    over, ack, pong, (other, again), waited = asyncio.run(scenario())
    assert [(o.limit, o.code) for o in over] == [("sockets_per_visitor", 1013)] * 2
    assert over[0].frames[0] == {
        "type": "error",
        "code": "rate_limited",
        "message": "at most 3 connections to one chat at once",
        "retry": False,
        "limit": "sockets_per_visitor",
        "retry_after": 5,
    }
    assert ack["client_id"] == "m1" and ack["seq"] == 1, "the sockets let in keep working"
    assert pong == {"type": "pong"}
    assert not isinstance(other, Outcome), "another visitor is let in"
    assert not isinstance(again, Outcome), "a socket closed frees its place"
    assert all(o.limit == "sockets_per_visitor" for o in waited)


def test_one_visitors_new_connections_from_many_addresses_are_limited_a_minute_sockets_and_polls_alike(
    stack: Stack, three_connections: str
) -> None:
    token, other_token = visitor_tokens(three_connections, 2)

    async def scenario() -> tuple[list[httpx.Response], Any, Any, httpx.Response]:
        answers = [await asyncio.to_thread(poll, three_connections, token) for _ in range(4)]
        refused = await connect(three_connections, token)
        other_socket = await connect(three_connections, other_token)
        if not isinstance(other_socket, Outcome):
            await other_socket.close()
        return answers, refused, other_socket, await asyncio.to_thread(poll, three_connections, other_token)

    answers, refused, other_socket, other_poll = asyncio.run(scenario())

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json() == {
        "error": "rate_limited",
        "limit": "connections_per_visitor_per_minute",
        "message": "too many new connections for this chat; reconnect later",
    }
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert isinstance(refused, Outcome)
    assert (refused.limit, refused.code) == ("connections_per_visitor_per_minute", 1013)
    assert refused.frames[0]["retry_after"] >= 1
    assert not isinstance(other_socket, Outcome), "another visitor is let in"
    assert other_poll.status_code == 200
