"""Builders for the domain tests: each uses the real action where one exists, and says so where none does."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import select

from desk.actions.messages import Inbound, do_store_messages
from desk.actions.tenants import do_bootstrap_tenant, do_create_user
from desk.db import system_session, tenant_session
from desk.models import Conversation, Site, Tenant, Visitor


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
