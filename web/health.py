"""`/healthz` (liveness: the process answers) and `/readyz` (readiness: it can do its work now).

A load balancer sends traffic only to ready processes; a supervisor restarts only processes that are not
alive. So /healthz never looks at PostgreSQL or NATS (an outage there must not restart every process), and
/readyz answers 503, saying which part is missing, while the database or NATS is unreachable or the
database's migrations are behind the code. docs/operations.md, "Health".
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from desk import __version__
from desk.db import system_session
from desk.doctor import migration_head, migrations_behind

bp = Blueprint("health", __name__)


def _database() -> str:
    try:
        with system_session() as session:
            level = session.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as exc:  # any failure is "down"; the message says why
        return f"down: {type(exc).__name__}"
    if migrations_behind(level):
        return f"behind: migrations at {level}, code needs {migration_head()}"
    return "ok"


def _nats() -> str:
    bus = current_app.extensions["deskbell.bus"]
    if bus is None:
        return "down: NATS_URL is not set"
    return "ok" if bus.connected else "down: not connected"


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok", version=__version__)


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    checks = {"database": _database(), "nats": _nats()}
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if ready else "unavailable", version=__version__, **checks), (200 if ready else 503)
