"""Nothing phones home: the whole product installs its data, starts, chats and passes `doctor` in a network
namespace that has only loopback (no route to anywhere else, no DNS)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desk.embedded import free_port
from desk.settings import ROOT


def loopback_only_namespace() -> list[str]:
    """The command prefix that runs a program in a new network namespace with only `lo`, up."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode().strip()}")
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


@pytest.mark.timeout(420)
def test_deskbell_starts_chats_and_passes_doctor_with_no_network_but_loopback(tmp_path: Path) -> None:
    prefix = loopback_only_namespace()
    interfaces = subprocess.run([*prefix, "ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in interfaces.splitlines()] == ["lo"]

    done = subprocess.run(
        [*prefix, sys.executable, "-m", "tests.offline_scenario", str(tmp_path / "data"), str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["started"], result.get("log")
    assert "bootstrap" not in result, result["bootstrap"]
    assert result["thread"] == ["Anyone there, offline?", "Yes, fully offline."]
    failed = [c for c in result["doctor"]["checks"] if not c["ok"]]
    assert (result["doctor_exit"], failed) == (0, [])
