"""SaaS mode's per-tenant domains (docs/admin.md, "Per-tenant domains"): on tenant A's domain only A's people log
in and keep a session; the platform's own address takes anyone; a self-hosted installation ignores hosts. The
domains are set with `deskbell domain`, as an operator would."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select

from desk.db import system_session
from desk.models import AuditLog
from desk.settings import ROOT
from tests.admin.conftest import Person
from tests.conftest import Stack


def deskbell(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "desk.cli", *args], env=stack.env, cwd=ROOT, capture_output=True, text=True
    )


def on_host(base_url: str, host: str) -> Person:
    """A browser that reached `base_url` under the name `host` (as DNS pointing the tenant's domain at us would)."""
    person = Person(base_url)
    person.client.headers["Host"] = host
    return person


@pytest.fixture(scope="module")
def two_tenants(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tenants A and B, each with an agent and its own domain."""
    a, b = stack.bootstrap("alice"), stack.bootstrap("bob")
    for tenant in (a, b):
        tenant["slug"] = tenant["agents"][0]["email"].split("@")[1].removesuffix(".test")  # bootstrap's slug
        tenant["domain"] = f"chat.{tenant['slug']}.example"
        done = deskbell(stack, "domain", tenant["slug"], tenant["domain"].upper() + ".")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{tenant['slug']}: {tenant['domain']}"
    return a, b


def test_on_a_tenants_domain_only_its_people_can_log_in(saas_url: str, two_tenants: tuple[dict, dict]) -> None:
    a, b = two_tenants
    response = on_host(saas_url, a["domain"]).login(b["agents"][0])
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    with system_session() as session:
        failure = session.scalars(
            select(AuditLog).where(AuditLog.action == "login.failure").order_by(AuditLog.id.desc())
        ).first()
    assert failure is not None and failure.detail.get("email") == b["agents"][0]["email"]
    assert failure.detail.get("reason") == "domain", "recorded in B's audit log, saying why"
    assert on_host(saas_url, a["domain"]).login(a["agents"][0]).status_code == 302
    assert on_host(saas_url, b["domain"]).login(b["agents"][0]).status_code == 302


def test_a_session_of_another_tenant_is_refused_on_a_tenants_domain(
    saas_url: str, two_tenants: tuple[dict, dict]
) -> None:
    a, b = two_tenants
    person = on_host(saas_url, b["domain"])
    assert person.login(b["agents"][0]).status_code == 302
    assert person.get("/console").status_code == 200

    person.client.headers["Host"] = a["domain"]  # the same cookie, sent to A's domain
    for path in ("/console", "/admin", "/account/password"):
        refused = person.get(path)
        assert refused.status_code == 403, path
        assert "This address belongs to another organisation" in refused.text

    person.client.headers["Host"] = b["domain"]
    assert person.get("/console").status_code == 200, "still logged in on its own domain"


def test_the_platforms_own_address_takes_anyone(saas_url: str, two_tenants: tuple[dict, dict]) -> None:
    _, b = two_tenants
    person = Person(saas_url)  # 127.0.0.1: no tenant's domain
    assert person.login(b["agents"][0]).status_code == 302
    assert person.get("/console").status_code == 200


def test_a_self_hosted_installation_ignores_hosts(stack: Stack, two_tenants: tuple[dict, dict]) -> None:
    a, b = two_tenants
    person = on_host(stack.base_url, a["domain"])
    assert person.login(b["agents"][0]).status_code == 302
    assert person.get("/console").status_code == 200


def test_the_domain_command_refuses_a_taken_or_malformed_domain(stack: Stack, two_tenants: tuple[dict, dict]) -> None:
    a, b = two_tenants
    taken = deskbell(stack, "domain", b["slug"], a["domain"])
    assert taken.returncode != 0
    assert "Another tenant has that domain." in taken.stderr
    for bad in ("https://chat.example.com", "chat.example.com:8443", "localhost", "chat_example.com"):
        refused = deskbell(stack, "domain", b["slug"], bad)
        assert refused.returncode != 0, bad
        assert "A domain is a host name" in refused.stderr
    assert deskbell(stack, "domain", b["slug"]).stdout.strip() == b["domain"], "unchanged"
