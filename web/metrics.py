"""`/metrics` for Prometheus, and the HTTP timings behind it (the series are declared in desk/metrics.py).

Open to loopback scrapers; from anywhere else only with `Authorization: Bearer $METRICS_TOKEN` (when no token
is set, only loopback). JetStream's consumer figures are read from NATS at scrape time, so any one web
process can report them for the whole installation.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from desk import metrics, subjects
from desk.db import engine

bp = Blueprint("metrics", __name__)


async def _consumers(nc) -> list[tuple[str, int, int, int]]:  # type: ignore[no-untyped-def]
    js = nc.jetstream(timeout=2)
    found = []
    for stream, consumer in subjects.CONSUMERS.items():
        info = await js.consumer_info(stream, consumer.durable_name)
        found.append(
            (consumer.durable_name, info.num_pending or 0, info.num_ack_pending or 0, info.num_redelivered or 0)
        )
    return found


def _read_consumers() -> None:
    bus = current_app.extensions["deskbell.bus"]
    try:
        for name, pending, ack_pending, redelivered in bus.call(_consumers) if bus else []:
            metrics.CONSUMER_PENDING.labels(name).set(pending)
            metrics.CONSUMER_ACK_PENDING.labels(name).set(ack_pending)
            metrics.CONSUMER_REDELIVERED.labels(name).set(redelivered)
    except Exception as exc:  # the scrape still answers; the error count says NATS did not
        metrics.ERRORS.labels("metrics", type(exc).__name__).inc()


def _allowed() -> bool:
    token = os.environ.get("METRICS_TOKEN", "")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if token and hmac.compare_digest(given.encode(), token.encode()):
        return True
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def scrape() -> ResponseReturnValue:
    if not _allowed():
        return {"error": "forbidden", "message": "metrics: loopback only, or Authorization: Bearer METRICS_TOKEN"}, 403
    _read_consumers()
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def install(app: Flask) -> None:
    """Time every request by its route (the URL rule, not the path: ids would make a series per URL)."""

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.monotonic()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            route = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.HTTP_LATENCY.labels(route, request.method, str(response.status_code)).observe(
                metrics.since(started)
            )
            if response.status_code >= 500:
                metrics.ERRORS.labels("http", str(response.status_code)).inc()
        return response

    metrics.track_pool(lambda: engine().pool.checkedout())  # type: ignore[attr-defined]
    app.register_blueprint(bp)
