"""Email's building blocks (docs/architecture.md, "Email"): the reply address with its signed token, the texts of
the emails, the quoted text cut off an incoming reply, and the SMTP client behind a circuit breaker.

The breaker (pybreaker, one per mail server) opens after `breaker_failures` failed sends in a row: sends to that
server then fail at once, without a connection, until `breaker_reset_seconds` have passed and one trial send
finds it back (issue 9: a dead dependency never blocks chat). Its state is the `deskbell_circuit_state` gauge.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import smtplib
import ssl
import threading
import uuid
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import pybreaker

from desk import metrics
from desk.mail_settings import SmtpConfig
from desk.settings import Mail

REPLY_PREFIX = "reply+"
_TOKEN_MAC_BYTES = 10  # 16 bytes of visitor id + 10 of MAC: 42 base32 characters, inside a 64-character local part
# The line above which a visitor types; everything from it down is the quoted email.
REPLY_ABOVE = "## Reply above this line ##"
_QUOTE_STARTS = (
    re.compile(r"^\s*##\s*Reply above this line\s*##", re.I),
    re.compile(r"^On .{1,200}wrote:\s*$", re.S),  # Gmail, Apple Mail, Thunderbird
    re.compile(r"^Le .{1,200}a écrit\s*:\s*$", re.S),
    re.compile(r"^Am .{1,200}schrieb .{1,200}:\s*$", re.S),
    re.compile(r"^-{2,}\s*Original Message\s*-{2,}", re.I),  # Outlook
    re.compile(r"^_{10,}\s*$"),  # Outlook's rule before its From: block
    re.compile(r"^From:\s.+", re.I),
    re.compile(r"^>"),
)


# -- the reply address ---------------------------------------------------------------------------------------------


def _mac(secret_key: str, visitor_id: uuid.UUID) -> bytes:
    return hmac.new(secret_key.encode(), b"deskbell mail reply:" + visitor_id.bytes, hashlib.sha256).digest()


def reply_token(secret_key: str, visitor_id: uuid.UUID) -> str:
    """Lower-case base32 (mail systems may change the case of a local part) of the visitor id and its MAC."""
    raw = visitor_id.bytes + _mac(secret_key, visitor_id)[:_TOKEN_MAC_BYTES]
    return base64.b32encode(raw).decode().rstrip("=").lower()


def reply_address(secret_key: str, visitor_id: uuid.UUID, domain: str) -> str:
    return f"{REPLY_PREFIX}{reply_token(secret_key, visitor_id)}@{domain}"


def visitor_of_address(secret_key: str, address: str) -> uuid.UUID | None:
    """The visitor a reply+<token>@… address was made for, or None when it is not one or its MAC is wrong."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    if not local.startswith(REPLY_PREFIX):
        return None
    token = local[len(REPLY_PREFIX) :].upper()
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16 + _TOKEN_MAC_BYTES:
        return None
    visitor_id = uuid.UUID(bytes=raw[:16])
    if not hmac.compare_digest(raw[16:], _mac(secret_key, visitor_id)[:_TOKEN_MAC_BYTES]):
        return None
    return visitor_id


def strip_quoted(text: str) -> str:
    """The new text of an email reply: everything above the first line that starts the quoted email."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if any(pattern.match(line) for pattern in _QUOTE_STARTS):
            break
        kept.append(line)
    body = "\n".join(kept).strip()
    # A signature separator ends the message too ("-- " on its own line, RFC 3676).
    return body.split("\n-- \n", 1)[0].strip()


# -- the emails ------------------------------------------------------------------------------------------------------


def message(
    config: SmtpConfig,
    to: Iterable[str],
    subject: str,
    body: str,
    message_id: str,
    reply_to: str | None = None,
) -> EmailMessage:
    """A plain-text email. `message_id` is stable for one delivery, so a resend after a crash is the same email
    to the recipient's mail system (which may drop it as a duplicate)."""
    email = EmailMessage()
    email["From"] = formataddr((config.from_name, config.from_address)) if config.from_name else config.from_address
    email["To"] = ", ".join(to)
    email["Subject"] = subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = message_id
    email["Auto-Submitted"] = "auto-generated"
    if reply_to:
        email["Reply-To"] = reply_to
    email.set_content(body)
    return email


