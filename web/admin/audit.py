"""The audit log: search by action, actor and dates; export what matches as CSV (docs/admin.md, "Audit log")."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date

from flask import Response, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from desk import audit
from desk.db import tenant_session
from web.admin import bp, page
from web.admin.roles import requires

PAGE_SIZE = 100
CSV_BATCH = 1000
CSV_COLUMNS = ("time", "actor", "action", "ip", "user_agent", "detail")


def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, "").strip()) if request.args.get(name) else None
    except ValueError:
        return None


def _search() -> audit.Search:
    return audit.Search(
        action=request.args.get("action", "")[:64],
        actor=request.args.get("actor", "")[:320],
        since=_date("since"),
        until=_date("until"),
    )


@bp.get("/audit")
@requires("admin", "owner")
def audit_log() -> ResponseReturnValue:
    found = _search()
    before = request.args.get("before", type=int)
    with tenant_session(current_user.tenant_id) as session:
        rows = session.execute(audit.search(current_user.tenant_id, found, before).limit(PAGE_SIZE + 1)).all()
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    query = {k: v for k, v in request.args.items() if k != "before"}
    older = {**query, "before": rows[-1][0].id} if more else None
    return page("admin/audit.html", rows=rows, search=found, older=older, query=query)


def _cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/audit.csv")
@requires("admin", "owner")
def audit_csv() -> ResponseReturnValue:
    found = _search()
    tenant_id = current_user.tenant_id

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        before = None
        with tenant_session(tenant_id) as session:
            while True:
                rows = session.execute(audit.search(tenant_id, found, before).limit(CSV_BATCH)).all()
                for entry, email in rows:
                    actor = email or entry.detail.get("email", "")
                    detail = json.dumps(entry.detail, sort_keys=True, ensure_ascii=False)
                    writer.writerow(
                        [
                            _cell(v)
                            for v in (
                                entry.created_at.isoformat(),
                                actor,
                                entry.action,
                                entry.ip,
                                entry.user_agent,
                                detail,
                            )
                        ]
                    )
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if len(rows) < CSV_BATCH:
                    return
                before = rows[-1][0].id

    return Response(
        lines(),  # runs after the request has ended: it needs nothing of it but tenant_id
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )
