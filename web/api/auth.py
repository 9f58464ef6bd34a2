"""Who is calling the API: every request is checked here before its view runs, and audited after it answered.

A request passes when it names a live key of an active tenant, its timestamp is within DESKBELL_API_MAX_SKEW_SECONDS
of the server's clock, its HMAC (desk/signing.py) matches, compared in constant time, and its nonce was never used
with that key. The nonce is stored (api_nonces, migration 0009) until the timestamp leaves the window, after which
the timestamp alone refuses a replay. Every refusal is a 401 (403 for a suspended tenant) with a JSON reason.

Before any of that, a client address over DESKBELL_API_REQUESTS_PER_IP_PER_MINUTE gets a 429 (token buckets in this
process, web/edge/abuse.py): a flood of bad signatures costs no query and no HMAC. Every served call is one
`api.request` entry of the audit log; refused calls are `api.refused` entries, at most one per address, tenant and
reason each DESKBELL_API_REFUSED_AUDIT_SECONDS, counting the ones left out (docs/api.md).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from desk import audit, signing
from desk.actions.api_keys import secret_of
from desk.db import system_session
from desk.models import ApiKey, ApiNonce, Tenant
from desk.settings import Settings
from web.api import bp, error
from web.edge import abuse

log = logging.getLogger(__name__)

# Expired nonces are deleted at most this often per process, this many at a time: a cheap, bounded chore.
PRUNE_SECONDS = 60
PRUNE_ROWS = 5000
_pruned_at = 0.0
# A key's last_used_at (shown on the admin page) is brought up to date at most this often.
LAST_USED_EVERY = timedelta(minutes=1)
_prune_lock = threading.Lock()
# The refused-call audit forgets its quiet addresses when it remembers more than this many.
REFUSALS_REMEMBERED = 10_000


@dataclass(frozen=True)
class Caller:
    """The key a request was signed with; its tenant is the only one the request sees."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str
    name: str
    created_by_id: uuid.UUID | None  # who made the key: the one actions that need a person are recorded as