def reply_text(author: str | None, body: str, site: str) -> str:
    return f"{REPLY_ABOVE}\n\n{author or site} wrote:\n\n{body}\n\n-- \nReply to this email to answer {site}.\n"


def transcript_text(site: str, lines: Iterable[tuple[str, str, str]]) -> str:
    """(when, who, text) lines as an email."""
    out = [f"Your conversation with {site}:", ""]
    for when, who, text in lines:
        out += [f"[{when}] {who}:", text, ""]
    return "\n".join(out)


# -- sending, behind the breaker -------------------------------------------------------------------------------------


class MailUnavailable(RuntimeError):
    """The email was not sent: the server failed, or its breaker is open; retry later."""


# The recipient or the message was refused: the server is alive, so these do not count towards opening.
_NOT_THE_SERVERS_FAULT = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused)
_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_lock = threading.Lock()
_STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class _Metrics(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: object, new_state: object) -> None:
        metrics.CIRCUIT_STATE.labels(cb.name).set(_STATES.get(new_state.name, 0))  # type: ignore[attr-defined]


def breaker(target: str, config: Mail) -> pybreaker.CircuitBreaker:
    """The breaker of one mail server (`smtp:host:port`), made on first use."""
    with _lock:
        if target not in _breakers:
            _breakers[target] = pybreaker.CircuitBreaker(
                fail_max=config.breaker_failures,
                reset_timeout=config.breaker_reset_seconds,
                exclude=list(_NOT_THE_SERVERS_FAULT),
                listeners=[_Metrics()],
                name=target,
            )
            metrics.CIRCUIT_STATE.labels(target).set(0)
        return _breakers[target]


def breaker_states() -> dict[str, str]:
    """Each mail server this process has sent to, and its breaker's state (closed, open, half-open)."""
    with _lock:
        return {name: cb.current_state for name, cb in _breakers.items()}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One for the process: loading the system's CA certificates takes 300 ms, as long as a whole send."""
    return ssl.create_default_context()


def _smtp_send(smtp: SmtpConfig, email: EmailMessage, timeout: float, helo: str) -> None:
    # `helo` given: smtplib would otherwise look up this host's FQDN at every connection (a DNS query that takes
    # seconds, or hangs, on a server without a resolver: 250 ms a send here).
    context = _tls_context() if smtp.security != "none" else None
    if smtp.security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            smtp.host, smtp.port, local_hostname=helo, timeout=timeout, context=context
        )
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, local_hostname=helo, timeout=timeout)
    with client:
        if smtp.security == "starttls":
            client.starttls(context=context)
        if smtp.username:
            client.login(smtp.username, smtp.password)
        client.send_message(email)


def send(smtp: SmtpConfig, email: EmailMessage, config: Mail) -> None:
    """Send one email (blocking: call it from a thread) through the server's breaker; MailUnavailable when it
    was not sent for a reason worth retrying, smtplib's refusal when the server refused this email."""
    target = f"smtp:{smtp.host}:{smtp.port}"
    try:
        breaker(target, config).call(_smtp_send, smtp, email, config.timeout_seconds, config.inbound_domain)
    except pybreaker.CircuitBreakerError as exc:
        metrics.OUTBOUND_CALLS.labels(target, "rejected").inc()
        raise MailUnavailable(f"{target}: circuit open ({exc})") from exc
    except _NOT_THE_SERVERS_FAULT:
        metrics.OUTBOUND_CALLS.labels(target, "refused").inc()
        raise
    except (OSError, smtplib.SMTPException) as exc:
        metrics.OUTBOUND_CALLS.labels(target, "failed").inc()
        raise MailUnavailable(f"{target}: {type(exc).__name__}: {exc}") from exc
    metrics.OUTBOUND_CALLS.labels(target, "ok").inc()
