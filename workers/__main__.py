"""`python -m workers [store] [router]`: run the named consumers (all of them by default) in one process, and
next to them the sweeper (workers/sweeper.py), which every worker process runs."""

from __future__ import annotations

import asyncio
import sys

from nats.aio.client import Client

from desk import settings, subjects
from workers import base, router, store, sweeper

CONSUMERS = {
    "store": (subjects.IN_STREAM, subjects.STORE_CONSUMER, store.handle),
    "router": (subjects.JOBS_STREAM, subjects.ROUTE_CONSUMER, router.handle),
}


async def sweep(nc: Client, stop: asyncio.Event) -> None:
    await sweeper.run(nc, stop, settings.load().presence)


def main(argv: list[str]) -> None:
    names = argv or list(CONSUMERS)
    unknown = sorted(set(names) - set(CONSUMERS))
    if unknown:
        raise SystemExit(f"unknown worker(s): {', '.join(unknown)}; choose from {', '.join(CONSUMERS)}")
    base.run([CONSUMERS[name] for name in names], name="worker:" + "+".join(names), beside=[sweep])


if __name__ == "__main__":
    main(sys.argv[1:])
