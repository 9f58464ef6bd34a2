"""`/healthz`: is this process able to do its work? 503 when PostgreSQL or NATS is unreachable."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from desk import __version__
from desk.db import system_session

bp = Blueprint("health", __name__)


def _database() -> str:
    try:
        with system_session() as session:
            session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any failure is "down"; the message says why
        return f"down: {type(exc).__name__}"


def _nats() -> str:
    bus = current_app.extensions["deskbell.bus"]
    if bus is None:
        return "down: NATS_URL is not set"
    return "ok" if bus.connected else "down: not connected"


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    checks = {"database": _database(), "nats": _nats()}
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", version=__version__, **checks), (200 if healthy else 503)
