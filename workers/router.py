"""The router worker: assigns new conversations to online agents (docs/architecture.md, step 6)."""

from __future__ import annotations

import asyncio
import json
import uuid

from nats.aio.client import Client
from nats.aio.msg import Msg

from desk import bus, signals, subjects
from desk.actions.routing import do_route_conversation
from desk.db import tenant_session


def _route(tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> uuid.UUID | None:
    with tenant_session(tenant_id) as session:
        agent = do_route_conversation(session, conversation_id)
        return agent.id if agent else None


async def handle(nc: Client, msgs: list[Msg]) -> None:
    for msg in msgs:
        tenant_id = subjects.tenant_of(msg.subject)
        conversation_id = uuid.UUID(json.loads(msg.data)["conversation_id"])
        assignee = await asyncio.to_thread(_route, tenant_id, conversation_id)
        if assignee is not None:
            await nc.publish(
                subjects.agent_events(tenant_id),
                bus.encode(signals.conversation_changed(conversation_id, "routed", assignee_id=str(assignee))),
            )
    await nc.flush()
