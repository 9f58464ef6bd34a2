"""Subjects carry their tenant, so a worker (and later a per-tenant permission) can tell whose a message is."""

from __future__ import annotations

import uuid

from desk import subjects


def test_the_tenant_is_read_back_from_every_work_subject() -> None:
    tenant, visitor = uuid.uuid4(), uuid.uuid4()
    assert subjects.tenant_of(subjects.inbound(tenant, visitor)) == tenant
    assert subjects.tenant_of(subjects.route_job(tenant)) == tenant


def test_event_subjects_of_two_tenants_never_overlap() -> None:
    a, b, visitor = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert str(a) in subjects.agent_events(a) and str(b) not in subjects.agent_events(a)
    assert subjects.visitor_events(a, visitor) != subjects.visitor_events(b, visitor)
    assert all(s.startswith("desk.") for s in (subjects.inbound(a, visitor), subjects.route_job(a)))
