"""The data model, in one module. Every tenant-owned table carries `tenant_id` (see desk/db.py for the scoping).

docs/architecture.md describes how a message row comes to be.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from desk.crypto import EncryptedText

ROLES = ("owner", "admin", "agent")
PRESENCE = ("online", "away", "offline")
SENDERS = ("visitor", "agent", "bot", "system")
# open: waiting on the team; pending: waiting on the visitor; snoozed: hidden until snoozed_until or the visitor's
# next message; resolved: done (the visitor's next message starts a new conversation).
CONVERSATION_STATUSES = ("open", "pending", "snoozed", "resolved")
# What the console's timeline shows between messages. Never in the visitor's thread: notes live in their own table.
CONVERSATION_EVENTS = (
    "note",
    "assigned",
    "unassigned",
    "transferred",
    "resolved",
    "reopened",
    "snoozed",
    "pending",
    "labelled",
)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Base(DeclarativeBase):
    pass


class TenantScoped:
    """Mixin: rows that belong to one tenant. Queries on these classes are filtered by desk.db."""

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:  # noqa: N805
        return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True, nullable=False)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    # SaaS mode: a suspended tenant's consoles and widgets are refused; its data is kept.
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    # SaaS mode: the host name its agents use (the tenant is found from the request's host).
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    # Admin settings by section: routing (auto_assign, strategy), security (session_minutes, password_min_length,
    # console_networks). desk/tenant_settings.py validates and fills in the defaults.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _now()


class Site(TenantScoped, Base):
    __tablename__ = "sites"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    site_key: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: secrets.token_urlsafe(16))
    identity_secret: Mapped[str] = mapped_column(String(128), default=lambda: secrets.token_urlsafe(32))
    # Browser origins allowed to open the widget; empty means any origin (a fresh site before it is configured).
    allowed_origins: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    # The widget's look: welcome text per language, colour, position (desk/widget_settings.py; docs/widget.md).
    widget: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _now()

    def allows_origin(self, origin: str | None) -> bool:
        return origin_allowed(self.allowed_origins, origin)


def origin_allowed(allowed_origins: list[str], origin: str | None) -> bool:
    """Whether a site with these allowed origins admits a page of this origin. No Origin header: not a browser,
    judged by its token alone. An empty list admits every origin."""
    if origin is None or not allowed_origins:
        return True
    return origin.rstrip("/") in {o.rstrip("/") for o in allowed_origins}


class User(TenantScoped, Base):
    """An agent, admin or owner of a tenant."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("email", name="uq_users_email"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    presence: Mapped[str] = mapped_column(String(16), default="offline", server_default="offline")
    is_active: Mapped[bool] = mapped_column(default=True, server_default="true")
    last_assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Conversations routing gives this agent at most at once; 0: no limit.
    max_chats: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The last heartbeat from any of the agent's console tabs; the presence sweeper turns a silent agent away.
    presence_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    # Account security (desk/accounts.py, migration 0010). A session remembers the epoch it began in; raising it
    # ends every session of the user ("Sign out everywhere", deactivation, a password change).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Two-factor: the TOTP secret (Fernet under SECRET_KEY), set once confirmed; the last time step a code was
    # accepted for (a code works once); sha256 of the unused recovery codes.
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    recovery_codes: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")


class Team(TenantScoped, Base):
    """A group of agents (a department) that conversations can be assigned to."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_teams_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = _now()


class TeamMember(TenantScoped, Base):
    __tablename__ = "team_members"

    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class Invite(TenantScoped, Base):
    """An invitation by link to join the tenant with a role; the link's token is stored hashed."""

    __tablename__ = "invites"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class ApiKey(TenantScoped, Base):
    """A tenant's key for the server-to-server API: shown once, stored hashed, revocable. `prefix` names it."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    # HMAC requests need the secret itself, so it is kept encrypted with SECRET_KEY-derived key, not hashed
    # alone; `secret_hash` lets a lookup check a presented key without decrypting.
    secret_hash: Mapped[str] = mapped_column(String(64))
    secret_encrypted: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class Label(TenantScoped, Base):
    """A label an admin defines; conversations carry label names (Conversation.labels)."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_labels_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(40))
    color: Mapped[str] = mapped_column(String(7), default="#6b7280", server_default="#6b7280")
    created_at: Mapped[datetime] = _now()


