"""Run inside a network namespace with only loopback (tests/test_offline.py): `deskbell dev` with its embedded
PostgreSQL and nats-server, a visitor and an agent chat, and `deskbell doctor` passes. Prints a JSON result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from desk.embedded import start_postgres
from desk.settings import ROOT
from tests.clients import logged_in_agent, start_conversation


def main(data_dir: Path, port: int) -> dict[str, object]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    env.update(DESKBELL_DATA=str(data_dir), PORT=str(port), DESKBELL_NATS_PORT=str(port + 1))
    deskbell = [sys.executable, "-m", "desk.cli"]
    dev = subprocess.Popen([*deskbell, "dev"], env=env, cwd=ROOT, start_new_session=True,
                           stdout=open(data_dir / "dev.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or dev.poll() is not None:
                return {"started": False, "log": (data_dir / "dev.log").read_text()[-3000:]}
            time.sleep(0.5)
        embedded = {"DATABASE_URL": start_postgres(data_dir), "NATS_URL": f"nats://127.0.0.1:{port + 1}"}
        out = subprocess.run([*deskbell, "bootstrap", "--json", "--slug", "offline", "--owner-email", "o@offline.test",
                              "--agent", "a@offline.test"],
                             env={**env, **embedded}, cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            return {"started": True, "bootstrap": out.stderr[-3000:]}
        tenant = json.loads(out.stdout)
        conversation_id = start_conversation(base, tenant["site_key"], "Anyone there, offline?")
        agent = logged_in_agent(base, tenant)
        agent.reply(conversation_id, "Yes, fully offline.")
        deadline = time.monotonic() + 30  # the reply is stored by the store worker, after the POST returns
        while len(thread := agent.thread(conversation_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        doctor = subprocess.run([*deskbell, "doctor", "--json", "--public-url", base],
                                env={**env, **embedded}, cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        return {
            "started": True,
            "thread": thread,
            "doctor": json.loads(doctor.stdout),
            "doctor_exit": doctor.returncode,
        }
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(30)


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
