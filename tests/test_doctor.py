"""`deskbell doctor`, run as an operator runs it: one line per check, exit 1 with a clear line for each failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from desk.embedded import NatsServer, free_port
from desk.settings import ROOT
from tests.conftest import Stack


def doctor(stack: Stack, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "desk.cli", "doctor", "--json", *args],
        env={**stack.env, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(done.stdout)
    text = subprocess.run(
        [sys.executable, "-m", "desk.cli", "doctor", *args], env={**stack.env, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return done.returncode, report, text


def failed(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}


def test_a_healthy_installation_passes_every_check(stack: Stack) -> None:
    code, report, text = doctor(stack, "--public-url", stack.base_url)
    assert (code, failed(report)) == (0, {})
    assert [c["name"] for c in report["checks"]] == ["config", "database", "clock", "nats", "disk", "edge"]
    assert all(line.startswith("ok") for line in text.splitlines())


def test_the_database_down_fails_the_database_check(stack: Stack) -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    code, report, text = doctor(stack, "--no-edge", DATABASE_URL=down)
    assert code == 1
    assert "OperationalError" in failed(report)["database"]
    assert any(line.startswith("FAIL  database") for line in text.splitlines())


def test_nats_down_fails_the_nats_check(stack: Stack) -> None:
    code, report, _ = doctor(stack, "--no-edge", NATS_URL=f"nats://127.0.0.1:{free_port()}")
    assert code == 1
    assert list(failed(report)) == ["nats"]


def test_a_nats_server_without_the_streams_says_which_are_missing(stack: Stack, tmp_path: Path) -> None:
    bare = NatsServer(tmp_path / "nats").start()
    try:
        code, report, _ = doctor(stack, "--no-edge", NATS_URL=bare.url)
    finally:
        bare.stop()
    assert code == 1
    assert "stream DESK_IN missing" in failed(report)["nats"]
    assert "deskbell release" in failed(report)["nats"]


def test_a_wrong_public_url_fails_the_edge_check(stack: Stack) -> None:
    code, report, _ = doctor(stack, "--public-url", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert list(failed(report)) == ["edge"]
    assert "ConnectError" in failed(report)["edge"]


def test_a_full_disk_fails_the_disk_check(stack: Stack) -> None:
    # Simulated: ask for more free space than any disk has.
    code, report, _ = doctor(stack, "--no-edge", DESKBELL_MIN_FREE_BYTES=str(10**18))
    assert code == 1
    assert list(failed(report)) == ["disk"]
    assert "GiB free" in failed(report)["disk"]
