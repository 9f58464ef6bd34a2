"""Rolling upgrades: the code of the previous migration level runs on the new schema (migrations are
expand-only), so old and new processes can serve side by side while an upgrade rolls through.

The previous level's code is taken from git: the parent of the commit that added the newest migration.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from desk import migrate
from desk.doctor import migration_head
from desk.embedded import NatsServer, ensure_database, free_port
from desk.settings import ROOT
from tests.clients import logged_in_agent, start_conversation
from tests.conftest import SERVER_URL, Stack

MIGRATIONS = ROOT / "desk" / "migrations" / "versions"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def previous_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A checkout of the code as it was just before the newest migration was added."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git history of the checkout")
    newest = max(MIGRATIONS.glob("[0-9]*.py")).relative_to(ROOT)
    added = git("log", "--diff-filter=A", "--format=%H", "-1", "--", str(newest))
    if not added:
        pytest.skip(f"{newest} is not committed yet")
    path = tmp_path_factory.mktemp("previous") / "code"
    git("worktree", "add", "--detach", str(path), f"{added}^")
    yield path
    git("worktree", "remove", "--force", str(path))


@pytest.fixture(scope="module")
def new_schema(database_url: str) -> Iterator[str]:
    """A database migrated to this code's head."""
    server = SERVER_URL or database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"deskbell_upgrade_{secrets.token_hex(3)}"
    url = ensure_database(server, name)
    migrate.upgrade(url)
    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alive(stack: Stack, timeout: float = 60) -> None:
    """Up and connected to NATS. (Not all of /readyz: code before 0008 counted a newer migration level as
    "behind", so its database check fails here; its NATS check is what the chat needs.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(stack.base_url + "/readyz", timeout=2).json().get("nats") == "ok":
                return
        time.sleep(0.3)
    pytest.fail("the previous code did not start on the new schema:\n" + stack.logs())


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of its own: on the session's, the other tests' workers would take (and drop) its messages."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def test_the_previous_levels_code_chats_on_the_new_schema(
    previous_code: Path, new_schema: str, own_nats: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": new_schema,
        "NATS_URL": own_nats.url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DESKBELL_DATA": str(tmp_path / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(previous_code),
        "PYTHONUNBUFFERED": "1",
    }
    # The new code's release made the schema; the streams are the same for both.
    subprocess.run([sys.executable, "-m", "desk.cli", "release"], env={**env, "PYTHONPATH": ""}, cwd=ROOT, check=True)
    old = Stack(base_url=f"http://127.0.0.1:{port}", env=env, log_dir=tmp_path)
    procfile = (previous_code / "Procfile").read_text()
    commands = dict(line.split(": ", 1) for line in procfile.splitlines() if ": " in line)
    try:
        for name in ("web", "worker"):
            old.processes[name] = subprocess.Popen(
                commands[name], shell=True, env=env, cwd=previous_code, start_new_session=True,
                stdout=open(tmp_path / f"{name}.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
            )  # fmt: skip
        alive(old)
        assert migration_head() != subprocess.run(
            [sys.executable, "-c", "from desk.doctor import migration_head; print(migration_head())"],
            env=env, cwd=previous_code, capture_output=True, text=True, check=True,
        ).stdout.strip(), "the previous code should be one migration behind"  # fmt: skip

        tenant = old.bootstrap("olga")
        conversation_id = start_conversation(old.base_url, tenant["site_key"], "Does the old version still work?")
        agent = logged_in_agent(old.base_url, tenant)
        assert agent.reply(conversation_id, "It does.").status_code == 200
        expected = ["Does the old version still work?", "It does."]
        deadline = time.monotonic() + 20  # the reply is stored by the old worker, a moment after the POST
        while (thread := agent.thread(conversation_id)) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert thread == expected
    finally:
        for name in list(old.processes):
            old.stop(name)
