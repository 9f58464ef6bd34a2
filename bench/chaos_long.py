"""The long fault run (issue 3): at least 100,000 messages over about 10 minutes with random faults.

    .venv/bin/python -m bench.chaos_long [--minutes 10] [--visitors 60] [--interval 0.3] [--seed N]

Runs tests/faults/stack.py's processes, chats through a random schedule of the suite's faults, then checks
every promise with the same checker as the CI test. Prints the schedule and the figures as JSON for
docs/reliability.md. Not part of CI: it takes the minutes it says.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.chaos import chat_through_faults, check, faults
from tests.faults.stack import running_fault_stack


def random_schedule(names: list[str], minutes: float, rng: random.Random) -> list[tuple[str, float]]:
    """Faults one after another with 5-25 s of calm between them, filling about `minutes`."""
    steps: list[tuple[str, float]] = [("warm up", 10.0)]
    budget = minutes * 60 - 10
    cost = {name: 20.0 if "SIGSTOP" in name else 10.0 if "blackhole" in name else 4.0 for name in names}
    while budget > 30:
        name = rng.choice(names)
        calm = rng.uniform(5, 25)
        steps.append((name, calm))
        budget -= cost[name] + calm
    return steps


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp, running_fault_stack(Path(tmp)) as stack:
        tenant = stack.processes.bootstrap("ann", "bob")
        steps = random_schedule(list(faults(stack)), args.minutes, rng)
        log: list[str] = []
        began = time.monotonic()
        views, agents = await chat_through_faults(
            stack, tenant, args.visitors, args.interval, steps, args.min_messages, log
        )
        elapsed = time.monotonic() - began
        figures = check(stack.database_url, views, agents)
    print("\n".join(log))
    print(json.dumps({"seed": args.seed, "seconds": round(elapsed), **figures}, indent=2))


if __name__ == "__main__":
    # On SIGTERM, unwind like Ctrl+C so the stack's processes and temporary folders are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--visitors", type=int, default=60)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between a visitor's messages")
    parser.add_argument("--min-messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
