"""Tenant scoping (desk/db.py): a tenant's session neither sees nor changes another tenant's rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from desk.actions.messages import Inbound, do_store_messages
from desk.db import TenantError, engine, tenant_session
from desk.models import Conversation, Message, Site, Visitor
from tests.factories import new_tenant, new_visitor


@dataclass(frozen=True)
class Rows:
    """One tenant's site, visitor, conversation and message ids."""

    tenant: uuid.UUID
    site: uuid.UUID
    visitor: uuid.UUID
    conversation: uuid.UUID
    message: int


def with_a_message(tenant: uuid.UUID) -> Rows:
    visitor = new_visitor(tenant)
    with tenant_session(tenant) as session:
        [stored] = do_store_messages(session, [Inbound(visitor, "m-1", "Hello from here")])
        session.commit()
        assert stored is not None
        site = session.scalar(select(Visitor.site_id).where(Visitor.id == visitor))
    return Rows(tenant, site, visitor, stored.message.conversation_id, stored.message.id)


@pytest.fixture
def ours(tenant: uuid.UUID) -> Rows:
    return with_a_message(tenant)


@pytest.fixture
def theirs(database_url: str) -> Rows:
    return with_a_message(new_tenant())


@pytest.mark.parametrize("model", [Site, Visitor, Conversation, Message])
def test_a_tenant_lists_only_its_own_rows(ours: Rows, theirs: Rows, model: type) -> None:
    with tenant_session(ours.tenant) as session:
        tenants = set(session.scalars(select(model.tenant_id)))
        rows = session.scalars(select(model)).all()
    assert tenants == {ours.tenant}
    assert {row.tenant_id for row in rows} == {ours.tenant}


def test_another_tenants_rows_are_not_found_by_id(ours: Rows, theirs: Rows) -> None:
    with tenant_session(ours.tenant) as session:
        assert session.get(Site, theirs.site) is None
        assert session.get(Visitor, theirs.visitor) is None
        assert session.get(Conversation, theirs.conversation) is None
        assert session.get(Message, theirs.message) is None
        assert session.get(Message, ours.message) is not None


def test_an_update_does_not_reach_another_tenants_rows(ours: Rows, theirs: Rows) -> None:
    with tenant_session(ours.tenant) as session:
        aimed = session.execute(update(Site).where(Site.id == theirs.site).values(name="Hijacked"))
        everything = session.execute(update(Visitor).values(name="Renamed"))
        session.commit()
    assert aimed.rowcount == 0
    assert everything.rowcount == 1
    with tenant_session(theirs.tenant) as session:
        assert session.scalar(select(Site.name)) == "Site"
        assert session.scalar(select(Visitor.name)) is None


def test_a_session_without_a_tenant_refuses_to_query(ours: Rows) -> None:
    with Session(engine()) as session, pytest.raises(TenantError):
        session.scalars(select(Message)).all()


def test_a_row_of_another_tenant_cannot_be_added(ours: Rows, theirs: Rows) -> None:
    with tenant_session(ours.tenant) as session:
        session.add(Visitor(tenant_id=theirs.tenant, site_id=theirs.site))
        with pytest.raises(TenantError):
            session.flush()
