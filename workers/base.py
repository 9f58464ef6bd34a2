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
import signal
from collections.abc import Awaitable, Callable

import nats.errors
import sqlalchemy.exc
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from desk import bus, settings, subjects

log = logging.getLogger(__name__)

Handler = Callable[[Client, list[Msg]], Awaitable[None]]

BATCH = 200
FETCH_WAIT_SECONDS = 2.0
RETRY_SECONDS = 1.0
# Failures of the database or of NATS, not of a message: retried with backoff, up to the consumer's
# max_deliver, and never counted towards DEAD_AFTER.
OUTAGES = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    nats.errors.Error,
    OSError,
    TimeoutError,
)
OUTAGE_BACKOFF_MAX_SECONDS = 15.0
ERROR_HEADER_CHARS = 500


async def consume(nc: Client, stream: str, durable: str, handler: Handler, stop: asyncio.Event) -> None:
    """Pull batches from a durable consumer until `stop` is set; a failed batch is retried by redelivery."""
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable, stream)
    config = (await sub.consumer_info()).config
    progress_every = (config.ack_wait or subjects.ACK_WAIT_SECONDS) / 3
    batch = _Batch(nc, durable, handler, stop, max_deliver=config.max_deliver or -1)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(BATCH, timeout=FETCH_WAIT_SECONDS)
        except NatsTimeout:
            continue
        except (ConnectionClosedError, OSError) as exc:
            log.warning("%s: fetch failed (%s); retrying", durable, exc)
            await asyncio.sleep(0.5)
            continue
        # A slow batch is still ours: say so before ack_wait runs out, or JetStream gives it to another worker.
        keep_alive = asyncio.create_task(_in_progress(msgs, progress_every))
        try:
            outage = await batch.process(msgs)
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
        if outage:
            await asyncio.sleep(RETRY_SECONDS)


class _Batch:
    """Handles a batch and settles each of its messages: ack, nak for a retry, or dead-letter."""

    def __init__(self, nc: Client, durable: str, handler: Handler, stop: asyncio.Event, max_deliver: int) -> None:
        self.nc, self.js, self.durable, self.handler, self.stop = nc, nc.jetstream(), durable, handler, stop
        self.max_deliver = max_deliver  # -1: unlimited
        self.dead_after = subjects.DEAD_AFTER if max_deliver < 0 else min(subjects.DEAD_AFTER, max_deliver)

    async def process(self, msgs: list[Msg]) -> bool:
        """True when the database or NATS failed (the caller pauses before the next fetch)."""
        try:
            await self.handler(self.nc, msgs)
        except OUTAGES as exc:
            log.warning("%s: batch of %d failed (%s: %s); retrying later", self.durable, len(msgs), _name(exc), exc)
            for msg in msgs:
                await self.retry_or_bury(msg, exc)
            return True
        except Exception as exc:
            if len(msgs) == 1:
                log.exception("%s: message on %s failed", self.durable, msgs[0].subject)
                await self.retry_or_bury(msgs[0], exc)
                return False
            log.warning("%s: batch of %d failed (%s); retrying one at a time", self.durable, len(msgs), _name(exc))
        else:
            for msg in msgs:
                await _quietly(msg.ack())
            return False
        for i, msg in enumerate(msgs):
            if self.stop.is_set():  # shutting down: let another worker have the rest now
                for rest in msgs[i:]:
                    await _quietly(rest.nak())
                return False
            try:
                await self.handler(self.nc, [msg])
            except OUTAGES as exc:
                log.warning("%s: %s failed (%s: %s); retrying later", self.durable, msg.subject, _name(exc), exc)
                for rest in msgs[i:]:
                    await self.retry_or_bury(rest, exc)
                return True
            except Exception as exc:
                log.exception("%s: message on %s failed on its own", self.durable, msg.subject)
                await self.retry_or_bury(msg, exc)
            else:
                await _quietly(msg.ack())
        return False

    async def retry_or_bury(self, msg: Msg, exc: Exception) -> None:
        """Nak `msg` for a retry or, when this delivery was its last chance, move it to DESK_DEAD."""
        outage = isinstance(exc, OUTAGES)
        delivered = msg.metadata.num_delivered
        last_chance = self.max_deliver if outage else self.dead_after
        if 0 < last_chance <= delivered:
            try:
                await _bury(self.js, self.durable, msg, exc)
                return
            except Exception as bury_exc:  # it stays on its consumer and comes back
                log.warning("%s: could not dead-letter %s: %s", self.durable, msg.subject, bury_exc)
        delay = min(RETRY_SECONDS * 2 ** (delivered - 1), OUTAGE_BACKOFF_MAX_SECONDS) if outage else RETRY_SECONDS
        await _quietly(msg.nak(delay=delay))


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


def run(consumers: list[tuple[str, str, Handler]], name: str) -> None:
    """Run consumers until SIGTERM or SIGINT, then finish and ack the current batches and disconnect."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def main() -> None:
        config = settings.load()
        if not config.nats_url:
            raise SystemExit("NATS_URL is not set")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        nc = await bus.connect(config.nats_url, name)
        log.info("%s: consuming %s", name, ", ".join(durable for _, durable, _ in consumers))
        await asyncio.gather(*(consume(nc, s, d, h, stop) for s, d, h in consumers))
        # Batches are finished and acked; flush the acks and leave. (nats-py's drain() waits out its
        # 30 s timeout on pull subscriptions, so close instead.)
        await nc.flush()
        await nc.close()

    asyncio.run(main())
