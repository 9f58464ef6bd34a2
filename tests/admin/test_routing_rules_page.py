"""The routing rules page (/admin/routing-rules, docs/admin.md "Routing rules"): an admin adds, reorders and
deletes rules in a browser without JavaScript (the panel works without htmx); wrong input is refused with what is
wrong; every change is in the audit log; saving the routing settings keeps the rules."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from desk.db import tenant_session
from desk.models import AuditLog, Team, Tenant
from tests.admin.conftest import Person, logged_in
from tests.conftest import Stack
from tests.factories import new_people


def listed(person: Person) -> list[str]:
    """The rules as the page lists them, top first."""
    page = person.get("/admin/routing-rules")
    assert page.status_code == 200
    return [re.sub(r"\s+", " ", t).strip() for t in re.findall(r'<td class="rule-text">(.*?)</td>', page.text, re.S)]


def rule_ids(person: Person) -> list[str]:
    return re.findall(r'data-rule="([0-9a-f]+)"', person.get("/admin/routing-rules").text)


def team_ids(tenant_id: Any) -> dict[str, str]:
    with tenant_session(tenant_id) as session:
        return {name: str(i) for i, name in session.execute(select(Team.id, Team.name)).all()}


def test_an_admin_adds_reorders_and_deletes_rules_and_each_change_is_audited(stack: Stack) -> None:
    people = new_people()
    admin = logged_in(stack.base_url, people["admin"])
    for name in ("Sales", "Support"):
        assert admin.post("/admin/teams", {"name": name}).status_code == 303
    teams = team_ids(people["tenant_id"])

    added = admin.post(
        "/admin/routing-rules", {"when": "page_contains", "value": "/pricing", "team_id": teams["Sales"]}
    )
    assert added.status_code == 303 and added.headers["location"].endswith("/admin/routing-rules")
    admin.post("/admin/routing-rules", {"when": "pre_chat", "value": "Support", "team_id": teams["Support"]})
    admin.post("/admin/routing-rules", {"when": "language", "value": "zh", "team_id": teams["Support"]})
    assert listed(admin) == [
        "Page URL contains &#34;/pricing&#34; → Sales",
        "Pre-chat choice is &#34;Support&#34; → Support",
        "Visitor&#39;s language is &#34;zh&#34; → Support",
    ]

    first, second, third = rule_ids(admin)
    assert admin.post(f"/admin/routing-rules/{second}/move", {"direction": "up"}).status_code == 303
    assert admin.post(f"/admin/routing-rules/{first}/move", {"direction": "down"}).status_code == 303
    assert rule_ids(admin) == [second, third, first]
    assert admin.post(f"/admin/routing-rules/{third}/delete").status_code == 303
    assert listed(admin) == [
        "Pre-chat choice is &#34;Support&#34; → Support",
        "Page URL contains &#34;/pricing&#34; → Sales",
    ]

    # Saving the routing settings (another form) keeps the rules.
    assert admin.post("/admin/settings/routing", {"strategy": "least_busy", "auto_assign": "on"}).status_code == 303
    assert rule_ids(admin) == [second, first]
    with tenant_session(people["tenant_id"]) as session:
        actions = list(
            session.scalars(
                select(AuditLog.action).where(AuditLog.action.like("routing_rules.%")).order_by(AuditLog.id)
            )
        )
        routing = session.scalar(select(Tenant.settings))["routing"]
    assert actions == ["routing_rules.add"] * 3 + ["routing_rules.move"] * 2 + ["routing_rules.delete"]
    assert routing["strategy"] == "least_busy" and [r["id"] for r in routing["rules"]] == [second, first]


def test_a_wrong_rule_is_refused_with_what_is_wrong_and_the_form_kept(stack: Stack) -> None:
    people = new_people()
    owner = logged_in(stack.base_url, people["owner"])
    assert owner.post("/admin/teams", {"name": "Sales"}).status_code == 303
    sales = team_ids(people["tenant_id"])["Sales"]

    too_long = owner.post("/admin/routing-rules", {"when": "page_contains", "value": "x" * 501, "team_id": sales})
    assert too_long.status_code == 400
    assert "The value may be at most 500 characters (it has 501)." in too_long.text
    no_key = owner.post("/admin/routing-rules", {"when": "attribute", "value": "pro", "team_id": sales})
    assert no_key.status_code == 400 and "The attribute&#39;s name is empty" in no_key.text
    assert 'value="pro"' in no_key.text  # the form keeps what was typed
    gone = owner.post("/admin/routing-rules/deadbeef/move", {"direction": "up"})
    assert gone.status_code == 404 and "No such rule" in gone.text
    assert listed(owner) == []
