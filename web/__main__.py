"""`python -m web` (the Procfile's web process): Hypercorn serving web.asgi:app on $HOST:$PORT.

Run from here rather than the hypercorn command so that SIGTERM first drains the socket edge (each socket
finishes the message it is storing, then is closed with 1012 so the client reconnects to another edge), and
only then Hypercorn stops listening and waits for requests in flight (docs/operations.md, "Restarts").
"""

from __future__ import annotations

import asyncio
import os
import signal

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


async def main() -> None:
    from web.asgi import app

    config = Config()
    config.bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]
    config.graceful_timeout = float(os.environ.get("DESKBELL_GRACEFUL_SECONDS") or GRACEFUL_SECONDS)
    config.accesslog = None
    # A frame a little over the protocol's limit still gets its frame_too_large error frame (docs/protocol.md);
    # one far over it is cut by Hypercorn (close 1009) before it is buffered whole.
    config.websocket_max_message_size = 2 * settings.load().limits.frame_bytes + 1024
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def drained() -> None:
        await stop.wait()
        await app.state.hub.drain()

    await serve(app, config, shutdown_trigger=drained)  # type: ignore[arg-type]


if __name__ == "__main__":
    aio.run(main())
