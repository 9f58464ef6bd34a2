"""`python -m workers [store] [router]`: run the named consumers (all of them by default) in one process."""

from __future__ import annotations

import sys

from desk import subjects
from workers import base, router, store

CONSUMERS = {
    "store": (subjects.IN_STREAM, subjects.STORE_CONSUMER, store.handle),
    "router": (subjects.JOBS_STREAM, subjects.ROUTE_CONSUMER, router.handle),
}


def main(argv: list[str]) -> None:
    names = argv or list(CONSUMERS)
    unknown = sorted(set(names) - set(CONSUMERS))
    if unknown:
        raise SystemExit(f"unknown worker(s): {', '.join(unknown)}; choose from {', '.join(CONSUMERS)}")
    base.run([CONSUMERS[name] for name in names], name="worker:" + "+".join(names))


if __name__ == "__main__":
    main(sys.argv[1:])
