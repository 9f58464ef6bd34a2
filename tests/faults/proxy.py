"""A TCP proxy for fault injection: pass, delay, blackhole or reset a hop, or refuse WebSocket upgrades;
with several targets it is also the load balancer in front of the edges.

It runs its own event loop on a thread, so sync tests (and Playwright) can switch its mode while traffic
flows. Used in front of the edge, NATS and PostgreSQL by the fault-injection tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

from desk.embedded import free_port

Mode = Literal["pass", "delay", "blackhole", "reset"]
REFUSED_UPGRADE = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Proxy:
    def __init__(self, *target_ports: int, strip_websocket: bool = False) -> None:
        # Several targets: a round-robin load balancer that skips a target it cannot reach.
        self.targets = list(target_ports)
        self._next = 0
        self.port = free_port()
        self.mode: Mode = "pass"
        self.delay_seconds = 0.0
        self.strip_websocket = strip_websocket
        self.refused_upgrades = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- control (from any thread) ---------------------------------------------------------------------------

    def start(self) -> Proxy:
        self._thread.start()
        self._started.wait(5)
        return self

    def set(self, mode: Mode, delay_seconds: float = 0.0) -> None:
        """Switch mode. `reset` aborts the open connections at once. Ending a blackhole aborts the connections
        that lived through it, as TCP would once its retransmissions time out: their bytes were swallowed."""
        previous, self.mode, self.delay_seconds = self.mode, mode, delay_seconds
        if mode == "reset" or previous == "blackhole":
            self._loop.call_soon_threadsafe(self._cut_all)

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            self.mode = "reset"
            self._cut_all()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # let connection callbacks that were already queued run and end

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the proxy ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        self._started.set()
        self._loop.run_forever()

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()  # RST
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            client_w.transport.abort()
            return
        if self.mode == "blackhole":
            self._writers.add(client_w)
            return  # accepted, then silence
        for _ in self.targets:
            port = self.targets[self._next % len(self.targets)]
            self._next += 1
            try:
                server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            client_w.transport.abort()
            return
        if self.strip_websocket:
            head = await client_r.readuntil(b"\r\n\r\n")
            if b"upgrade: websocket" in head.lower():
                self.refused_upgrades += 1
                client_w.write(REFUSED_UPGRADE)
                await client_w.drain()
                client_w.close()
                server_w.close()
                return
            server_w.write(head)
        self._writers.update({client_w, server_w})
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue  # swallowed
                if self.mode == "delay" and self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
