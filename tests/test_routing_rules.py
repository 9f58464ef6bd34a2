"""Routing rules (desk/routing_rules.py, desk/actions/rules.py): which team a new conversation goes to.

The matcher is a pure function, tested on facts; applying the rules is tested on conversations stored by the real
store action, with the visitor's page, language and attributes recorded as the widget's session request does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from desk import audit, routing_rules, visitor_context
from desk.actions import rules as act
from desk.actions.admin import Invalid
from desk.db import tenant_session
from desk.models import Conversation, ConversationEvent, Site, Tenant, User, Visitor
from desk.routing_rules import Facts, InvalidRule
from tests.factories import new_team

SALES, SUPPORT = str(uuid.uuid4()), str(uuid.uuid4())
SITE = str(uuid.uuid4())


def rule(when: str, value: str, team: str = SALES, key: str | None = None) -> dict[str, Any]:
    form = {"when": when, "value": value, "team_id": team, "key": key, "site_id": value if when == "site" else None}
    return routing_rules.parse_rule(form, {SALES, SUPPORT}, {SITE})


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        (rule("page_contains", "/pricing"), Facts(page_url="https://shop.test/en/Pricing?plan=pro"), True),
        (rule("page_contains", "/pricing"), Facts(page_url="https://shop.test/docs"), False),
        (rule("page_starts_with", "https://shop.test/docs/"), Facts(page_url="https://shop.test/docs/api"), True),
        (rule("page_starts_with", "https://shop.test/docs/"), Facts(page_url="https://blog.test/docs/"), False),
        (rule("page_glob", "*://shop.test/*/checkout*"), Facts(page_url="https://shop.test/eu/checkout?x=1"), True),
        (rule("page_glob", "*://shop.test/*/checkout*"), Facts(page_url="https://shop.test/checkout"), False),
        (rule("language", "zh"), Facts(language="zh-CN"), True),
        (rule("language", "zh"), Facts(language="zh"), True),
        (rule("language", "zh-CN"), Facts(language="zh-TW"), False),
        (rule("language", "zh"), Facts(language="en-US"), False),
        (rule("language", "zh"), Facts(), False),
        (rule("attribute", "Pro", key="plan"), Facts(attributes={"plan": "pro"}), True),
        (rule("attribute", "Pro", key="plan"), Facts(attributes={"plan": "free"}), False),
        (rule("attribute", "Pro", key="plan"), Facts(attributes={"tier": "Pro"}), False),
        (rule("pre_chat", "Sales"), Facts(attributes={"pre_chat_choice": "Sales"}), True),
        (rule("pre_chat", "Sales"), Facts(attributes={"pre_chat_choice": "Support"}), False),
        (rule("label", "Billing"), Facts(labels=("billing", "vip")), True),
        (rule("label", "billing"), Facts(labels=("vip",)), False),
        (rule("site", SITE), Facts(site_id=SITE), True),
        (rule("site", SITE), Facts(site_id=str(uuid.uuid4())), False),
    ],
)
def test_each_condition_matches_its_own_facts(condition: dict[str, Any], facts: Facts, expected: bool) -> None:
    assert routing_rules.holds(condition, facts) is expected


def test_the_first_rule_that_matches_wins() -> None:
    rules = [
        rule("language", "fr", SUPPORT),
        rule("page_contains", "/pricing", SALES),
        rule("page_contains", "shop.test", SUPPORT),
    ]
    found = routing_rules.first_match(rules, Facts(page_url="https://shop.test/pricing", language="en"))
    assert found is not None and found[0] == 2 and found[1]["team_id"] == SALES
    found = routing_rules.first_match(rules, Facts(page_url="https://shop.test/pricing", language="fr-CA"))
    assert found is not None and found[0] == 1 and found[1]["team_id"] == SUPPORT
    assert routing_rules.first_match(rules, Facts(page_url="https://other.test/")) is None


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"when": "weather", "value": "x"}, "Choose a condition"),
        ({"when": "page_contains", "value": "  "}, "The value is empty"),
        ({"when": "page_contains", "value": "x" * 501}, "at most 500 characters (it has 501)"),
        ({"when": "language", "value": "chinese please"}, "not a language tag, like zh or pt-BR"),
        ({"when": "attribute", "value": "pro"}, "The attribute's name is empty"),
        ({"when": "site", "site_id": str(uuid.uuid4())}, "No such site"),
        ({"when": "page_contains", "value": "/x", "team_id": str(uuid.uuid4())}, "No such team"),
        ({"when": "page_contains", "value": "/x", "team_id": "sales"}, "Choose a team"),
    ],
)
def test_a_wrong_rule_is_refused_with_what_is_wrong(form: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRule, match=message.replace("(", r"\(").replace(")", r"\)")):
        routing_rules.parse_rule({"team_id": SALES, **form}, {SALES}, {SITE})


def test_a_stored_list_over_the_limit_or_with_a_bad_rule_is_refused_naming_it() -> None:
    good = rule("page_contains", "/pricing")
    with pytest.raises(InvalidRule, match="At most 50 routing rules"):
        routing_rules.validate([good] * 51, {SALES}, set())
    with pytest.raises(InvalidRule, match="Rule 2: The value is empty"):
        routing_rules.validate([good, {**good, "value": ""}], {SALES}, set())
    assert routing_rules.validate([good] * 50, {SALES}, set()) == [good] * 50


# -- applied to stored conversations -------------------------------------------------------------------------------


def owner_of(session: Any) -> User:
    owner = session.scalar(select(User).where(User.role == "owner"))
    assert owner is not None
    return owner


def add_rules(tenant: uuid.UUID, *forms: dict[str, Any]) -> None:
    """What the admin's "Add rule" does, once per form, in order."""
    with tenant_session(tenant) as session:
        for form in forms:
            act.do_add_rule(session, owner_of(session), audit.Client("127.0.0.1", "test"), form)


