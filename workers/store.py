"""The store worker: persists messages from DESK_IN, then publishes them as events and routing jobs.

docs/architecture.md, steps 4-5. Idempotent: a redelivered message is found by (visitor, client_id) and its
events are published again, so a crash between commit and publish loses nothing, and a replayed dead letter
is stored once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import defaultdict

from nats.aio.client import Client
from nats.aio.msg import Msg

from desk import bus, metrics, subjects
from desk.actions.messages import Inbound, Stored, as_event, do_store_messages
from desk.db import tenant_session

log = logging.getLogger(__name__)


def _store(tenant_id: uuid.UUID, batch: list[Inbound]) -> list[Stored | None]:
    with tenant_session(tenant_id) as session:
        results = do_store_messages(session, batch)
        session.commit()
        return results


async def handle(nc: Client, msgs: list[Msg]) -> None:
    by_tenant: dict[uuid.UUID, list[Inbound]] = defaultdict(list)
    received_at: dict[uuid.UUID, list[float]] = defaultdict(list)
    for msg in msgs:
        # A malformed message raises: workers/base.py retries it alone and then keeps it as a dead letter.
        tenant_id = subjects.tenant_of(msg.subject)
        by_tenant[tenant_id].append(Inbound.from_payload(json.loads(msg.data)))
        received_at[tenant_id].append(msg.metadata.timestamp.timestamp())
    js = nc.jetstream()
    for tenant_id, batch in by_tenant.items():
        results = await asyncio.to_thread(_store, tenant_id, batch)
        for received in received_at[tenant_id]:  # JetStream's receive time -> committed
            metrics.ACK_LATENCY.labels("stored").observe(max(0.0, time.time() - received))
        for item, stored in zip(batch, results, strict=True):
            if stored is None:
                log.error("dropping message for unknown visitor %s of tenant %s", item.visitor_id, tenant_id)
                continue
            event = as_event(stored.message)
            data = bus.encode({"kind": "message", "message": event})
            await nc.publish(subjects.visitor_events(tenant_id, item.visitor_id), data)
            await nc.publish(subjects.agent_events(tenant_id), data)
            conversation_id = event["conversation_id"]
            if stored.new_conversation or not stored.created:
                # Re-sent on redelivery too: the router ignores conversations that are already assigned.
                await js.publish(
                    subjects.route_job(tenant_id),
                    bus.encode({"conversation_id": conversation_id}),
                    headers={"Nats-Msg-Id": subjects.route_msg_id(conversation_id)},
                )
    await nc.flush()
