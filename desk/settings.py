"""Configuration from the environment, with safe defaults. See docs/operations.md for every variable."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def sqlalchemy_url(url: str) -> str:
    """Accept the `postgres://` and `postgresql://` URLs that platforms hand out; use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Limits:
    """Every limit a client can run into, in one place (docs/protocol.md lists them)."""

    message_chars: int = 4000
    client_id_chars: int = 64
    frame_bytes: int = 64 * 1024
    heartbeat_seconds: int = 20
    visitor_token_days: int = 30
    ack_timeout_seconds: int = 15
    # Messages a socket may have sent and not yet had acked; one more and the socket is closed (4429).
    pending_messages: int = 500
    # How long a long-poll waits for a new message before answering with none.
    poll_seconds: int = 25
    # Attachments (docs/operations.md): the largest file, the types allowed (checked by content), uploads per hour.
    upload_bytes: int = 10 * 1024 * 1024
    upload_types: tuple[str, ...] = (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
    )
    uploads_per_hour: int = 20
    # Abuse limits (docs/operations.md, "Abuse limits"), kept in each web process's memory; 0 turns one off.
    # Per client address (an IPv6 one by its /64): new visitor connections (sockets and long-polls) per minute,
    # visitor sockets open at once, and new visitor sessions per hour.
    connections_per_ip_per_minute: int = 120
    sockets_per_ip: int = 100
    sessions_per_ip_per_hour: int = 100
    # Per visitor (the token's visitor, whatever the address): new connections (sockets and long-polls) per minute
    # and sockets open at once. A flood from many addresses with one visitor's token is stopped by these, checked
    # before any query.
    connections_per_visitor_per_minute: int = 120
    sockets_per_visitor: int = 20
    # Per socket: frames a second, with a small burst (message frames are bounded by pending_messages instead).
    frames_per_second: int = 10
    frame_burst: int = 30


@dataclass(frozen=True)
class Presence:
    """Agents' presence (docs/operations.md, "Presence and the sweeper")."""

    # How often an open console tab tells the server the agent is still there.
    heartbeat_seconds: int = 20
    # Silence after which the sweeper turns an online agent away; longer than a heartbeat or two.
    grace_seconds: int = 60
    # How often each worker sweeps: silent agents, and snoozed conversations whose time has come.
    sweep_seconds: int = 5


@dataclass(frozen=True)
class Routing:
    """Routing's time limits (docs/operations.md, "Routing"); a tenant's own (tenants.settings.routing) win."""

    # An agent who has not opened a conversation routing gave them within this loses it to the next agent.
    open_timeout_seconds: int = 120
    # A conversation whose visitor has waited this long for an agent's reply is marked missed.
    missed_after_seconds: int = 300
    # An open or pending conversation without a message for this long is resolved with a system message.
    idle_resolve_seconds: int = 0


@dataclass(frozen=True)
class Logins:
    """Login attempt limits (docs/operations.md, "Login attempts"), kept in PostgreSQL so every web process agrees."""

    # Failed attempts on one account (the email typed) that lock it; two-factor codes count too.
    max_failures: int = 10
    # Failed attempts from one address (an IPv6 /64) on any accounts that lock the address out.
    ip_max_failures: int = 50
    # How long a lock lasts.
    lockout_seconds: int = 15 * 60
    # Failures on an account before each further attempt must wait 1, 2, 4... seconds, at most delay_max_seconds.
    delay_after: int = 3
    delay_max_seconds: int = 30
    # Failures are forgotten this long after the last one (and when a lock ends).
    window_seconds: int = 15 * 60


@dataclass(frozen=True)
class Api:
    """The signed server-to-server API (docs/api.md; docs/operations.md, "Server-to-server API")."""

    # A request whose timestamp is further than this from the server's clock is refused (and so is its replay).
    max_skew_seconds: int = 300
    # The most items one page of a list answers with (a client's `limit` above it is lowered to it).
    page_max: int = 100
    # Requests one client address may make a minute (a burst of as many), counted before any check, in each web
    # process; over it, 429. 0: no limit.
    requests_per_ip_per_minute: int = 600
    # A refused call is audited at most once this often per address, tenant and reason (the entry counts the rest).
    refused_audit_seconds: int = 60