def visitor_writes(
    tenant: uuid.UUID, url: str, language: str = "en-US", attributes: dict[str, Any] | None = None
) -> uuid.UUID:
    """A visitor whose widget said it is on `url` (its session request, recorded by visitor_context) writes."""
    from desk.actions.messages import Inbound, do_store_messages

    with tenant_session(tenant) as session:
        site = session.scalars(select(Site)).first()
        assert site is not None
        visitor = Visitor(site_id=site.id)
        session.add(visitor)
        found = visitor_context.context({"url": url}, {"language": language}, "", None)
        at = datetime.now(UTC) - timedelta(seconds=2)
        visitor_context.record_visit(visitor, None, {"url": url}, found, at=at, attributes=attributes or {})
        session.commit()
        visitor_id = visitor.id
        [stored] = do_store_messages(session, [Inbound(visitor_id, "first", "Hello?")])
        session.commit()
        assert stored is not None
        return stored.message.conversation_id


def team_of(tenant: uuid.UUID, conversation: uuid.UUID) -> uuid.UUID | None:
    with tenant_session(tenant) as session:
        found = session.get(Conversation, conversation)
        assert found is not None
        return found.team_id


def apply(tenant: uuid.UUID, conversation: uuid.UUID) -> act.TeamRouted | None:
    with tenant_session(tenant) as session:
        return act.do_apply_rules(session, conversation)


def test_a_rule_gives_a_new_conversation_its_team_and_the_timeline_says_which_rule(tenant: uuid.UUID) -> None:
    sales, support = new_team(tenant, "Sales"), new_team(tenant, "Support")
    add_rules(
        tenant,
        {"when": "pre_chat", "value": "Support", "team_id": str(support)},
        {"when": "page_contains", "value": "/pricing", "team_id": str(sales)},
        {"when": "language", "value": "zh", "team_id": str(support)},
    )
    pricing = visitor_writes(tenant, "https://shop.test/pricing")
    chinese = visitor_writes(tenant, "https://shop.test/", language="zh-CN")
    chose = visitor_writes(tenant, "https://shop.test/pricing", attributes={"pre_chat_choice": "Support"})
    nothing = visitor_writes(tenant, "https://shop.test/blog")

    routed = apply(tenant, pricing)
    assert routed is not None and routed.team_id == sales
    assert [apply(tenant, c) is not None for c in (chinese, chose, nothing)] == [True, True, False]
    assert [team_of(tenant, c) for c in (pricing, chinese, chose, nothing)] == [sales, support, support, None]
    with tenant_session(tenant) as session:
        event = session.scalars(select(ConversationEvent).where(ConversationEvent.conversation_id == pricing)).one()
    assert (event.kind, event.author_id, event.detail["team_name"]) == ("assigned", None, "Sales")
    assert event.detail["rule"] == 2
    assert event.detail["rule_text"] == 'Page URL contains "/pricing" → Sales'
    assert apply(tenant, pricing) is None  # a repeated job changes nothing


