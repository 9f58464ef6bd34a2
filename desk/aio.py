"""The event loop of the long-running processes (web, workers, inbound mail): uvloop where it is installed.

uvloop runs the same asyncio code on libuv, with sockets, timers and callbacks in C; the edge spends most of its
own CPU there (reading and writing frames for hundreds of sockets), the workers less. Without it (Windows, or
`DESKBELL_EVENT_LOOP=asyncio` to compare or to debug) the processes run on asyncio's own loop, unchanged.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop unless it is missing or DESKBELL_EVENT_LOOP says `asyncio`."""
    if os.environ.get("DESKBELL_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def freeze_startup() -> None:
    """Once a process has imported and built what it serves with: collect, then move every object left to the
    collector's permanent generation, which no later collection walks. The few hundred thousand objects of the
    modules and the app are never garbage, yet each full collection walked them all: a pause of 120 to 230 ms in
    the middle of serving (web and worker at 300 messages/s, docs/benchmarks.md, "Collector pauses")."""
    gc.collect()
    gc.freeze()
