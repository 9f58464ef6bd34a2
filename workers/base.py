"""The consumer loop shared by every worker: fetch a batch → handle → ack, and drain on SIGTERM.

docs/architecture.md, step 4 and "When a message fails". A handler returns only after its effects are
committed and published; the batch is acked after that, so a worker killed at any point leaves its messages
to be redelivered. A batch that fails is retried one message at a time, so a poison message holds back only
itself; one that keeps failing on its own is moved to DESK_DEAD for an admin (`deskbell dead`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

import nats.errors
import prometheus_client
import sqlalchemy.exc
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from desk import aio, bus, logs, metrics, settings, subjects
from desk.db import engine

log = logging.getLogger(__name__)

Handler = Callable[[Client, list[Msg]], Awaitable[None]]

BATCH = 200
FETCH_WAIT_SECONDS = 2.0
RETRY_SECONDS = 1.0
# Failures of the database or of NATS, not of a message. The worker holds its batch (kept in progress) and
# retries it until they are back: nothing is nak'd, so an outage spends no deliveries, dead-letters nothing,
# and the backlog is taken at full speed the moment the database answers again.
OUTAGES = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    nats.errors.Error,
    OSError,
    TimeoutError,
)
OUTAGE_RETRY_SECONDS = (0.25, 2.0)  # first and longest wait between retries of a held batch
ERROR_HEADER_CHARS = 500
METRICS_PORT_RANGE = 32


async def consume(
    nc: Client, stream: str, durable: str, handler: Handler, stop: asyncio.Event, *, in_order: bool = False
) -> None:
    """Pull batches from a durable consumer until `stop` is set, settling every message of each. `in_order`: the
    handler keeps each subject in stream order, so when a batch is retried a message whose subject's earlier one
    just failed is handed back with it (nak) instead of being tried."""
    js = nc.jetstream()
    while True:  # on a NATS cluster a consumer has no leader for a moment after release and during an election
        try:
            sub = await js.pull_subscribe_bind(durable, stream)
            config = (await sub.consumer_info()).config
            break
        except ServiceUnavailableError as exc:
            if stop.is_set():
                return
            log.warning("%s: consumer not available yet (%s); retrying", durable, exc)
            await asyncio.sleep(0.5)
    progress_every = (config.ack_wait or subjects.ACK_WAIT_SECONDS) / 3
    batch = _Batch(nc, durable, handler, stop, max_deliver=config.max_deliver or -1, in_order=in_order)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(BATCH, timeout=FETCH_WAIT_SECONDS)
        except TimeoutError:  # nothing to fetch: nats-py raises its own TimeoutError or, at times, asyncio's
            continue
        except (ConnectionClosedError, OSError, ServiceUnavailableError) as exc:
            log.warning("%s: fetch failed (%s); retrying", durable, exc)
            await asyncio.sleep(0.5)
            continue
        metrics.BATCH_SIZE.labels(durable).observe(len(msgs))
        # A slow batch is still ours: say so before ack_wait runs out, or JetStream gives it to another worker.
        keep_alive = asyncio.create_task(_in_progress(msgs, progress_every))
        try:
            await batch.process(msgs)
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive


class _Stopped(Exception):
    """The worker is stopping in the middle of an outage: its held messages were handed back."""


class _Batch:
    """Handles a batch and settles each of its messages: ack, nak for a retry, or dead-letter."""

    def __init__(
        self, nc: Client, durable: str, handler: Handler, stop: asyncio.Event, max_deliver: int, in_order: bool
    ) -> None:
        self.nc, self.js, self.durable, self.handler, self.stop = nc, nc.jetstream(), durable, handler, stop
        self.in_order = in_order
        self.dead_after = subjects.DEAD_AFTER if max_deliver < 0 else min(subjects.DEAD_AFTER, max_deliver)

    async def process(self, msgs: list[Msg]) -> None:
        try:
            error = await self._attempt(msgs)
            if error is None:
                for msg in msgs:
                    if not msg.is_acked:  # a handler may settle some itself (workers/store.py, "in turn")
                        await _quietly(msg.ack())
                return
            if len(msgs) == 1:
                await self.retry_or_bury(msgs[0], error)
                return
            log.warning("%s: batch of %d failed (%s); retrying one at a time", self.durable, len(msgs), _name(error))
            failed: set[str] = set()
            for i, msg in enumerate(msgs):
                if self.stop.is_set():  # shutting down: let another worker have the rest now
                    for rest in msgs[i:]:
                        await _quietly(rest.nak())
                    return
                if self.in_order and msg.subject in failed:
                    # A later message of a subject whose earlier one just failed comes back with it: the store
                    # keeps a thread in order (workers/store.py) and would only hold it until then.
                    await _quietly(msg.nak(delay=RETRY_SECONDS))
                    continue
                error = await self._attempt([msg])
                if error is None:
                    if not msg.is_acked:
                        await _quietly(msg.ack())
                else:
                    failed.add(msg.subject)
                    await self.retry_or_bury(msg, error)
        except _Stopped:
            return

    async def _attempt(self, msgs: list[Msg]) -> Exception | None:
        """Run the handler, holding the messages through outages; the message's own failure is returned."""
        wait, longest = OUTAGE_RETRY_SECONDS
        while True:
            try:
                await self.handler(self.nc, msgs)
                return None
            except OUTAGES as exc:
                if self.stop.is_set():
                    for msg in msgs:
                        await _quietly(msg.nak())
                    raise _Stopped from exc
                log.warning(
                    "%s: %s: %s; holding %d messages, retrying in %.2f s",
                    self.durable, _name(exc), exc, len(msgs), wait,
                )  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
                wait = min(wait * 2, longest)
            except Exception as exc:
                log.exception("%s: %d message(s) from %s failed", self.durable, len(msgs), msgs[0].subject)
                metrics.ERRORS.labels(self.durable, _name(exc)).inc()
                return exc

    async def retry_or_bury(self, msg: Msg, exc: Exception) -> None:
        """Nak a failed message for a retry or, at its DEAD_AFTER-th delivery, move it to DESK_DEAD."""
        if msg.metadata.num_delivered >= self.dead_after:
            try:
                await _bury(self.js, self.durable, msg, exc)
                return
            except Exception as bury_exc:  # it stays on its consumer and comes back
                log.warning("%s: could not dead-letter %s: %s", self.durable, msg.subject, bury_exc)
        await _quietly(msg.nak(delay=RETRY_SECONDS))


