"""Connections to NATS: reconnecting forever with fast pings, and a thread-safe bridge for sync code (Flask)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import PubAck

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0


class BusUnavailable(RuntimeError):
    """NATS did not take the message; the caller must tell its client to retry."""


async def connect(url: str, name: str, reconnected_cb: Callable[[], Awaitable[None]] | None = None) -> Client:
    """Connect, retrying until NATS answers; afterwards nats-py reconnects forever by itself."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)

    while True:
        try:
            return await nats.connect(
                url.split(","),  # every node of a cluster may be listed: any one that answers will do
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                ping_interval=5,
                max_outstanding_pings=2,
                connect_timeout=2,
                error_cb=on_error,
                reconnected_cb=reconnected_cb,
            )
        except (OSError, nats.errors.Error) as exc:
            log.warning("nats %s: cannot connect to %s (%s); retrying", name, url, exc)
            await asyncio.sleep(0.5)


# nats-py (2.16) leaves a flush's PONG future queued when the flush times out or its caller is cancelled; the
# PONG that comes later then fails the client's read loop (InvalidStateError) and the connection reads nothing
# more until its pings time out: every socket of an edge lost its events and publishes for seconds because one
# visitor closed its socket while its subscription was being confirmed (seen in CI). So the PING runs in a task of
# its own with this long limit, which a healthy connection never reaches (a dead one is replaced, and its queue
# emptied, after two missed pings of 5 s), and the caller waits for it with its own timeout.
FLUSH_LIMIT_SECONDS = 60.0


async def flush(nc: Client, timeout: float = PUBLISH_TIMEOUT) -> None:
    """What was written so far has reached the server (a PING answered); TimeoutError after `timeout`. Safe to
    time out or cancel, unlike nc.flush()."""
    ping = asyncio.ensure_future(nc.flush(FLUSH_LIMIT_SECONDS))
    ping.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved: nothing to log
    await asyncio.wait_for(asyncio.shield(ping), timeout)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


async def publish_durable(nc: Client, subject: str, payload: dict[str, Any], msg_id: str) -> PubAck:
    """Publish to JetStream and wait for the stream's ack; BusUnavailable when NATS does not confirm."""
    if not nc.is_connected:
        raise BusUnavailable("not connected to NATS")
    try:
        return await nc.jetstream().publish(
            subject, encode(payload), timeout=PUBLISH_TIMEOUT, headers={"Nats-Msg-Id": msg_id}
        )
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise BusUnavailable(str(exc) or type(exc).__name__) from exc


async def publish_event(nc: Client, subject: str, payload: dict[str, Any]) -> None:
    """A plain NATS event (no JetStream): published and flushed, or BusUnavailable. Nothing keeps it."""
    if not nc.is_connected:
        raise BusUnavailable("not connected to NATS")
    try:
        await nc.publish(subject, encode(payload))
        await flush(nc)
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise BusUnavailable(str(exc) or type(exc).__name__) from exc


class SyncBus:
    """One NATS connection on a private event loop thread, for code that is not async (Flask views)."""

    def __init__(self, url: str, name: str) -> None:
        self._url, self._name = url, name
        self._loop = asyncio.new_event_loop()
        self._nc: Client | None = None
        self._ready = threading.Event()
        self._connecting = self._loop.create_task(self._connect())  # runs once the thread starts the loop
        self._thread = threading.Thread(target=self._run, name=f"nats-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.close()  # stopped by close()

    async def _connect(self) -> None:
        self._nc = await connect(self._url, self._name)
        self._ready.set()

    def close(self, timeout: float = PUBLISH_TIMEOUT) -> None:
        """Close the connection, so it stops reconnecting (an app made for a test outlives the test's NATS), and
        end the loop's thread. Calls afterwards raise BusUnavailable."""
        if not self._thread.is_alive():
            return

        async def shut() -> None:
            while not self._connecting.done():  # nats-py's connect may swallow a cancel: cancel it until it ends
                self._connecting.cancel()
                await asyncio.wait({self._connecting}, timeout=0.1)
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()

        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout)
        except Exception as exc:  # closing is best effort: the loop stops regardless
            log.warning("nats %s: close: %s", self._name, exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def call(self, coro_fn: Any, *args: Any, timeout: float = PUBLISH_TIMEOUT + 1) -> Any:
        """Run `coro_fn(client, *args)` on the bus loop and return its result."""
        if not self._thread.is_alive():
            raise BusUnavailable("the NATS connection is closed")
        if not self._ready.wait(timeout=2):
            raise BusUnavailable("not connected to NATS")
        coro: Coroutine[Any, Any, Any] = coro_fn(self._nc, *args)
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise BusUnavailable("NATS did not answer in time") from exc

    def publish_durable(self, subject: str, payload: dict[str, Any], msg_id: str) -> PubAck:
        return self.call(publish_durable, subject, payload, msg_id)

    def publish_event(self, subject: str, payload: dict[str, Any]) -> None:
        self.call(publish_event, subject, payload)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected
