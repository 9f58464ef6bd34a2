"""`deskbell bootstrap`, run as a script would run it: a child process against the test database."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any

from sqlalchemy import select

from desk.accounts import check_password
from desk.db import system_session
from desk.models import User
from desk.settings import ROOT


def bootstrap(database_url: str, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "desk.cli", "bootstrap", "--json", *args]
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def test_bootstrap_prints_the_site_key_and_the_owners_login(database_url: str) -> None:
    slug = "cli-" + secrets.token_hex(4)
    out = bootstrap(database_url, "--slug", slug, "--owner-email", f"Boss@{slug}.test")
    assert (out["tenant"], out["owner_email"], out["created"]) == (slug, f"boss@{slug}.test", True)
    assert out["site_key"] and out["owner_password"]
    with system_session() as session:
        owner = session.scalar(select(User).where(User.email == out["owner_email"]))
    assert owner is not None and owner.role == "owner"
    assert check_password(owner.password_hash, out["owner_password"])


def test_bootstrap_again_reports_the_same_site_and_no_password(database_url: str) -> None:
    slug = "cli-" + secrets.token_hex(4)
    first = bootstrap(database_url, "--slug", slug, "--owner-email", f"owner@{slug}.test")
    again = bootstrap(database_url, "--slug", slug, "--owner-email", f"owner@{slug}.test")
    assert again["site_key"] == first["site_key"]
    assert (again["owner_email"], again["owner_password"], again["created"]) == (first["owner_email"], None, False)


def test_bootstrap_refuses_an_owner_email_of_another_tenant_with_a_clear_message(database_url: str) -> None:
    first = "cli-" + secrets.token_hex(4)
    bootstrap(database_url, "--slug", first, "--owner-email", f"boss@{first}.test")
    command = [sys.executable, "-m", "desk.cli", "bootstrap", "--json", "--slug", "cli-" + secrets.token_hex(4)]
    done = subprocess.run(
        [*command, "--owner-email", f"boss@{first}.test"],
        env={**os.environ, "DATABASE_URL": database_url}, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"email already used by another tenant: boss@{first}.test" in done.stderr
    assert "Traceback" not in done.stderr