async def _bury(js: JetStreamContext, durable: str, msg: Msg, exc: Exception) -> None:
    """Publish `msg` to desk.dead.<durable> with where it came from and why, then take it off its consumer."""
    meta = msg.metadata
    headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
    headers |= {
        subjects.DEAD_SUBJECT: msg.subject,
        subjects.DEAD_STREAM_NAME: meta.stream,
        subjects.DEAD_CONSUMER: durable,
        subjects.DEAD_ERROR: " ".join(f"{_name(exc)}: {exc}".split())[:ERROR_HEADER_CHARS],
        subjects.DEAD_DELIVERIES: str(meta.num_delivered),
        # A worker that dies between this publish and term() publishes it again: keep one copy.
        "Nats-Msg-Id": f"dead:{meta.stream}:{meta.sequence.stream}",
    }
    await js.publish(subjects.dead_letter(durable), msg.data, headers=headers, timeout=bus.PUBLISH_TIMEOUT)
    await msg.term()
    log.error("%s: dead-lettered %s after %d deliveries", durable, msg.subject, meta.num_delivered)
    metrics.ERRORS.labels(durable, "dead_lettered").inc()


async def _in_progress(msgs: list[Msg], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        for msg in msgs:
            if not msg.is_acked:
                await _quietly(msg.in_progress())


def _name(exc: BaseException) -> str:
    return type(exc).__name__


async def _quietly(op: Awaitable[None]) -> None:
    try:
        await op
    except Exception as exc:  # the broker redelivers anything not acked; the handler is idempotent
        log.warning("ack/nak not delivered: %s", exc)


def serve_metrics() -> int | None:
    """Serve /metrics on WORKER_METRICS_PORT, or the next free port above it (several workers on one machine
    each take one; the log says which). Unset: no metrics server."""
    first = int(os.environ.get("WORKER_METRICS_PORT") or 0)
    if not first:
        return None
    for port in range(first, first + METRICS_PORT_RANGE):
        try:
            prometheus_client.start_http_server(port, addr=os.environ.get("WORKER_METRICS_HOST", "127.0.0.1"))
        except OSError:
            continue
        log.info("worker: metrics on port %d", port)
        metrics.track_pool(lambda: engine().pool.checkedout())  # type: ignore[attr-defined]
        return port
    log.error("worker: no free metrics port in %d-%d", first, first + METRICS_PORT_RANGE - 1)
    return None


class Consumer(NamedTuple):
    """A durable consumer a worker runs, and how (`consume`'s `in_order`)."""

    stream: str
    durable: str
    handler: Handler
    in_order: bool = False


# A task that runs beside the consumers until the stop event is set (the sweeper, workers/sweeper.py).
Beside = Callable[[Client, asyncio.Event], Awaitable[None]]


def run(consumers: list[Consumer], name: str, beside: Sequence[Beside] = ()) -> None:
    """Run consumers (and the `beside` tasks) until SIGTERM or SIGINT, then finish and ack the current batches,
    let the `beside` tasks finish their round, and disconnect."""
    logs.configure(name)

    async def main() -> None:
        config = settings.load()
        if not config.nats_url:
            raise SystemExit("NATS_URL is not set")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        serve_metrics()
        nc = await bus.connect(config.nats_url, name)
        log.info("%s: consuming %s", name, ", ".join(c.durable for c in consumers))
        await asyncio.gather(
            *(consume(nc, c.stream, c.durable, c.handler, stop, in_order=c.in_order) for c in consumers),
            *(task(nc, stop) for task in beside),
        )
        # Batches are finished and acked; flush the acks and leave. (nats-py's drain() waits out its
        # 30 s timeout on pull subscriptions, so close instead.)
        await bus.flush(nc)
        await nc.close()

    aio.freeze_startup()  # everything is imported: the consumers' modules and SQLAlchemy's
    aio.run(main())
