"""A tenant's outgoing mail server (docs/admin.md, "Email"): validated from the admin form, the password kept
Fernet-encrypted under a key derived from SECRET_KEY (like API key secrets), read back by the mailer."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import audit
from desk.actions.admin import Invalid, record
from desk.models import MailSettings, User
from desk.visitor_context import EMAIL_CHARS, InvalidField, parse_email

SECURITY = ("starttls", "tls", "none")  # STARTTLS on a plain port, TLS from the start (465), neither
FIELDS = ("host", "port", "security", "username", "from_address", "from_name")


@dataclass(frozen=True)
class SmtpConfig:
    """What the SMTP client needs, password decrypted."""

    host: str
    port: int
    security: str
    username: str
    password: str
    from_address: str
    from_name: str


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"deskbell smtp passwords").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_password(password: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(password.encode()).decode() if password else ""


def decrypt_password(encrypted: str, secret_key: str) -> str | None:
    """The password, or None when SECRET_KEY changed since it was saved (the admin must enter it again)."""
    if not encrypted:
        return ""
    try:
        return _fernet(secret_key).decrypt(encrypted.encode()).decode()
    except InvalidToken:
        return None


def of_tenant(session: Session) -> MailSettings | None:
    return session.scalars(select(MailSettings)).first()


def config_of(session: Session, secret_key: str) -> SmtpConfig | None:
    """The tenant's SMTP settings ready to use, or None when none are saved (or the password cannot be read)."""
    stored = of_tenant(session)
    if stored is None or not stored.host:
        return None
    password = decrypt_password(stored.password_encrypted, secret_key)
    if password is None:
        return None
    return SmtpConfig(
        stored.host, stored.port, stored.security, stored.username, password, stored.from_address, stored.from_name
    )


def parse(form: dict[str, Any]) -> dict[str, Any]:
    """The form's fields, checked; `password` empty keeps the saved one (the page never shows it)."""
    host = (form.get("host") or "").strip()
    if not host or len(host) > 253 or any(c.isspace() for c in host):
        raise Invalid("Enter the mail server's host name, like smtp.example.com.")
    try:
        port = int(str(form.get("port") or "").strip())
    except ValueError:
        raise Invalid("The port must be a number, like 587.") from None
    if not 1 <= port <= 65535:
        raise Invalid("The port must be between 1 and 65535.")
    security = form.get("security") or "starttls"
    if security not in SECURITY:
        raise Invalid(f"Security must be one of {', '.join(SECURITY)}.")
    try:
        from_address = parse_email(form.get("from_address"))
    except InvalidField:
        from_address = None
    if not from_address:
        raise Invalid("Enter the address emails are sent from, like support@example.com.")
    username = (form.get("username") or "").strip()
    if len(username) > EMAIL_CHARS:
        raise Invalid("The user name is too long.")
    from_name = (form.get("from_name") or "").strip()[:200]
    return {
        "host": host,
        "port": port,
        "security": security,
        "username": username,
        "password": form.get("password") or "",
        "from_address": from_address,
        "from_name": from_name,
    }


def do_save_mail_settings(
    session: Session, actor: User, client: audit.Client, form: dict[str, Any], secret_key: str
) -> MailSettings:
    """Replace the tenant's SMTP settings with the validated form. The audit log records every field but the
    password (only that it changed). Commits."""
    values = parse(form)
    stored = of_tenant(session)
    before = audit.snapshot(stored, FIELDS) if stored else {}
    if stored is None:
        stored = MailSettings(tenant_id=actor.tenant_id)
        session.add(stored)
    for name in FIELDS:
        setattr(stored, name, values[name])
    password_changed = bool(values["password"])
    if password_changed:
        stored.password_encrypted = encrypt_password(values["password"], secret_key)
    stored.updated_at = datetime.now(UTC)
    after = audit.snapshot(stored, FIELDS)
    if after != before or password_changed:
        record(session, actor, client, "mail.settings", before=before, after=after, password_changed=password_changed)
    session.commit()
    return stored
