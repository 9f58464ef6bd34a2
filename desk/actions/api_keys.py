"""The tenant's API keys (docs/admin.md, "API keys"): a key is `PREFIX.SECRET`, shown once when created.

`prefix` names the key and finds it; `secret_hash` (sha256) checks a presented key without decrypting; and
`secret_encrypted` keeps the secret itself under a key derived from SECRET_KEY (Fernet), because the
server-to-server API verifies HMAC signatures made with it. Rotating SECRET_KEY makes every key unusable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import audit
from desk.actions.admin import NotFound, record, text
from desk.models import ApiKey, User

PREFIX = "dbk_"
KEY_NAME_CHARS = 100


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"deskbell api key secrets").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_of(key: ApiKey, secret_key: str) -> str:
    """The key's secret, for checking an HMAC signature made with it."""
    return _fernet(secret_key).decrypt(key.secret_encrypted.encode()).decode()


def find_key(session: Session, presented: str) -> ApiKey | None:
    """The live key `presented` (PREFIX.SECRET) is, or None. Any tenant's: run in a system session."""
    prefix, _, secret = presented.partition(".")
    if not secret:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    if key is None or not hmac.compare_digest(key.secret_hash, _hash(secret)):
        return None
    return key


def do_create_api_key(
    session: Session, actor: User, client: audit.Client, name: str, secret_key: str
) -> tuple[ApiKey, str]:
    """A new key; returns it and the full `PREFIX.SECRET`, which is never shown again. Commits."""
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        name=text(name, "Name", KEY_NAME_CHARS),
        prefix=PREFIX + secrets.token_hex(4),
        secret_hash=_hash(secret),
        secret_encrypted=_fernet(secret_key).encrypt(secret.encode()).decode(),
        created_by_id=actor.id,
    )
    session.add(key)
    session.flush()
    record(session, actor, client, "api_key.create", after={"name": key.name, "prefix": key.prefix}, key_id=key.id)
    session.commit()
    return key, f"{key.prefix}.{secret}"


def do_revoke_api_key(session: Session, actor: User, client: audit.Client, key_id: uuid.UUID) -> None:
    """The key stops working at once; it leaves the list, and its row stays for the audit log."""
    key = session.get(ApiKey, key_id, with_for_update=True)
    if key is None or key.revoked_at is not None:
        raise NotFound("No such API key.")
    key.revoked_at = datetime.now(UTC)
    record(
        session,
        actor,
        client,
        "api_key.revoke",
        before={"status": "active"},
        after={"status": "revoked"},
        key_id=key.id,
        name=key.name,
        prefix=key.prefix,
    )
    session.commit()
