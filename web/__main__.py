"""`python -m web` (the Procfile's web process): Hypercorn serving web.asgi:app on $HOST:$PORT.

Run from here rather than the hypercorn command so that SIGTERM first drains the socket edge (each socket
finishes the message it is storing, then is closed with 1012 so the client reconnects to another edge), and
only then Hypercorn stops listening and waits for requests in flight (docs/operations.md, "Restarts").

`WEB_CONCURRENCY=N` (the name Procfile platforms and other Python servers use; default 1) runs N such processes
on the one port, for a machine with more cores than one web process can use: this one starts N - 1 more, each
listens with SO_REUSEPORT, and the kernel spreads new connections among them. Each is a whole web process, as
any of them run N times would be (docs/scaling.md); a SIGTERM here reaches them all, and when one of them ends
the others are stopped too, so that the supervisor sees it and restarts the lot.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.protocol import ws_stream
from wsproto.extensions import Extension

from desk import aio, settings


class _NoCompression(Extension):
    """What Hypercorn offers in place of permessage-deflate, which it would otherwise accept from every browser
    with no setting to refuse it: a zlib compressor and decompressor per socket hold ~300 KiB (over 100 KiB of it
    resident once a frame is sent), most of an idle visitor socket's memory, to shrink frames of a few hundred
    bytes (docs/benchmarks.md, "Idle sockets"). An extension no client asks for, so none is agreed."""

    name = "x-deskbell-uncompressed"

    def offer(self) -> bool:
        return False


ws_stream.PerMessageDeflate = _NoCompression  # type: ignore[misc]

# After the edge has drained: how long Hypercorn waits for requests (long-polls, pages) still running.
GRACEFUL_SECONDS = 10.0
# Connections the kernel holds for the process before it accepts them (Hypercorn's default is 100; the kernel
# caps it at net.core.somaxconn, 4096 on current Linux). With 100, a storm of visitors overflowed the queue
# while the event loop was busy, and each dropped SYN waited 1, 3, 7 s for its retransmission.
BACKLOG = 2048
PR_SET_PDEATHSIG = 1  # prctl(2)
SIBLING = "DESKBELL_WEB_SIBLING"  # set in the processes the first one starts for WEB_CONCURRENCY
log = logging.getLogger("web")


def concurrency() -> int:
    """WEB_CONCURRENCY: how many web processes share this port."""
    value = os.environ.get("WEB_CONCURRENCY") or "1"
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"WEB_CONCURRENCY must be a whole number of processes, 1 or more (it is {value!r})")
    return int(value)


def _listening_socket(host: str, port: int, shared: bool) -> socket.socket:
    """The web port, with SO_REUSEPORT when WEB_CONCURRENCY processes share it (each binds its own socket, and
    the kernel spreads new connections among them); TCP_NODELAY as Hypercorn sets it, for the accepted sockets."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    both = host == "::" and socket.has_dualstack_ipv6()  # "::" takes IPv4 too, as Hypercorn's own bind did
    listening = socket.create_server(
        (host, port), family=family, backlog=BACKLOG, reuse_port=shared, dualstack_ipv6=both
    )
    listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listening


async def main() -> None:
    from web.asgi import app

    aio.freeze_startup()  # the app is built: Flask, the edge and what they import

    config = Config()
    processes = concurrency()
    host, port = os.environ.get("HOST", "0.0.0.0").strip("[]"), int(os.environ.get("PORT", "8000"))
    config.bind = [f"fd://{_listening_socket(host, port, processes > 1).detach()}"]  # Hypercorn's from here on
    config.graceful_timeout = float(os.environ.get("DESKBELL_GRACEFUL_SECONDS") or GRACEFUL_SECONDS)
    config.accesslog = None
    config.backlog = BACKLOG
    # A frame a little over the protocol's limit still gets its frame_too_large error frame (docs/protocol.md);
    # one far over it is cut by Hypercorn (close 1009) before it is buffered whole.
    config.websocket_max_message_size = 2 * settings.load().limits.frame_bytes + 1024
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    siblings: list[asyncio.subprocess.Process] = []
    crashed: list[int] = []

    def stopping(sig: int) -> None:
        stop.set()
        for sibling in siblings:
            if sibling.returncode is None:
                sibling.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping, sig)

    async def watch(sibling: asyncio.subprocess.Process) -> None:
        code = await sibling.wait()
        if not stop.is_set():
            log.error("web: process %d ended (%s); stopping the others", sibling.pid, code)
            crashed.append(sibling.pid)
            stopping(signal.SIGTERM)

    env = {**os.environ, SIBLING: "1"}
    for _ in range(0 if os.environ.get(SIBLING) else processes - 1):
        siblings.append(
            await asyncio.create_subprocess_exec(sys.executable, "-m", "web", env=env, preexec_fn=_die_with_parent)
        )
    watching = [asyncio.create_task(watch(sibling)) for sibling in siblings]

    async def drained() -> None:
        await stop.wait()
        await app.state.hub.drain()

    try:
        await serve(app, config, shutdown_trigger=drained)  # type: ignore[arg-type]
    finally:
        stopping(signal.SIGTERM)
        await asyncio.gather(*watching)
    if crashed:
        raise SystemExit(1)


def _die_with_parent() -> None:
    """In a sibling, before it runs: the kernel sends it SIGTERM when the first process dies, however it dies
    (a SIGKILL included), so that no sibling is left holding the port."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


if __name__ == "__main__":
    aio.run(main())