class Schedule(TenantScoped, Base):
    """Business hours and holidays in a time zone: the tenant's default (team_id empty) or a team's."""

    __tablename__ = "schedules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # {"mon": [["09:00", "17:30"]], ..., "sun": []}: opening intervals per weekday, local time.
    weekly: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # ["2026-12-25", ...]: whole days closed, local dates.
    holidays: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    created_at: Mapped[datetime] = _now()


# What visitor search matches (desk/queries/search.py uses the same expression, so the index serves it). CASE, not
# coalesce(): under row-level security the planner uses an index only for expressions it knows to be leakproof,
# and COALESCE is not among them (migration 0008).
VISITOR_SEARCH_DOCUMENT = (
    "to_tsvector('simple', (CASE WHEN name IS NULL THEN '' ELSE name END) || ' ' || "
    "(CASE WHEN email IS NULL THEN '' ELSE email END) || ' ' || "
    "(CASE WHEN external_id IS NULL THEN '' ELSE external_id END))"
)
MESSAGE_SEARCH_DOCUMENT = "to_tsvector('simple', body)"


class Visitor(TenantScoped, Base):
    """One visitor's thread: `last_seq` is the highest message seq, assigned under this row's lock."""

    __tablename__ = "visitors"
    # NULLs are distinct in PostgreSQL, so only identified visitors are unique per site.
    __table_args__ = (
        UniqueConstraint("site_id", "external_id", name="uq_visitors_site_external_id"),
        Index("ix_visitors_search_fts", text(VISITOR_SEARCH_DOCUMENT), postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    # The site's own user id, set only once the site's identity hash proved it (desk/visitor_context.py).
    external_id: Mapped[str | None] = mapped_column(String(200))
    # Sealed when encryption at rest is on (desk/crypto.py); the widget and the API keep them to 200 and 320 chars.
    name: Mapped[str | None] = mapped_column(EncryptedText("visitors.name"))
    email: Mapped[str | None] = mapped_column(EncryptedText("visitors.email"))
    last_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    page: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # What the console shows about the visitor: UTM, language, time zone, screen, browser, OS, device, country.
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # The pages seen, oldest first: [{url, title, at}], the last TRAIL_LENGTH of them.
    trail: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    created_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()


class Conversation(TenantScoped, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_tenant_activity", "tenant_id", "last_activity_at"),
        # The inbox's lists: by status, and by assignee and status, newest activity first.
        Index("ix_conversations_tenant_status_activity", "tenant_id", "status", "last_activity_at"),
        Index("ix_conversations_assignee_status_activity", "assignee_id", "status", "last_activity_at"),
        # "Unassigned" of a status with few such rows: only those rows, not the status's whole range.
        Index(
            "ix_conversations_unassigned_activity",
            "tenant_id",
            "status",
            "last_activity_at",
            postgresql_where=text("assignee_id IS NULL"),
        ),
        Index("ix_conversations_labels", "labels", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    visitor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visitors.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    snoozed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Visitor messages no agent has read yet, and since when the oldest unanswered one waits (the store worker
    # keeps both; desk/actions/messages.py and desk/actions/receipts.py).
    unread_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_message_preview: Mapped[str] = mapped_column(
        EncryptedText("conversations.last_message_preview"), default="", server_default=""
    )
    # The highest seq of the visitor's thread an agent has read here; only ever grows (desk/actions/receipts.py).
    agent_read_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = _now()
    last_activity_at: Mapped[datetime] = _now()
    # Routing (migration 0012, desk/actions/routing.py): when it joined its team's queue (FIFO order), when routing
    # gave it to its agent and when that agent opened it (unopened for too long: it goes to another), the agent
    # who let it go that way (asked last next time), when it was marked missed, and when it was resolved for
    # being idle (a visitor's message may reopen it, per the site's setting).
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    passed_over_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    missed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    auto_resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Message(TenantScoped, Base):
    """A message in a visitor's thread. (visitor, client_id) makes every replay harmless; seq has no gaps."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("visitor_id", "client_id", name="uq_messages_visitor_client"),
        UniqueConstraint("visitor_id", "seq", name="uq_messages_visitor_seq"),
        Index("ix_messages_conversation_seq", "conversation_id", "seq"),  # a pane's thread, in order
        # Full-text search (desk/queries/search.py). 'simple': no stemming, so it works the same in every language.
        Index("ix_messages_body_fts", text(MESSAGE_SEARCH_DOCUMENT), postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    visitor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visitors.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[str] = mapped_column(String(80))
    sender: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_name: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(EncryptedText("messages.body"))
    created_at: Mapped[datetime] = _now()


class ConversationEvent(TenantScoped, Base):
    """What happened to a conversation besides messages: private notes, assignments, status changes.

    Only agents see these: they are not in the visitor's thread (no seq), so no visitor path can replay them.
    """

    __tablename__ = "conversation_events"
    __table_args__ = (Index("ix_conversation_events_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_name: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(EncryptedText("conversation_events.body"), default="", server_default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _now()


class CannedResponse(TenantScoped, Base):
    """A saved reply, inserted in the composer by typing `/shortcut`. owner_id empty: the whole tenant's."""

    __tablename__ = "canned_responses"
    __table_args__ = (
        Index(
            "uq_canned_tenant_shortcut", "tenant_id", "shortcut", unique=True, postgresql_where=text("owner_id IS NULL")
        ),
        Index(
            "uq_canned_owner_shortcut",
            "owner_id",
            "shortcut",
            unique=True,
            postgresql_where=text("owner_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    shortcut: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class Attachment(TenantScoped, Base):
    """A file a visitor uploaded; its bytes live under the data folder (desk/attachments.py)."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_visitor_created", "visitor_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    visitor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visitors.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(200))
    # Found from the bytes at upload, never taken from the client.
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class AuditLog(Base):
    """Append-only record of logins and administrative changes. tenant_id is empty for installation events."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime] = _now()


class LoginThrottle(Base):
    """Failed login attempts of one account (`account:<email>`) or one address (`ip:<address or /64>`), and the
    lock they led to (web/auth/limits.py). Keyed by what was typed, so unknown emails are throttled alike."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiNonce(Base):
    """A nonce a signed API request used (web/api/auth.py): a second request with it is a replay. Kept until the
    request's timestamp falls out of the accepted window; no tenant's data, so system sessions only (migration 0009)."""

    __tablename__ = "api_nonces"

    key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# -- mail (migration 0013; docs/architecture.md, "Email") ----------------------------------------------------------


class MailSettings(TenantScoped, Base):
    """A tenant's outgoing mail server (desk/mail_settings.py); the password is Fernet-encrypted under SECRET_KEY."""

    __tablename__ = "mail_settings"
    __table_args__ = (UniqueConstraint("tenant_id", name="uq_mail_settings_tenant"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    host: Mapped[str] = mapped_column(String(253), default="", server_default="")
    port: Mapped[int] = mapped_column(Integer, default=587, server_default="587")
    security: Mapped[str] = mapped_column(String(16), default="starttls", server_default="starttls")
    username: Mapped[str] = mapped_column(String(320), default="", server_default="")
    password_encrypted: Mapped[str] = mapped_column(Text, default="", server_default="")
    from_address: Mapped[str] = mapped_column(String(320), default="", server_default="")
    from_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class MailThread(TenantScoped, Base):
    """A visitor answered by email (an offline message, or an email reply): agents' replies to them are emailed.
    `mailed_seq`: the mailer has queued what it had to of their messages up to this seq (desk/mail_outbox.py)."""

    __tablename__ = "mail_threads"

    visitor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visitors.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(16))  # offline | email
    mailed_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = _now()


class MailDelivery(TenantScoped, Base):
    """One email: queued once (unique `key` per tenant), sent at most once by the mailer (workers/mailer.py)."""

    __tablename__ = "mail_deliveries"
    __table_args__ = (UniqueConstraint("tenant_id", "key", name="uq_mail_deliveries_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # reply | transcript | missed
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    recipients: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")  # queued|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
