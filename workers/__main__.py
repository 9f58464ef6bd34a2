"""`python -m workers [store] [router]`: run the named consumers (all of them by default) in one process, and
next to them the sweeper (workers/sweeper.py), which every worker process runs."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from desk import bus, settings, subjects
from workers import base, router, store, sweeper

log = logging.getLogger("workers")

CONSUMERS = {
    "store": (subjects.IN_STREAM, subjects.STORE_CONSUMER, store.handle),
    "router": (subjects.JOBS_STREAM, subjects.ROUTE_CONSUMER, router.handle),
}


def run(consumers: list[tuple[str, str, base.Handler]], name: str) -> None:
    """base.run's loop with the sweeper beside the consumers: until SIGTERM or SIGINT, then finish the current
    batches and the current sweep, and disconnect."""
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
        durables = ", ".join(durable for _, durable, _ in consumers)
        log.info("%s: consuming %s, sweeping every %d s", name, durables, config.presence.sweep_seconds)
        await asyncio.gather(
            *(base.consume(nc, s, d, h, stop) for s, d, h in consumers), sweeper.run(nc, stop, config.presence)
        )
        # As in base.run: nats-py's drain() waits out its 30 s timeout on pull subscriptions, so flush and close.
        await nc.flush()
        await nc.close()

    asyncio.run(main())


def main(argv: list[str]) -> None:
    names = argv or list(CONSUMERS)
    unknown = sorted(set(names) - set(CONSUMERS))
    if unknown:
        raise SystemExit(f"unknown worker(s): {', '.join(unknown)}; choose from {', '.join(CONSUMERS)}")
    run([CONSUMERS[name] for name in names], name="worker:" + "+".join(names))


if __name__ == "__main__":
    main(sys.argv[1:])
