"""Every NATS subject, stream and consumer, declared once. docs/architecture.md draws how they connect.

JetStream carries the work that must not be lost (`desk.in.*` messages to store, `desk.jobs.*` to route);
plain NATS carries the events that tell sockets what was stored (`desk.ev.*`): a socket that misses one
catches up from PostgreSQL, which is the log. What a worker gives up on is kept in `desk.dead.*` for an admin
(docs/architecture.md, "When a message fails").
"""

from __future__ import annotations

import dataclasses
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
DEAD_STREAM = "DESK_DEAD"
STORE_CONSUMER = "store"
ROUTE_CONSUMER = "router"

# How long a worker may hold a message before JetStream gives it to another: short, so a dead worker's
# messages are retried within seconds. Long batches call in_progress().
ACK_WAIT_SECONDS = 5.0
# A message that fails on its own this many deliveries is moved to DESK_DEAD (workers/base.py). MAX_DELIVER,
# JetStream's own limit, stays larger; only a message that kills its worker every time reaches it.
DEAD_AFTER = 5
MAX_DELIVER = 20
DUPLICATE_WINDOW_SECONDS = 120.0


def inbound(tenant_id: uuid.UUID | str, visitor_id: uuid.UUID | str) -> str:
    """A message (visitor's or agent's) for a visitor thread, waiting to be stored."""
    return f"desk.in.{tenant_id}.{visitor_id}"


def inbound_msg_id(visitor_id: uuid.UUID | str, client_id: str) -> str:
    """JetStream's de-duplication id; PostgreSQL's unique key is the lasting guard."""
    return f"{visitor_id}:{client_id}"


def route_job(tenant_id: uuid.UUID | str) -> str:
    return f"desk.jobs.route.{tenant_id}"


def route_msg_id(conversation_id: uuid.UUID | str) -> str:
    """One routing job per conversation within JetStream's window; the router ignores assigned ones anyway."""
    return f"route:{conversation_id}"


def tenant_of(subject: str) -> uuid.UUID:
    """The tenant of an inbound message or a job: the token after the kind (desk.in.<tenant>…,
    desk.jobs.route.<tenant>)."""
    tokens = subject.split(".")
    return uuid.UUID(tokens[2] if tokens[1] == "in" else tokens[3])


def dead_letter(durable: str) -> str:
    """A message the consumer `durable` gave up on, kept in DESK_DEAD with the DEAD_* headers below."""
    return f"desk.dead.{durable}"


# The headers of a dead letter: where it came from and why it died. `deskbell dead replay` strips every
# header with this prefix and publishes the rest again.
DEAD_HEADER_PREFIX = "Deskbell-Dead-"
DEAD_SUBJECT = DEAD_HEADER_PREFIX + "Subject"
DEAD_STREAM_NAME = DEAD_HEADER_PREFIX + "Stream"
DEAD_CONSUMER = DEAD_HEADER_PREFIX + "Consumer"
DEAD_ERROR = DEAD_HEADER_PREFIX + "Error"
DEAD_DELIVERIES = DEAD_HEADER_PREFIX + "Deliveries"


def visitor_events(tenant_id: uuid.UUID | str, visitor_id: uuid.UUID | str) -> str:
    """Stored messages of one visitor thread, agents typing and read receipts, for that visitor's sockets."""
    return f"desk.ev.{tenant_id}.visitor.{visitor_id}"


def agent_events(tenant_id: uuid.UUID | str) -> str:
    """Everything the consoles of a tenant show live: messages, new and changed conversations, visitors typing."""
    return f"desk.ev.{tenant_id}.agents"


def access_events(tenant_id: uuid.UUID | str) -> str:
    """Someone of the tenant lost access just now (desk/signals.py, ACCESS_LOST): every edge cuts their connections."""
    return f"desk.ev.{tenant_id}.access"


# What each edge's Hub subscribes to once: the access events of every tenant.
ALL_ACCESS_EVENTS = access_events("*")


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
    # Kept until an admin replays them (`deskbell dead`); no consumer reads it.
    StreamConfig(
        name=DEAD_STREAM,
        subjects=[dead_letter(">")],
        retention=RetentionPolicy.LIMITS,
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


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create or update the streams and durable consumers; safe to run at every release. `replicas` (default:
    the NATS_STREAM_REPLICAS setting) copies of each stream; the consumers follow their stream's."""
    if replicas is None:
        from desk.settings import load  # here, not at import: the module is also used without settings

        replicas = load().stream_replicas
    for base in STREAMS:
        config = dataclasses.replace(base, num_replicas=replicas)
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    for stream, consumer in CONSUMERS.items():
        await js.add_consumer(stream, consumer)


# -- mail (workers/mailer.py; docs/architecture.md, "Email") ----------------------------------------------------------
# One job per email to send (a row of mail_deliveries); the mailer retries it with its own backoff, so the
# consumer never gives up by itself (max_deliver -1) and waits long enough for a slow mail server.
MAIL_STREAM = "DESK_MAIL"
MAIL_CONSUMER = "mailer"
MAIL_ACK_WAIT_SECONDS = 60.0


def mail_job(tenant_id: uuid.UUID | str) -> str:
    return f"desk.mail.{tenant_id}"


def mail_msg_id(delivery_id: int) -> str:
    return f"mail:{delivery_id}"


STREAMS.append(
    StreamConfig(
        name=MAIL_STREAM,
        subjects=["desk.mail.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
)
CONSUMERS[MAIL_STREAM] = ConsumerConfig(
    durable_name=MAIL_CONSUMER,
    ack_policy=AckPolicy.EXPLICIT,
    ack_wait=MAIL_ACK_WAIT_SECONDS,
    max_deliver=-1,
    filter_subject="desk.mail.>",
)