@dataclass(frozen=True)
class Encryption:
    """Encryption at rest (docs/operations.md, "Encryption at rest"): AES-256-GCM keys by id; desk/crypto.py."""

    keys: tuple[tuple[str, bytes], ...] = ()
    # The key new values are written with; None: written in plain text (keys still read older values).
    active: str | None = None


@dataclass(frozen=True)
class Ordering:
    """The store worker keeping each thread in the order JetStream accepted it (docs/operations.md, "Message
    order")."""

    # How long a worker holds a message whose thread has an earlier one not yet stored, before handing it back.
    hold_ms: int = 2000
    # A handed-back message comes again after 250 ms, doubling with each delivery up to this.
    retry_max_ms: int = 30000


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str | None
    nats_url: str | None
    secret_key: str
    data_dir: Path
    port: int
    public_url: str | None  # where browsers reach us; None: the host of each request
    limits: Limits = field(default_factory=Limits)
    presence: Presence = field(default_factory=Presence)
    # Reverse proxies whose X-Forwarded-For/Proto/Host we believe; empty: believe no one.
    trusted_proxies: tuple[Network, ...] = ()
    # selfhosted: one company, no tenant management; saas: platform operators manage tenants (docs/admin.md).
    deployment_mode: str = "selfhosted"
    # Copies of each JetStream stream: 1 on a single nats-server, 3 on a cluster (docs/scaling.md).
    stream_replicas: int = 1
    logins: Logins = field(default_factory=Logins)
    api: Api = field(default_factory=Api)
    encryption: Encryption = field(default_factory=Encryption)
    routing: Routing = field(default_factory=Routing)
    ordering: Ordering = field(default_factory=lambda: Ordering())
    mail: Mail = field(default_factory=lambda: Mail())

    @property
    def development(self) -> bool:
        return self.env == "development"


