"""Builders for the domain tests: each uses the real action where one exists, and says so where none does."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import select

from desk.actions.messages import Inbound, do_store_messages
from desk.actions.tenants import do_bootstrap_tenant, do_create_user
from desk.db import system_session, tenant_session
from desk.models import Conversation, Site, Tenant, Visitor


def tenant_id_of(tenant: dict[str, Any]) -> uuid.UUID:
    """The id of a tenant the stack bootstrapped (its `bootstrap` JSON names it by slug)."""
    with system_session() as session:
        return session.scalar(select(Tenant.id).where(Tenant.slug == tenant["tenant"]))


def new_tenant() -> uuid.UUID:
    """A new tenant with a site and an owner, made by the bootstrap action (the `tenant` fixture uses this)."""
    slug = "t-" + secrets.token_hex(4)
    with system_session() as session:
        do_bootstrap_tenant(
            session, slug=slug, name=slug, owner_email=f"owner@{slug}.test", site_name="Site", allowed_origins=[]
        )
        return session.scalar(select(Tenant.id).where(Tenant.slug == slug))


def new_visitor(tenant_id: uuid.UUID) -> uuid.UUID:
    """A visitor on the tenant's site. Only the widget API makes visitors, so this adds the row itself."""
    with tenant_session(tenant_id) as session:
        site = session.scalars(select(Site).order_by(Site.created_at)).first()
        assert site is not None
        visitor = Visitor(site_id=site.id)
        session.add(visitor)
        session.commit()
        return visitor.id


def new_conversation(tenant_id: uuid.UUID) -> uuid.UUID:
    """An open, unassigned conversation: a new visitor's first message, stored by the worker's action."""
    with tenant_session(tenant_id) as session:
        [stored] = do_store_messages(session, [Inbound(new_visitor(tenant_id), "first", "Hello?")])
        session.commit()
        assert stored is not None
        return stored.message.conversation_id


def new_agent(tenant_id: uuid.UUID, presence: str = "online") -> uuid.UUID:
    """An agent made by the account action, then set to `presence` as the console would."""
    with tenant_session(tenant_id) as session:
        email = f"agent-{secrets.token_hex(4)}@example.test"
        agent = do_create_user(session, email=email, name="Agent", role="agent", password=secrets.token_urlsafe(12))
        agent.presence = presence
        session.commit()
        return agent.id


def assignee_of(tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> uuid.UUID | None:
    with tenant_session(tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        return conversation.assignee_id


def new_team(tenant_id: uuid.UUID, name: str, *members: uuid.UUID) -> uuid.UUID:
    """A team with its members. Teams are managed by the admin pages (not built yet), so this adds the rows."""
    from desk.models import Team, TeamMember

    with tenant_session(tenant_id) as session:
        team = Team(name=name)
        session.add(team)
        session.flush()
        session.add_all(TeamMember(team_id=team.id, user_id=m) for m in members)
        session.commit()
        return team.id


# -- the admin panel (tests/admin) ---------------------------------------------------------------------------------


def new_people(slug: str | None = None) -> dict[str, object]:
    """A tenant made by the bootstrap action with a known owner password, and an admin and an agent made by the
    account action: {"tenant_id", "slug", "site_key", "owner"|"admin"|"agent": {"id", "email", "password"}}."""
    from desk.models import User

    slug = slug or "t-" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    with system_session() as session:
        made = do_bootstrap_tenant(
            session,
            slug=slug,
            name=slug,
            owner_email=f"owner@{slug}.test",
            site_name="Site",
            allowed_origins=[],
            owner_password=password,
        )
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
        owner_id = session.scalar(select(User.id).where(User.email == made.owner_email))
    people: dict[str, object] = {
        "tenant_id": tenant_id,
        "slug": slug,
        "site_key": made.site_key,
        "owner": {"id": owner_id, "email": made.owner_email, "password": password},
    }
    with tenant_session(tenant_id) as session:
        for role in ("admin", "agent"):
            email, secret = f"{role}-{secrets.token_hex(3)}@{slug}.test", secrets.token_urlsafe(12)
            user = do_create_user(session, email=email, name=role.title(), role=role, password=secret)
            people[role] = {"id": user.id, "email": email, "password": secret}
    return people


def platform_operator() -> dict[str, object]:
    """A platform operator (SaaS mode): a user with the role "operator" in the platform's own tenant, which is
    made by the bootstrap action the first time."""
    from desk.actions.agents import PLATFORM_SLUG

    with system_session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == PLATFORM_SLUG))
    if tenant_id is None:
        tenant_id = new_people(PLATFORM_SLUG)["tenant_id"]
    email, secret = f"operator-{secrets.token_hex(3)}@platform.test", secrets.token_urlsafe(12)
    with tenant_session(tenant_id) as session:
        user = do_create_user(session, email=email, name="Operator", role="operator", password=secret)
    return {"id": user.id, "email": email, "password": secret, "tenant_id": tenant_id}