class Refused(Exception):
    def __init__(self, code: str, message: str, status: int = 401, key: ApiKey | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        # Read now: the session's rollback expires the key's attributes.
        self.tenant_id = key.tenant_id if key is not None else None


def caller() -> Caller:
    """The calling key of this request (set before any view of the blueprint runs)."""
    return g.api_caller


def signed_path() -> str:
    """The path and query as the client signed them."""
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def _check(session: Session, config: Settings) -> ApiKey:
    headers = {name: request.headers.get(name, "").strip() for name in signing.HEADERS}
    missing = [name for name, value in headers.items() if not value]
    if missing:
        raise Refused("unsigned", f"sign the request: missing {', '.join(missing)} (docs/api.md)")
    prefix = headers[signing.KEY_HEADER][:16]
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise Refused("unknown_key", "no API key has this prefix")
    if key.revoked_at is not None:
        raise Refused("revoked_key", "this API key was revoked", key=key)
    stamp, nonce = headers[signing.TIMESTAMP_HEADER], headers[signing.NONCE_HEADER]
    if not signing.TIMESTAMP.fullmatch(stamp):
        raise Refused("bad_timestamp", f"{signing.TIMESTAMP_HEADER} must be Unix time in seconds", key=key)
    if abs(time.time() - int(stamp)) > config.api.max_skew_seconds:
        raise Refused(
            "stale_timestamp",
            f"the timestamp is more than {config.api.max_skew_seconds} s from the server's clock: sign it again now",
            key=key,
        )
    if not signing.NONCE.fullmatch(nonce):
        raise Refused("bad_nonce", f"{signing.NONCE_HEADER} must be 16 to 128 of A-Z a-z 0-9 _ -", key=key)
    try:
        secret = secret_of(key, current_app.config["SECRET_KEY"])
    except InvalidToken:
        raise Refused("unusable_key", "this key was made under another SECRET_KEY: create a new one", key=key) from None
    body = request.get_data(cache=True)
    expected = signing.signature(secret, request.method, signed_path(), stamp, nonce, body)
    if not signing.matches(expected, headers[signing.SIGNATURE_HEADER].lower()):
        raise Refused("bad_signature", "the signature does not match this request and key", key=key)
    tenant = session.get(Tenant, key.tenant_id)
    if tenant is None or tenant.status != "active":
        raise Refused("tenant_suspended", "this tenant is suspended", status=403, key=key)
    # Stored and committed before the view runs: of two requests with one nonce, the second waits on the first's
    # row and then inserts nothing.
    expires = datetime.fromtimestamp(int(stamp) + config.api.max_skew_seconds + 1, UTC)
    fresh = session.execute(
        insert(ApiNonce)
        .values(key_id=key.id, nonce=nonce, expires_at=expires)
        .on_conflict_do_nothing()
        .returning(ApiNonce.nonce)
    ).first()
    if fresh is None:
        raise Refused("replayed_nonce", "this nonce was already used: sign each request with a new one", key=key)
    now = datetime.now(UTC)
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_EVERY:  # not a write on the key's row a call
        key.last_used_at = now
    session.commit()
    return key


def prune_expired(session: Session) -> int:
    """Delete up to PRUNE_ROWS nonces whose timestamps are out of the window (a replay of them is refused as
    stale anyway); returns how many. Commits."""
    expired = select(ApiNonce.key_id, ApiNonce.nonce).where(ApiNonce.expires_at < datetime.now(UTC)).limit(PRUNE_ROWS)
    deleted = session.execute(delete(ApiNonce).where(tuple_(ApiNonce.key_id, ApiNonce.nonce).in_(expired)))
    session.commit()
    return deleted.rowcount


def _prune(session: Session) -> None:
    global _pruned_at
    with _prune_lock:
        if time.monotonic() - _pruned_at < PRUNE_SECONDS:
            return
        _pruned_at = time.monotonic()
    prune_expired(session)


class RefusalLog:
    """Which refused calls get an audit entry: the first of each (address, tenant, reason) in `every` seconds;
    the others are counted into the next entry. Shared by Flask's threads."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, uuid.UUID | None, str], tuple[float, int]] = {}

    def entry(self, key: tuple[str, uuid.UUID | None, str]) -> int | None:
        """None: no entry for this one (it is counted). Else: write one, saying how many were left out before."""
        now = self.clock()
        with self.lock:
            last = self.seen.get(key)
            if last is not None and now - last[0] < self.every:
                self.seen[key] = (last[0], last[1] + 1)
                return None
            if last is None and len(self.seen) >= REFUSALS_REMEMBERED:
                self.seen = {k: v for k, v in self.seen.items() if now - v[0] < self.every}
                if len(self.seen) >= REFUSALS_REMEMBERED:  # a flood from that many addresses: start again
                    self.seen.clear()
            self.seen[key] = (now, 0)
            return last[1] if last is not None else 0


def _app_own(name: str, make: Callable[[], Any]) -> Any:
    """This app's one `make()`, kept in its extensions (the counts are per process, as the app is)."""
    key = f"deskbell.api.{name}"
    if key not in current_app.extensions:
        current_app.extensions.setdefault(key, make())
    return current_app.extensions[key]


def _rate_limited(config: Settings) -> abuse.Limited | None:
    per_minute = config.api.requests_per_ip_per_minute
    if per_minute <= 0:
        return None
    buckets = _app_own("requests", lambda: abuse.Buckets(per_minute, per_minute / 60))
    wait = buckets.take(abuse.ip_key(request.remote_addr))
    if not wait:
        return None
    return abuse.Limited(
        "api_requests_per_ip_per_minute",
        f"more than {per_minute} API requests a minute from your address; retry later",
        max(1, math.ceil(wait)),
    )


@bp.before_request
def _authenticate() -> ResponseReturnValue | None:
    config: Settings = current_app.config["DESKBELL"]
    limited = _rate_limited(config)
    if limited is not None:  # before any query or HMAC
        g.api_refused = Refused(limited.body()["error"], limited.message, status=429)
        response = jsonify(limited.body())
        response.status_code = 429
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    with system_session() as session:
        try:
            key = _check(session, config)
        except Refused as refused:
            session.rollback()
            g.api_refused = refused
            return error(refused.status, refused.code, refused.message)
        g.api_caller = Caller(key.id, key.tenant_id, key.prefix, key.name, key.created_by_id)
        _prune(session)
    return None


@bp.after_request
def _audit(response: ResponseReturnValue) -> ResponseReturnValue:
    """One entry per served call, and per refused call unless RefusalLog leaves it out; in the key's tenant when a
    key was named (installation-wide otherwise)."""
    found: Caller | None = g.get("api_caller")
    refused: Refused | None = g.get("api_refused")
    detail = {"source": "api", "method": request.method, "path": request.path, "status": response.status_code}
    if found is not None:
        tenant_id, action = found.tenant_id, "api.request"
        detail.update(key=found.prefix, key_name=found.name)
    else:
        tenant_id, action = (refused.tenant_id if refused else None), "api.refused"
        reason = refused.code if refused else "error"
        config: Settings = current_app.config["DESKBELL"]
        refusals: RefusalLog = _app_own("refusals", lambda: RefusalLog(config.api.refused_audit_seconds))
        left_out = refusals.entry((abuse.ip_key(request.remote_addr), tenant_id, reason))
        if left_out is None:
            return response
        detail.update(reason=reason, key=request.headers.get(signing.KEY_HEADER, "")[:16])
        if left_out:
            detail["left_out"] = left_out  # refused like this one since the entry before, without entries
    client = audit.Client(request.remote_addr, request.user_agent.string or None)
    try:
        with system_session() as session:
            audit.record(session, tenant_id=tenant_id, actor_id=None, action=action, client=client, **detail)
            session.commit()
    except Exception:  # the call was served (or refused); a lost audit line must not turn it into a 500
        log.exception("api: audit entry for %s %s not written", request.method, request.path)
    return response
