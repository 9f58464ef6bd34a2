"""The NATS connection (desk/bus.py) against the real nats-server: a flush that is given up on (it timed out, or the
socket that waited for it closed) leaves the connection working for everyone else on it."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from desk import bus
from desk.embedded import NatsServer


def test_flushes_given_up_on_leave_the_connection_reading(nats_server: NatsServer) -> None:
    async def scenario() -> tuple[bytes, int]:
        nc = await bus.connect(nats_server.url, "test-bus")
        try:
            inbox = nc.new_inbox()
            heard: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_message(msg: Msg) -> None:
                await heard.put(msg.data)

            await nc.subscribe(inbox, cb=on_message)
            # Twenty sockets close while their subscriptions are being confirmed: each waiting flush is cancelled
            # after its PING went out and before the PONG came back.
            for _ in range(20):
                waiting = asyncio.create_task(bus.flush(nc, 2))
                for _ in range(3):
                    await asyncio.sleep(0)
                waiting.cancel()
            await asyncio.sleep(0.2)  # the PONGs arrive
            await nc.publish(inbox, b"still here")
            await bus.flush(nc, 2)
            return await asyncio.wait_for(heard.get(), 2), nc.stats["reconnects"]
        finally:
            await nc.close()

    assert asyncio.run(scenario()) == (b"still here", 0)