from datetime import datetime, timedelta  # noqa: E402  (appended with the builder below that uses them)


def bulk_conversations(
    tenant_id: uuid.UUID,
    count: int,
    *,
    start: datetime,
    every: timedelta,
    agent_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
    per_visitor: int = 5,
) -> None:
    """`count` conversations, `per_visitor` to a visitor (all resolved but the visitor's last), each with a visitor's
    message and an agent's reply, one every `every` from `start`; every fourth has a "resolved" event, every seventh
    the label vip. Made with SQL in the tenant's session: the store action makes one at a time, and tests of volume
    need thousands in seconds. Ids come from the tenant and a number."""
    import psycopg
    from sqlalchemy import text

    visitors = -(-count // per_visitor)
    ids = {
        "v": "md5(CAST(:t AS text) || '/v/' || ((g - 1) / :per + 1))::uuid",
        "c": "md5(CAST(:t AS text) || '/c/' || g)::uuid",
    }
    at = "(CAST(:start AS timestamptz) + g * CAST(:every AS interval))"
    statements = [
        """INSERT INTO visitors (id, tenant_id, site_id, name, email, last_seq, page, context, created_at,
                                 last_seen_at)
            SELECT md5(CAST(:t AS text) || '/v/' || g)::uuid, :t, :site, 'Visitor ' || g, 'v' || g || '@example.test',
                   2 * :per, jsonb_build_object('url', 'https://shop.test/p/' || g), '{"language": "zh-CN"}',
                   CAST(:start AS timestamptz), CAST(:start AS timestamptz)
            FROM generate_series(1, :visitors) g""",
        f"""INSERT INTO conversations (id, tenant_id, visitor_id, status, assignee_id, team_id, labels, resolved_at,
                                       last_message_preview, created_at, last_activity_at)
            SELECT {ids["c"]}, :t, {ids["v"]},
                   CASE WHEN g % :per = 0 THEN 'open' ELSE 'resolved' END,
                   CASE WHEN g % 3 = 0 THEN CAST(:agent AS uuid) END, CASE WHEN g % 4 = 0 THEN CAST(:team AS uuid) END,
                   CASE WHEN g % 7 = 0 THEN ARRAY['vip'] ELSE '{{}}' END,
                   CASE WHEN g % :per <> 0 THEN {at} + interval '3 minutes' END,
                   'On its way', {at}, {at} + interval '3 minutes'
            FROM generate_series(1, :count) g""",
        f"""INSERT INTO messages (tenant_id, visitor_id, conversation_id, seq, client_id, sender, author_id,
                                  author_name, body, created_at)
            SELECT :t, {ids["v"]}, {ids["c"]}, ((g - 1) % :per) * 2 + i, 'bulk-' || g || '-' || i,
                   CASE i WHEN 1 THEN 'visitor' ELSE 'agent' END,
                   CASE i WHEN 2 THEN CAST(:agent AS uuid) END, CASE i WHEN 2 THEN 'Agent' END,
                   CASE i WHEN 1 THEN 'Order ' || g || E' hasn''t arrived, "où est-il ?" 你好\\nsecond line'
                          ELSE '=SUM(A1) it is on its way' END,
                   {at} + i * interval '1 minute'
            FROM generate_series(1, :count) g, generate_series(1, 2) i""",
        f"""INSERT INTO conversation_events (tenant_id, conversation_id, kind, author_id, author_name, detail,
                                             created_at)
            SELECT :t, {ids["c"]}, 'resolved', CAST(:agent AS uuid), 'Agent', jsonb_build_object('n', g),
                   {at} + interval '3 minutes'
            FROM generate_series(4, :count, 4) g""",
    ]
    with tenant_session(tenant_id) as session:
        site = session.scalar(select(Site.id).order_by(Site.created_at))
        params = {
            "t": tenant_id,
            "site": site,
            "count": count,
            "visitors": visitors,
            "per": per_visitor,
            "start": start,
            "every": every,
            "agent": agent_id,
            "team": team_id,
        }
        for statement in statements:
            session.execute(text(statement), params)
        session.commit()
    # What autovacuum would soon do; until then the planner takes these tables for empty. ANALYZE needs the tables'
    # owner, the login, not the application's role.
    from desk import settings

    with psycopg.connect(str(settings.load().database_url), autocommit=True) as conn:
        conn.execute("ANALYZE visitors, conversations, messages, conversation_events")