def test_a_conversation_that_has_a_team_keeps_it_and_a_deleted_teams_rule_never_matches(tenant: uuid.UUID) -> None:
    sales, support = new_team(tenant, "Sales"), new_team(tenant, "Support")
    add_rules(tenant, {"when": "page_contains", "value": "/pricing", "team_id": str(sales)})
    conversation = visitor_writes(tenant, "https://shop.test/pricing")
    with tenant_session(tenant) as session:
        session.get(Conversation, conversation).team_id = support  # an agent gave it to Support first
        session.commit()
    assert apply(tenant, conversation) is None
    assert team_of(tenant, conversation) == support

    from desk.actions.teams import do_delete_team

    with tenant_session(tenant) as session:
        do_delete_team(session, owner_of(session), audit.Client("127.0.0.1", "test"), sales)
    later = visitor_writes(tenant, "https://shop.test/pricing")
    assert apply(tenant, later) is None and team_of(tenant, later) is None


def test_the_admins_edits_keep_the_order_and_the_limits(tenant: uuid.UUID) -> None:
    sales = str(new_team(tenant, "Sales"))
    add_rules(tenant, *({"when": "page_contains", "value": f"/p{n}", "team_id": sales} for n in range(50)))
    with tenant_session(tenant) as session, pytest.raises(Invalid, match="At most 50 routing rules"):
        form = {"when": "label", "value": "x", "team_id": sales}
        act.do_add_rule(session, owner_of(session), audit.Client("127.0.0.1", "t"), form)
    with tenant_session(tenant) as session:
        stored = act.stored_rules(session.scalar(select(Tenant.settings)))
        assert [r["value"] for r in stored[:3]] == ["/p0", "/p1", "/p2"]
        client = audit.Client("127.0.0.1", "t")
        act.do_move_rule(session, owner_of(session), client, stored[2]["id"], "up")
        act.do_move_rule(session, owner_of(session), client, stored[0]["id"], "up")  # the top already: no change
        act.do_delete_rule(session, owner_of(session), client, stored[1]["id"])
        with pytest.raises(act.NotFound, match="No such rule"):
            act.do_delete_rule(session, owner_of(session), client, stored[1]["id"])
        after = act.stored_rules(session.scalar(select(Tenant.settings)))
    assert [r["value"] for r in after[:3]] == ["/p0", "/p2", "/p3"] and len(after) == 49


def test_the_hours_a_visitor_is_shown_are_those_of_the_team_the_rules_would_pick(tenant: uuid.UUID) -> None:
    from desk.actions import hours

    sales = new_team(tenant, "Sales")
    add_rules(tenant, {"when": "page_contains", "value": "/pricing", "team_id": str(sales)})
    closed = {"timezone": "UTC", **{f"hours_{d}": "" for d in hours.WEEKDAYS}}
    always = {"timezone": "UTC", **{f"hours_{d}": "00:00-24:00" for d in hours.WEEKDAYS}}
    with tenant_session(tenant) as session:
        hours.do_save_schedule(session, owner_of(session), audit.Client("127.0.0.1", "t"), None, always)
        hours.do_save_schedule(session, owner_of(session), audit.Client("127.0.0.1", "t"), sales, closed)
    on_pricing = visitor_writes(tenant, "https://shop.test/pricing")
    on_blog = visitor_writes(tenant, "https://shop.test/blog")
    with tenant_session(tenant) as session:
        shown = {}
        for conversation in (on_pricing, on_blog):
            visitor = session.get(Visitor, session.get(Conversation, conversation).visitor_id)
            shown[conversation] = act.hours_for_visitor(session, visitor).open
    assert shown == {on_pricing: False, on_blog: True}  # Sales is closed; the tenant is open
