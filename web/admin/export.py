"""An admin's downloads (docs/admin.md, "Export"; docs/operations.md, "Export, import, backup"; the whole tenant
goes out with `deskbell export`): the page that offers them, the conversations as JSON or CSV for a range of days,
and the agents and the settings as JSON, without secrets.

    GET /admin/export
    GET /admin/export/conversations.json?from=2025-01-01&to=2025-01-31
    GET /admin/export/conversations.csv?from=2025-01-01&to=2025-01-31
    GET /admin/export/agents.json
    GET /admin/export/settings.json

Conversations created from the start of `from` to the end of `to` (UTC days), oldest first, each with its
messages. Streamed: one query over the conversations read as it goes, and the messages of each batch of them, so a
year of conversations never sits in memory. Admins and owners only; each download goes in the audit log.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import audit, tenant_settings
from desk.db import tenant_session
from desk.models import (
    CannedResponse,
    Conversation,
    Invite,
    Label,
    MailSettings,
    Message,
    Schedule,
    Site,
    Team,
    TeamMember,
    Tenant,
    User,
    Visitor,
)
from web.admin.roles import client, requires

bp = Blueprint("admin_export", __name__, url_prefix="/admin/export")

BATCH = 500
CSV_COLUMNS = (
    "conversation_id",
    "conversation_created_at",
    "status",
    "labels",
    "assignee",
    "team",
    "visitor_id",
    "visitor_name",
    "visitor_email",
    "visitor_external_id",
    "message_seq",
    "message_created_at",
    "sender",
    "author",
    "body",
)


class BadRange(ValueError):
    pass


def day_range(raw_from: str | None, raw_to: str | None) -> tuple[date, date]:
    """`from` and `to` as days, both given, `from` not after `to`; BadRange says what is wrong."""
    if not raw_from or not raw_to:
        raise BadRange("Give the days to export as from=YYYY-MM-DD and to=YYYY-MM-DD (both included).")
    days = []
    for name, raw in (("from", raw_from), ("to", raw_to)):
        try:
            days.append(date.fromisoformat(raw.strip()))
        except ValueError:
            raise BadRange(f"{name} is not a day in the form YYYY-MM-DD: {raw[:40]!r}.") from None
    if days[0] > days[1]:
        raise BadRange(f"from ({days[0]}) is after to ({days[1]}).")
    return days[0], days[1]


@bp.get("")
@requires("admin", "owner")
def page() -> ResponseReturnValue:
    """The export page: a form for the conversations' days and format, and the agents' and settings' links."""
    today = datetime.now(UTC).date()
    return render_template("admin/export.html", first=today.replace(day=1), last=today)