def _secret_key(env: str, data_dir: Path) -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if env != "development":
        raise RuntimeError("SECRET_KEY must be set outside development (DESKBELL_ENV=production).")
    # Development only: one random key kept under the data folder, so every process of the dev runner agrees.
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _networks(name: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks; a bad entry stops the process rather than trusting too much."""
    raw = os.environ.get(name, "")
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise RuntimeError(f"{name}: {exc}") from None


def _types(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A narrower allow-list from the environment; a type outside the default one would never be recognised."""
    raw = os.environ.get(name, "")
    chosen = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = set(chosen) - set(default)
    if unknown:
        raise RuntimeError(f"{name}: not one of {', '.join(default)}: {', '.join(sorted(unknown))}")
    return chosen or default


def _presence() -> Presence:
    presence = Presence(
        heartbeat_seconds=_int("DESKBELL_PRESENCE_HEARTBEAT_SECONDS", Presence.heartbeat_seconds),
        grace_seconds=_int("DESKBELL_PRESENCE_GRACE_SECONDS", Presence.grace_seconds),
        sweep_seconds=_int("DESKBELL_SWEEP_SECONDS", Presence.sweep_seconds),
    )
    if min(presence.heartbeat_seconds, presence.sweep_seconds) < 1:
        raise RuntimeError("DESKBELL_PRESENCE_HEARTBEAT_SECONDS and DESKBELL_SWEEP_SECONDS must be at least 1")
    # A grace no longer than the heartbeat would turn away agents whose console is open.
    if presence.grace_seconds <= presence.heartbeat_seconds:
        raise RuntimeError("DESKBELL_PRESENCE_GRACE_SECONDS must be longer than DESKBELL_PRESENCE_HEARTBEAT_SECONDS")
    return presence


DEPLOYMENT_MODES = ("selfhosted", "saas")


def _deployment_mode() -> str:
    mode = (os.environ.get("DEPLOYMENT_MODE") or "selfhosted").strip().lower()
    if mode not in DEPLOYMENT_MODES:
        raise RuntimeError(f"DEPLOYMENT_MODE must be one of {', '.join(DEPLOYMENT_MODES)}, not {mode!r}")
    return mode


def _stream_replicas() -> int:
    """NATS_STREAM_REPLICAS: JetStream keeps a stream on at most 5 servers; 3 survives losing one."""
    replicas = _int("NATS_STREAM_REPLICAS", 1)
    if not 1 <= replicas <= 5:
        raise RuntimeError("NATS_STREAM_REPLICAS must be between 1 and 5")
    return replicas


def _logins() -> Logins:
    logins = Logins(
        max_failures=_int("DESKBELL_LOGIN_MAX_FAILURES", Logins.max_failures),
        ip_max_failures=_int("DESKBELL_LOGIN_IP_MAX_FAILURES", Logins.ip_max_failures),
        lockout_seconds=_int("DESKBELL_LOGIN_LOCKOUT_SECONDS", Logins.lockout_seconds),
        delay_after=_int("DESKBELL_LOGIN_DELAY_AFTER", Logins.delay_after),
        delay_max_seconds=_int("DESKBELL_LOGIN_DELAY_MAX_SECONDS", Logins.delay_max_seconds),
        window_seconds=_int("DESKBELL_LOGIN_WINDOW_SECONDS", Logins.window_seconds),
    )
    if min(logins.max_failures, logins.ip_max_failures, logins.lockout_seconds, logins.window_seconds) < 1:
        raise RuntimeError(
            "DESKBELL_LOGIN_MAX_FAILURES, _IP_MAX_FAILURES, _LOCKOUT_SECONDS and _WINDOW_SECONDS must be at least 1"
        )
    if min(logins.delay_after, logins.delay_max_seconds) < 0:
        raise RuntimeError("DESKBELL_LOGIN_DELAY_AFTER and DESKBELL_LOGIN_DELAY_MAX_SECONDS must not be negative")
    return logins


def _api() -> Api:
    api = Api(
        max_skew_seconds=_int("DESKBELL_API_MAX_SKEW_SECONDS", Api.max_skew_seconds),
        page_max=_int("DESKBELL_API_PAGE_MAX", Api.page_max),
        requests_per_ip_per_minute=_int("DESKBELL_API_REQUESTS_PER_IP_PER_MINUTE", Api.requests_per_ip_per_minute),
        refused_audit_seconds=_int("DESKBELL_API_REFUSED_AUDIT_SECONDS", Api.refused_audit_seconds),
    )
    if min(api.max_skew_seconds, api.page_max) < 1:
        raise RuntimeError("DESKBELL_API_MAX_SKEW_SECONDS and DESKBELL_API_PAGE_MAX must be at least 1")
    if min(api.requests_per_ip_per_minute, api.refused_audit_seconds) < 0:
        raise RuntimeError(
            "DESKBELL_API_REQUESTS_PER_IP_PER_MINUTE and DESKBELL_API_REFUSED_AUDIT_SECONDS must not be negative"
        )
    return api


KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _encryption() -> Encryption:
    """DESKBELL_ENCRYPTION_KEYS="kid1:<base64 of 32 bytes>,kid2:..." and DESKBELL_ENCRYPTION_ACTIVE=kid1. A bad
    entry stops the process: a key misread would write values no one can read back."""
    keys: dict[str, bytes] = {}
    for entry in (part.strip() for part in os.environ.get("DESKBELL_ENCRYPTION_KEYS", "").split(",")):
        if not entry:
            continue
        kid, _, encoded = entry.partition(":")
        if not KEY_ID.fullmatch(kid):
            raise RuntimeError("DESKBELL_ENCRYPTION_KEYS: a key id is 1 to 32 of A-Z a-z 0-9 _ -, then ':'")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 32:
            raise RuntimeError(f"DESKBELL_ENCRYPTION_KEYS: key {kid} is not the base64 of 32 bytes")
        if kid in keys:
            raise RuntimeError(f"DESKBELL_ENCRYPTION_KEYS: key id {kid} appears twice")
        keys[kid] = key
    active = (os.environ.get("DESKBELL_ENCRYPTION_ACTIVE") or "").strip() or None
    if active is not None and active not in keys:
        raise RuntimeError(f"DESKBELL_ENCRYPTION_ACTIVE: no key {active} in DESKBELL_ENCRYPTION_KEYS")
    return Encryption(keys=tuple(keys.items()), active=active)


def load() -> Settings:
    env = os.environ.get("DESKBELL_ENV", "development")
    data_dir = Path(os.environ.get("DESKBELL_DATA", ROOT / "var")).resolve()
    port = _int("PORT", 8000)
    limits = Limits(
        message_chars=_int("DESKBELL_MESSAGE_MAX_CHARS", Limits.message_chars),
        frame_bytes=_int("DESKBELL_FRAME_MAX_BYTES", Limits.frame_bytes),
        heartbeat_seconds=_int("DESKBELL_HEARTBEAT_SECONDS", Limits.heartbeat_seconds),
        visitor_token_days=_int("DESKBELL_VISITOR_TOKEN_DAYS", Limits.visitor_token_days),
        ack_timeout_seconds=_int("DESKBELL_ACK_TIMEOUT_SECONDS", Limits.ack_timeout_seconds),
        pending_messages=_int("DESKBELL_PENDING_MESSAGES", Limits.pending_messages),
        poll_seconds=_int("DESKBELL_POLL_SECONDS", Limits.poll_seconds),
        upload_bytes=_int("DESKBELL_UPLOAD_BYTES", Limits.upload_bytes),
        upload_types=_types("DESKBELL_UPLOAD_TYPES", Limits.upload_types),
        uploads_per_hour=_int("DESKBELL_UPLOADS_PER_HOUR", Limits.uploads_per_hour),
        connections_per_ip_per_minute=_int(
            "DESKBELL_CONNECTIONS_PER_IP_PER_MINUTE", Limits.connections_per_ip_per_minute
        ),
        sockets_per_ip=_int("DESKBELL_SOCKETS_PER_IP", Limits.sockets_per_ip),
        sessions_per_ip_per_hour=_int("DESKBELL_SESSIONS_PER_IP_PER_HOUR", Limits.sessions_per_ip_per_hour),
        connections_per_visitor_per_minute=_int(
            "DESKBELL_CONNECTIONS_PER_VISITOR_PER_MINUTE", Limits.connections_per_visitor_per_minute
        ),
        sockets_per_visitor=_int("DESKBELL_SOCKETS_PER_VISITOR", Limits.sockets_per_visitor),
        frames_per_second=_int("DESKBELL_FRAMES_PER_SECOND", Limits.frames_per_second),
        frame_burst=_int("DESKBELL_FRAME_BURST", Limits.frame_burst),
    )
    return Settings(
        env=env,
        database_url=os.environ.get("DATABASE_URL") or None,
        nats_url=os.environ.get("NATS_URL") or None,
        secret_key=_secret_key(env, data_dir),
        data_dir=data_dir,
        port=port,
        public_url=(os.environ.get("PUBLIC_URL") or "").rstrip("/") or None,
        limits=limits,
        presence=_presence(),
        trusted_proxies=_networks("TRUSTED_PROXIES"),
        deployment_mode=_deployment_mode(),
        stream_replicas=_stream_replicas(),
        logins=_logins(),
        api=_api(),
        encryption=_encryption(),
        routing=_routing(),
        ordering=_ordering(),
        mail=_mail(),
    )


def _routing() -> Routing:
    routing = Routing(
        open_timeout_seconds=_int("DESKBELL_ROUTING_OPEN_TIMEOUT_SECONDS", Routing.open_timeout_seconds),
        missed_after_seconds=_int("DESKBELL_ROUTING_MISSED_AFTER_SECONDS", Routing.missed_after_seconds),
        idle_resolve_seconds=_int("DESKBELL_ROUTING_IDLE_RESOLVE_SECONDS", Routing.idle_resolve_seconds),
    )
    if min(routing.open_timeout_seconds, routing.missed_after_seconds, routing.idle_resolve_seconds) < 0:
        raise RuntimeError("DESKBELL_ROUTING_* settings must not be negative (0 turns one off)")
    return routing


@dataclass(frozen=True)
class Mail:
    """Email out and in (docs/operations.md, "Email"); the SMTP server itself is each tenant's (admin, Email)."""

    # Where the widget's visitors reply to: reply+<token>@inbound_domain reaches `python -m workers.inbound_mail`.
    inbound_domain: str = "localhost"
    inbound_host: str = "127.0.0.1"
    inbound_port: int = 2525
    # The largest email the inbound listener takes (bigger: refused with 552).
    inbound_max_bytes: int = 1024 * 1024
    # How often each worker looks for emails to send (agents' replies, missed chats, transcripts).
    sweep_seconds: int = 2
    # Connect and command timeout of the SMTP client.
    timeout_seconds: int = 10
    # Failed sends in a row that open the circuit breaker, and how long it stays open before one trial send.
    breaker_failures: int = 5
    breaker_reset_seconds: int = 60
    # Retries of one email: after a failure the next try waits retry_seconds, doubling up to retry_max_seconds;
    # after `attempts` tries the email is marked failed.
    retry_seconds: int = 5
    retry_max_seconds: int = 600
    attempts: int = 12
    # A queued email not sent within this long is handed to JetStream again (its first publish may be lost).
    republish_seconds: int = 900
    # A missed chat or a reply older than this is not emailed any more (a mail server down for days).
    lookback_hours: int = 24
    # A visitor who left their email in the chat (the widget's "leave us a message" box) gets an agent's reply by
    # email too when they have not written since it for this long (they have probably left; 0: never).
    away_minutes: int = 10
    # Transcripts one visitor may have emailed in an hour (anyone can open a chat and type any address: this
    # keeps the widget from being a way to send email to strangers).
    transcripts_per_hour: int = 3


def _mail() -> Mail:
    mail = Mail(
        inbound_domain=os.environ.get("DESKBELL_MAIL_INBOUND_DOMAIN") or Mail.inbound_domain,
        inbound_host=os.environ.get("DESKBELL_MAIL_INBOUND_HOST") or Mail.inbound_host,
        inbound_port=_int("DESKBELL_MAIL_INBOUND_PORT", Mail.inbound_port),
        inbound_max_bytes=_int("DESKBELL_MAIL_INBOUND_MAX_BYTES", Mail.inbound_max_bytes),
        sweep_seconds=_int("DESKBELL_MAIL_SWEEP_SECONDS", Mail.sweep_seconds),
        timeout_seconds=_int("DESKBELL_MAIL_TIMEOUT_SECONDS", Mail.timeout_seconds),
        breaker_failures=_int("DESKBELL_MAIL_BREAKER_FAILURES", Mail.breaker_failures),
        breaker_reset_seconds=_int("DESKBELL_MAIL_BREAKER_RESET_SECONDS", Mail.breaker_reset_seconds),
        retry_seconds=_int("DESKBELL_MAIL_RETRY_SECONDS", Mail.retry_seconds),
        retry_max_seconds=_int("DESKBELL_MAIL_RETRY_MAX_SECONDS", Mail.retry_max_seconds),
        attempts=_int("DESKBELL_MAIL_ATTEMPTS", Mail.attempts),
        republish_seconds=_int("DESKBELL_MAIL_REPUBLISH_SECONDS", Mail.republish_seconds),
        lookback_hours=_int("DESKBELL_MAIL_LOOKBACK_HOURS", Mail.lookback_hours),
        away_minutes=_int("DESKBELL_MAIL_AWAY_MINUTES", Mail.away_minutes),
        transcripts_per_hour=_int("DESKBELL_MAIL_TRANSCRIPTS_PER_HOUR", Mail.transcripts_per_hour),
    )
    if min(mail.sweep_seconds, mail.timeout_seconds, mail.breaker_failures, mail.attempts, mail.inbound_port) < 1:
        raise RuntimeError("DESKBELL_MAIL_* settings must be at least 1")
    if mail.away_minutes < 0:
        raise RuntimeError("DESKBELL_MAIL_AWAY_MINUTES must not be negative (0 turns it off)")
    return mail


def _ordering() -> Ordering:
    ordering = Ordering(
        hold_ms=_int("DESKBELL_STORE_ORDER_HOLD_MS", Ordering.hold_ms),
        retry_max_ms=_int("DESKBELL_STORE_ORDER_RETRY_MAX_MS", Ordering.retry_max_ms),
    )
    if ordering.hold_ms < 0 or ordering.retry_max_ms < 250:
        raise RuntimeError("DESKBELL_STORE_ORDER_HOLD_MS must not be negative, _RETRY_MAX_MS at least 250")
    return ordering
