"""Every Prometheus series Deskbell exposes, declared once (docs/operations.md, "Metrics").

Web processes serve them at `/metrics` (web/metrics.py); workers on their own port (`WORKER_METRICS_PORT`,
workers/base.py). Each process has its own registry, the default one: Prometheus adds the instance label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

# Latencies of a chat system: most in milliseconds, a tail in seconds during faults.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SOCKETS = Gauge("deskbell_sockets_open", "Open client connections on this edge", ["kind"])
MESSAGES_IN = Counter(
    "deskbell_messages_in_total", "Messages accepted for storing (published to JetStream)", ["sender"]
)
MESSAGES_OUT = Counter("deskbell_messages_out_total", "Stored messages sent to a client", ["to"])
ACK_LATENCY = Histogram(
    "deskbell_ack_latency_seconds",
    "published: edge received -> JetStream acked; stored: JetStream -> committed (worker); "
    "acked: edge received -> ack sent; delivered: committed -> sent to the other side",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "deskbell_worker_batch_size", "Messages per batch a worker fetched", ["consumer"], buckets=(1, 5, 20, 50, 100, 200)
)
CONSUMER_PENDING = Gauge("deskbell_jetstream_pending", "Messages not yet delivered to the consumer", ["consumer"])
CONSUMER_ACK_PENDING = Gauge("deskbell_jetstream_ack_pending", "Messages delivered, not yet acked", ["consumer"])
CONSUMER_REDELIVERED = Gauge("deskbell_jetstream_redelivered", "Messages delivered more than once", ["consumer"])
DB_POOL_IN_USE = Gauge("deskbell_db_pool_in_use", "PostgreSQL connections checked out of this process's pool")
HTTP_LATENCY = Histogram(
    "deskbell_http_request_seconds",
    "HTTP request time by route",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter("deskbell_errors_total", "Errors by where they happened and what they were", ["where", "kind"])
MISSED_CHATS = Counter(
    "deskbell_missed_chats_total", "Conversations marked missed: the visitor waited past the threshold for a reply"
)


def since(started: float) -> float:
    """Seconds since a time.monotonic() reading."""
    return time.monotonic() - started


def age(iso_time: str) -> float:
    """Seconds since an ISO timestamp of another process (clocks agree within NTP; doctor checks)."""
    return max(0.0, time.time() - datetime.fromisoformat(iso_time).timestamp())


def track_pool(checked_out: Callable[[], int]) -> None:
    DB_POOL_IN_USE.set_function(checked_out)
# Outbound calls (issue 9): each target (`smtp:host:port`) behind a circuit breaker (desk/mail.py).
CIRCUIT_STATE = Gauge("deskbell_circuit_state", "A circuit breaker's state: 0 closed, 1 half-open, 2 open", ["target"])
OUTBOUND_CALLS = Counter(
    "deskbell_outbound_calls_total",
    "Calls to outside services by outcome (ok, failed, refused, rejected)",
    ["target", "outcome"],
)
MAIL_SENT = Counter("deskbell_mail_sent_total", "Emails sent, by kind (reply, transcript, missed)", ["kind"])
ORDER_CHECKS = Counter(
    "deskbell_store_order_checks_total",
    "How a store worker found a batch in turn: by one look at its consumer, or a stream lookup per message",
    ["by"],
)
ORDER_HELD = Counter(
    "deskbell_store_held_for_order_total",
    "Messages a store worker held, or handed back, because an earlier one of their thread was not stored yet",
    ["outcome"],
)
RATE_LIMITED = Counter(
    "deskbell_rate_limited_total",
    "Visitor connections and requests refused, or sockets closed, for going over an abuse limit (web/edge/abuse.py)",
    ["limit"],
)
