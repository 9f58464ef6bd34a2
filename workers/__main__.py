"""`python -m workers [store] [router]`: run the named consumers (all of them by default) in one process, and
next to them the sweeper (workers/sweeper.py), which every worker process runs."""

from __future__ import annotations

import asyncio
import sys

from nats.aio.client import Client

from desk import settings, subjects
from workers import base, mailer, router, store, sweeper

CONSUMERS = {
    # The store keeps each visitor's thread in stream order (workers/store.py); routing jobs need no order.
    "store": base.Consumer(subjects.IN_STREAM, subjects.STORE_CONSUMER, store.handle, in_order=True),
    "router": base.Consumer(subjects.JOBS_STREAM, subjects.ROUTE_CONSUMER, router.handle),
}


async def sweep(nc: Client, stop: asyncio.Event) -> None:
    config = settings.load()
    await sweeper.run(nc, stop, config.presence, config.routing)


def main(argv: list[str]) -> None:
    names = argv or list(CONSUMERS)
    unknown = sorted(set(names) - set(CONSUMERS))
    if unknown:
        raise SystemExit(f"unknown worker(s): {', '.join(unknown)}; choose from {', '.join(CONSUMERS)}")
    # The router also listens to the consoles' events (workers/router.py, `listen`).
    beside = [sweep, router.listen] if "router" in names else [sweep]
    beside.append(mailer.run)  # emails: agents' replies, missed chats, transcripts (workers/mailer.py)
    base.run([CONSUMERS[name] for name in names], name="worker:" + "+".join(names), beside=beside)


if __name__ == "__main__":
    main(sys.argv[1:])
