"""WEB_CONCURRENCY: several web processes on one port, for a machine with more cores than one of them can use
(web/__main__.py; docs/operations.md, "Processes")."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from tests.clients import Visitor, eventually
from tests.conftest import Stack


def _web_processes(stack: Stack, base_url: str) -> list[psutil.Process]:
    """The Python processes of the `web` that `another_web` started for `base_url` (under its shell)."""
    shell = stack.processes[f"web-{base_url.rsplit(':', 1)[1]}"]
    return [p for p in psutil.Process(shell.pid).children(recursive=True) if "python" in p.name()]


def _sockets_on(process: psutil.Process, port: int, status: str = "ESTABLISHED") -> int:
    return sum(c.laddr.port == port and c.status == status for c in process.net_connections("tcp"))


def _listening(stack: Stack, base_url: str, port: int) -> list[psutil.Process] | bool:
    """Both processes, once each has bound its own socket: a process that is still importing the product gets none
    of the connections the kernel spreads (SO_REUSEPORT), and `another_web` waits for the port, not for both."""
    found = _web_processes(stack, base_url)
    return len(found) == 2 and all(_sockets_on(p, port, "LISTEN") for p in found) and found


def test_two_web_processes_share_the_port_and_a_sigterm_to_the_first_drains_and_stops_both(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    with stack.another_web(WEB_CONCURRENCY="2") as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        processes = eventually(lambda: _listening(stack, base_url, port), "two processes listening")
        first = min(processes, key=lambda p: p.create_time())

        async def scenario() -> list[int]:
            visitors = [Visitor(base_url, str(tenant["site_key"])) for _ in range(24)]
            for visitor in visitors:
                await visitor.connect()
            await visitors[0].send({"type": "message", "client_id": "m-1", "body": "Hello from either process"})
            assert (await visitors[0].expect("ack"))["seq"] == 1
            held = [_sockets_on(p, port) for p in processes]
            os.kill(first.pid, signal.SIGTERM)  # the first process only: it passes the signal on
            codes = [(await asyncio.wait_for(v.ws.wait_closed(), 20), v.ws.close_code)[1] for v in visitors]
            return held + codes

        held_a, held_b, *codes = asyncio.run(scenario())
        # The kernel spreads connections among the processes (SO_REUSEPORT): 24 sockets on one would be 1 in 2^23.
        assert held_a > 0 and held_b > 0, (held_a, held_b)
        assert set(codes) == {1012}, "every socket is told the server restarts, on both processes"
        gone = psutil.wait_procs(processes, timeout=20)[1]
        assert not gone, f"still running after SIGTERM: {gone}"


def test_when_one_of_the_web_processes_dies_the_others_stop_so_the_supervisor_restarts_them(stack: Stack) -> None:
    with stack.another_web(WEB_CONCURRENCY="2") as base_url:
        processes = eventually(lambda: len(found := _web_processes(stack, base_url)) == 2 and found, "two processes")
        second = max(processes, key=lambda p: p.create_time())
        second.kill()
        shell = stack.processes[f"web-{base_url.rsplit(':', 1)[1]}"]  # its exit code is the first process's
        assert shell.wait(20) == 1, "the first process stops too, with an error for the supervisor to see"


def test_a_web_concurrency_that_is_not_a_whole_number_stops_the_process_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from web.__main__ import concurrency

    monkeypatch.setenv("WEB_CONCURRENCY", "two")
    with pytest.raises(SystemExit, match="WEB_CONCURRENCY must be a whole number of processes, 1 or more"):
        concurrency()
    monkeypatch.setenv("WEB_CONCURRENCY", "0")
    with pytest.raises(SystemExit, match="it is '0'"):
        concurrency()
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert concurrency() == 3
    monkeypatch.delenv("WEB_CONCURRENCY")
    assert concurrency() == 1


def test_when_the_first_web_process_is_killed_outright_the_others_stop_and_free_the_port(stack: Stack) -> None:
    with stack.another_web(WEB_CONCURRENCY="2") as base_url:
        processes = eventually(lambda: len(found := _web_processes(stack, base_url)) == 2 and found, "two processes")
        first, second = sorted(processes, key=lambda p: p.create_time())
        first.kill()  # no handler runs: the kernel tells the sibling (PR_SET_PDEATHSIG)
        second.wait(20)