@bp.get("/conversations.<any(json, csv):fmt>")
@requires("admin", "owner")
def conversations(fmt: str) -> ResponseReturnValue:
    try:
        first, last = day_range(request.args.get("from"), request.args.get("to"))
    except BadRange as exc:
        return {"error": "invalid_dates", "message": str(exc)}, 400
    tenant_id, actor_id = current_user.tenant_id, current_user.id
    with tenant_session(tenant_id) as session:
        slug = session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
        audit.record(
            session,
            tenant_id=tenant_id,
            actor_id=actor_id,
            action="export.conversations",
            client=client(),
            format=fmt,
            since=first.isoformat(),
            until=last.isoformat(),
        )
        session.commit()
    start = datetime.combine(first, time.min, UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, UTC)
    rows = _conversations(tenant_id, start, end)
    body = _as_json(rows) if fmt == "json" else _as_csv(rows)
    name = f"conversations-{slug}-{first}-{last}.{fmt}"
    # Not stream_with_context: the rows need nothing of the request (the tenant is read above), and the app's
    # teardown resets the request id once per context, which a re-pushed context would do twice.
    return Response(
        body,
        mimetype="application/json" if fmt == "json" else "text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def _conversations(tenant_id: uuid.UUID, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """The conversations created in [start, end), oldest first, each as a dict with its messages."""
    query = (
        select(Conversation, Visitor, User.email.label("assignee"), Team.name.label("team"))
        .join(Visitor, Visitor.id == Conversation.visitor_id)
        .outerjoin(User, User.id == Conversation.assignee_id)
        .outerjoin(Team, Team.id == Conversation.team_id)
        .where(Conversation.created_at >= start, Conversation.created_at < end)
        .order_by(Conversation.created_at, Conversation.id)
        .execution_options(yield_per=BATCH)
    )
    with tenant_session(tenant_id) as session:
        for batch in session.execute(query).partitions():
            messages = _messages(session, [row.Conversation.id for row in batch])
            for row in batch:
                yield _conversation(row, messages[row.Conversation.id])


def _messages(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    found: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    query = (
        select(
            Message.conversation_id, Message.seq, Message.created_at, Message.sender, Message.author_name, Message.body
        )
        .where(Message.conversation_id.in_(ids))
        .order_by(Message.conversation_id, Message.seq)
    )
    for m in session.execute(query):
        found[m.conversation_id].append(
            {
                "seq": m.seq,
                "created_at": _time(m.created_at),
                "sender": m.sender,
                "author": m.author_name,
                "body": m.body,
            }
        )
    return found


def _conversation(row: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
    c, v = row.Conversation, row.Visitor
    return {
        "id": str(c.id),
        "created_at": _time(c.created_at),
        "last_activity_at": _time(c.last_activity_at),
        "resolved_at": _time(c.resolved_at),
        "status": c.status,
        "labels": list(c.labels),
        "assignee": row.assignee,
        "team": row.team,
        "visitor": {"id": str(v.id), "name": v.name, "email": v.email, "external_id": v.external_id},
        "messages": messages,
    }


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _as_json(conversations: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON array, a conversation per line."""
    yield "["
    separator = "\n"
    for conversation in conversations:
        yield separator + json.dumps(conversation, ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


def _as_csv(conversations: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A row per message, with its conversation's columns; a byte-order mark first, so spreadsheets read UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield "\ufeff" + _drain(buffer)
    for c in conversations:
        visitor = c["visitor"]
        head = [c["id"], c["created_at"], c["status"], ", ".join(c["labels"]), c["assignee"], c["team"]]
        head += [visitor["id"], visitor["name"], visitor["email"], visitor["external_id"]]
        for m in c["messages"]:
            writer.writerow(_cell(v) for v in [*head, m["seq"], m["created_at"], m["sender"], m["author"], m["body"]])
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet will not run as a formula (visitors write these messages)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# -- agents and settings -------------------------------------------------------------------------------------------

# Keys never written out, wherever they appear in a settings section (today none holds one; a later one might):
# names ending in one of these words ("identity_secret", "smtp_password"; not "password_min_length").
SECRET_KEY_NAME = re.compile(r"(?:^|_)(?:secret|password|token|hash|key|codes?)s?(?:_encrypted)?$", re.IGNORECASE)


@bp.get("/<any(agents, settings):what>.json")
@requires("admin", "owner")
def people_or_settings(what: str) -> ResponseReturnValue:
    """The tenant's agents (no password hashes, two-factor secrets or recovery codes) or its settings (sites,
    teams, hours, labels, saved replies, routing and security, the mail server; no identity secret, API key or
    password), as one JSON document. Audited like a conversations download."""
    tenant_id = current_user.tenant_id
    with tenant_session(tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None  # the user loader found it
        document = _agents(session) if what == "agents" else _settings(session, tenant)
        audit.record(
            session, tenant_id=tenant_id, actor_id=current_user.id, action=f"export.{what}", client=client()
        )
        session.commit()
        slug = tenant.slug
    document = {"format": f"deskbell.{what}/1", "tenant": slug, "exported_at": _time(datetime.now(UTC)), **document}
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{what}-{slug}.json"', "Cache-Control": "no-store"},
    )


def _emails(session: Session) -> dict[uuid.UUID, str]:
    return dict(session.execute(select(User.id, User.email)).tuples().all())


def _team_names(session: Session) -> dict[uuid.UUID, str]:
    return dict(session.execute(select(Team.id, Team.name)).tuples().all())


def _agents(session: Session) -> dict[str, Any]:
    teams = _team_names(session)
    member_of: dict[uuid.UUID, list[str]] = defaultdict(list)
    for team_id, user_id in session.execute(select(TeamMember.team_id, TeamMember.user_id)):
        member_of[user_id].append(teams[team_id])
    agents = [
        {
            "id": str(u.id),
            "email": u.email,
            "name": u.name,
            "role": u.role,
            "active": u.is_active,
            "max_chats": u.max_chats,
            "teams": sorted(member_of[u.id]),
            "two_factor": u.totp_enabled_at is not None,
            "created_at": _time(u.created_at),
        }
        for u in session.scalars(select(User).order_by(User.created_at, User.email))
    ]
    invites = [
        {
            "email": i.email,
            "role": i.role,
            "created_at": _time(i.created_at),
            "expires_at": _time(i.expires_at),
            "accepted_at": _time(i.accepted_at),
        }
        for i in session.scalars(select(Invite).order_by(Invite.created_at))
    ]
    return {"agents": agents, "invites": invites}


def _settings(session: Session, tenant: Tenant) -> dict[str, Any]:
    teams, emails = _team_names(session), _emails(session)
    members: dict[uuid.UUID, list[str]] = defaultdict(list)
    for team_id, user_id in session.execute(select(TeamMember.team_id, TeamMember.user_id)):
        members[team_id].append(emails[user_id])
    stored = tenant.settings or {}
    sections = {**stored, **tenant_settings.effective(stored)}  # every section, with the defaults filled in
    mail = session.scalar(select(MailSettings))
    return {
        "name": tenant.name,
        "domain": tenant.domain,
        "settings": _without_secrets(sections),
        "sites": [
            {
                "name": site.name,
                "site_key": site.site_key,  # public: it is in the embed snippet
                "allowed_origins": list(site.allowed_origins),
                "widget": _without_secrets(site.widget or {}),
                "created_at": _time(site.created_at),
            }
            for site in session.scalars(select(Site).order_by(Site.created_at))
        ],
        "teams": [
            {"name": name, "members": sorted(members[team_id])}
            for team_id, name in sorted(teams.items(), key=lambda item: item[1])
        ],
        "hours": [
            {
                "team": teams.get(s.team_id) if s.team_id else None,
                "timezone": s.timezone,
                "weekly": s.weekly,
                "holidays": s.holidays,
            }
            for s in session.scalars(select(Schedule).order_by(Schedule.created_at))
        ],
        "labels": [
            {"name": label.name, "color": label.color} for label in session.scalars(select(Label).order_by(Label.name))
        ],
        "canned_responses": [
            {"shortcut": c.shortcut, "body": c.body, "owner": emails.get(c.owner_id) if c.owner_id else None}
            for c in session.scalars(select(CannedResponse).order_by(CannedResponse.shortcut, CannedResponse.id))
        ],
        "mail": None
        if mail is None
        else {
            "host": mail.host,
            "port": mail.port,
            "security": mail.security,
            "username": mail.username,
            "from_address": mail.from_address,
            "from_name": mail.from_name,
        },
    }


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_secrets(v) for k, v in value.items() if not SECRET_KEY_NAME.search(str(k))
        }
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
