"""Agent and admin accounts (docs/admin.md, "Account security"): argon2id password hashes, the password policy,
session revocation by epoch, and two-factor codes (TOTP, RFC 6238) with recovery codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from desk.models import User

_hasher = PasswordHasher()

# The session key that holds the user's session_epoch at the time of logging in (web/auth).
EPOCH = "epoch"
PASSWORD_MAX_CHARS = 1024
ISSUER = "Deskbell"
RECOVERY_CODES = 10
# Codes from the step before and after the server's are accepted too: phone clocks drift.
TOTP_DRIFT_STEPS = 1


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# -- password policy -------------------------------------------------------------------------------------------

# Words at the core of the passwords people pick first (lists of leaked passwords), checked after lower-casing and
# taking off digits and symbols at either end: "Password123!" is "password". Short on purpose: the length rule
# does most of the work, this catches the long ones everyone tries.
COMMON_PASSWORDS = frozenset(
    """
    password passw0rd pa55word p@ssword p@ssw0rd passwort motdepasse contrasena wachtwoord salasana
    qwerty qwertyuiop qwertyuiopasdfghjkl qwertz azerty asdfgh asdfghjkl zxcvbnm qazwsx qazwsxedc
    1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y zaq12wsx abc123 abcdef abcdefg abcdefgh abcdefghij
    letmein welcome welcomehome iloveyou loveyou trustno1 changeme changeit default secret
    admin administrator root login master superman batman spiderman starwars pokemon
    football baseball basketball soccer hockey princess sunshine shadow monkey dragon
    michael jennifer jordan hunter ranger buster thomas charlie george daniel andrew
    computer internet whatever freedom matrix summer winter autumn spring chocolate
    deskbell support helpdesk customer service livechat company office
    """.split()
)


def _core(password: str) -> str:
    return re.sub(r"^[\W\d_]+|[\W\d_]+$", "", password.lower())


def password_problem(password: str, min_length: int, email: str | None = None) -> str | None:
    """What is wrong with a new password under the tenant's policy, or None: long enough, not too long, not the
    email (or its name part), not a common password with digits and symbols around it, not one character."""
    if len(password) < min_length:
        return f"The password must be at least {min_length} characters long."
    if len(password) > PASSWORD_MAX_CHARS:
        return f"The password must be at most {PASSWORD_MAX_CHARS} characters long."
    lowered = password.lower()
    if email:
        email = email.strip().lower()
        name = email.split("@", 1)[0]
        if lowered == email or email in lowered or (len(name) >= 4 and _core(password) == name):
            return "The password must not be your email address."
    if lowered.isdigit() or _core(password) in COMMON_PASSWORDS or len(set(lowered)) <= 2:
        return "This password is too common: anyone would try it first. Choose another."
    return None


# -- sessions -------------------------------------------------------------------------------------------------


def session_is_current(user: User | Any, data: Mapping[str, Any]) -> bool:
    """Whether a session (Flask's session data) began in the user's current epoch; a session from before epochs
    were kept counts as epoch 0."""
    try:
        return int(data.get(EPOCH, 0)) == int(user.session_epoch)
    except (TypeError, ValueError):
        return False


def revoke_sessions(session: Session, user: User) -> int:
    """End every session of the user at their next request (the caller commits). Returns the new epoch.

    Raised in SQL (two admins at once raise it twice) and through the ORM attribute, so web/edge/access.py sees
    the change and ends the user's live streams at the commit."""
    user.session_epoch = User.session_epoch + 1  # type: ignore[assignment]
    session.flush()
    return int(user.session_epoch)


# -- two-factor -------------------------------------------------------------------------------------------------


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"deskbell totp secrets").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def new_totp_secret() -> str:
    return pyotp.random_base32()


def encrypt_totp_secret(secret: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(secret.encode()).decode()


def decrypt_totp_secret(encrypted: str, secret_key: str, ttl: int | None = None) -> str | None:
    """The secret, or None when SECRET_KEY changed since it was stored (the user must enrol again), or it is older
    than `ttl` seconds."""
    try:
        return _fernet(secret_key).decrypt(encrypted.encode(), ttl=ttl).decode()
    except (InvalidToken, UnicodeError):
        return None


def provisioning_uri(secret: str, email: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The QR code of `uri` as inline SVG, made here: the secret never goes to a QR code service."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff"))


def normalise_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()


def totp_step(secret: str, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """The time step `code` is right for (now, or one step either side), if it is later than the last step a code
    was accepted for; else None. Constant-time compares."""
    code = normalise_code(code)
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    current = int(now) // totp.interval
    found = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (last_step is None or step > last_step):
            found = step
    return found


def _code_hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def new_recovery_codes(count: int = RECOVERY_CODES) -> tuple[list[str], list[str]]:
    """Codes to show once (xxxxx-xxxxx, lower-case base32) and their hashes to store. 50 random bits each:
    sha256 is enough, a code is not a password someone chose."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(alphabet) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes, [_code_hash(c) for c in codes]


def use_recovery_code(user: User, code: str) -> bool:
    """Whether `code` is one of the user's unused recovery codes; if so it is used up (the caller commits, with
    the user row locked)."""
    digest = _code_hash(code)
    remaining = [h for h in user.recovery_codes or [] if not hmac.compare_digest(h, digest)]
    if len(remaining) == len(user.recovery_codes or []):
        return False
    user.recovery_codes = remaining
    return True
