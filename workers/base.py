"""The consumer loop shared by every worker: fetch a batch → handle → ack, and drain on SIGTERM.

docs/architecture.md, step 4. A handler returns only after its effects are committed and published; the
batch is acked after that, so a worker killed at any point leaves its messages to be redelivered.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeout

from desk import bus, settings

log = logging.getLogger(__name__)

Handler = Callable[[Client, list[Msg]], Awaitable[None]]

BATCH = 200
FETCH_WAIT_SECONDS = 2.0


async def consume(nc: Client, stream: str, durable: str, handler: Handler, stop: asyncio.Event) -> None:
    """Pull batches from a durable consumer until `stop` is set; a failed batch is retried by redelivery."""
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable, stream)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(BATCH, timeout=FETCH_WAIT_SECONDS)
        except NatsTimeout:
            continue
        except (ConnectionClosedError, OSError) as exc:
            log.warning("%s: fetch failed (%s); retrying", durable, exc)
            await asyncio.sleep(0.5)
            continue
        try:
            await handler(nc, msgs)
        except Exception:
            # Nothing was acked: JetStream redelivers after ack_wait. Nak now so the retry comes sooner.
            log.exception("%s: batch of %d failed; it will be redelivered", durable, len(msgs))
            for msg in msgs:
                await _quietly(msg.nak(delay=1))
            await asyncio.sleep(1)
            continue
        for msg in msgs:
            await _quietly(msg.ack())


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
