"""Every NATS subject, stream and consumer, declared once. docs/architecture.md draws how they connect.

JetStream carries the work that must not be lost (`desk.in.*` messages to store, `desk.jobs.*` to route);
plain NATS carries the events that tell sockets what was stored (`desk.ev.*`): a socket that misses one
catches up from PostgreSQL, which is the log.
"""

from __future__ import annotations

import uuid

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

IN_STREAM = "DESK_IN"
JOBS_STREAM = "DESK_JOBS"
STORE_CONSUMER = "store"
ROUTE_CONSUMER = "router"

# How long a worker may hold a message before JetStream gives it to another: short, so a dead worker's
# messages are retried within seconds. Long batches call in_progress().
ACK_WAIT_SECONDS = 10.0
MAX_DELIVER = 20
DUPLICATE_WINDOW_SECONDS = 120.0


def _token(value: uuid.UUID | str) -> str:
    return str(value)


def inbound(tenant_id: uuid.UUID | str, visitor_id: uuid.UUID | str) -> str:
    """A message (visitor's or agent's) for a visitor thread, waiting to be stored."""
    return f"desk.in.{_token(tenant_id)}.{_token(visitor_id)}"


def inbound_msg_id(visitor_id: uuid.UUID | str, client_id: str) -> str:
    """JetStream's de-duplication id; PostgreSQL's unique key is the lasting guard."""
    return f"{_token(visitor_id)}:{client_id}"


def route_job(tenant_id: uuid.UUID | str) -> str:
    return f"desk.jobs.route.{_token(tenant_id)}"


def visitor_events(tenant_id: uuid.UUID | str, visitor_id: uuid.UUID | str) -> str:
    """Stored messages of one visitor thread, for that visitor's sockets."""
    return f"desk.ev.{_token(tenant_id)}.visitor.{_token(visitor_id)}"


def agent_events(tenant_id: uuid.UUID | str) -> str:
    """Everything the consoles of a tenant show live: messages, new and changed conversations."""
    return f"desk.ev.{_token(tenant_id)}.agents"


STREAMS = [
    StreamConfig(
        name=IN_STREAM,
        subjects=["desk.in.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_msg_size=256 * 1024,
    ),
    StreamConfig(
        name=JOBS_STREAM,
        subjects=["desk.jobs.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    ),
]

CONSUMERS = {
    IN_STREAM: ConsumerConfig(
        durable_name=STORE_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_SECONDS,
        max_deliver=MAX_DELIVER,
        filter_subject="desk.in.>",
        max_ack_pending=10_000,
    ),
    JOBS_STREAM: ConsumerConfig(
        durable_name=ROUTE_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_SECONDS,
        max_deliver=MAX_DELIVER,
        filter_subject="desk.jobs.route.>",
    ),
}


async def ensure_streams(js: JetStreamContext) -> None:
    """Create or update the streams and durable consumers; safe to run at every release."""
    for config in STREAMS:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    for stream, consumer in CONSUMERS.items():
        await js.add_consumer(stream, consumer)
