"""`python -m workers.inbound_mail`: the SMTP listener for visitors' email replies (docs/architecture.md, "Email";
the Procfile's optional `mail` process). Point the MX of DESKBELL_MAIL_INBOUND_DOMAIN (or a relay) at it.

Only `reply+<token>@…` recipients are accepted, and only when the token's MAC holds (desk/mail.py): anything else
is refused at RCPT, so this is no open relay. The new text of the reply (quoted text cut off) becomes the
visitor's message through the normal path, JetStream then the store worker; the listener answers 250 only after
JetStream has it, and 451 (the sending server retries) when NATS does not confirm. The email's Message-ID makes
the message's client_id, so a retried email is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import html
import logging
import re
import signal
import uuid
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from nats.aio.client import Client

from desk import aio, bus, logs, mail, mail_outbox, settings, subjects
from desk.actions.messages import Inbound
from desk.db import system_session, tenant_session
from desk.models import Visitor
from desk.protocol import storable

log = logging.getLogger(__name__)

CLIENT_PREFIX = "email:"
_TAG = re.compile(r"<[^>]+>")


def text_of(message: EmailMessage) -> str:
    """The plain text of an email, or its HTML turned into text when it has no plain part."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    if part.get_content_subtype() == "html":
        content = html.unescape(_TAG.sub("", re.sub(r"(?i)<br\s*/?>|</p>", "\n", content)))
    return content


def automatic(message: EmailMessage, mail_from: str | None) -> bool:
    """A bounce (empty sender), an auto-reply (RFC 3834 Auto-Submitted, or the older Precedence and X-Autoreply
    headers) or a mailing list's copy."""
    if not (mail_from or "").strip("<> "):
        return True
    if str(message.get("Auto-Submitted", "no")).strip().lower() != "no":
        return True
    if str(message.get("Precedence", "")).strip().lower() in ("bulk", "junk", "list", "auto_reply"):
        return True
    return message.get("X-Autoreply") is not None or message.get("List-Id") is not None


def client_id_of(message: EmailMessage, raw: bytes) -> str:
    """Stable for one email: from its Message-ID, or its bytes when it has none."""
    source = (message.get("Message-ID") or "").strip().encode() or raw
    return CLIENT_PREFIX + hashlib.sha256(source).hexdigest()[:40]


def _tenant_of(visitor_id: uuid.UUID) -> uuid.UUID | None:
    with system_session() as session:  # the token names the visitor; their tenant is looked up
        visitor = session.get(Visitor, visitor_id)
        return visitor.tenant_id if visitor else None


def _follow(tenant_id: uuid.UUID, visitor_id: uuid.UUID, sender: str) -> None:
    with tenant_session(tenant_id) as session:
        mail_outbox.do_follow_by_email(session, visitor_id, sender, "email")


class Handler:
    """aiosmtpd's handler: RCPT checks the reply address, DATA publishes the reply."""

    def __init__(self, nc: Client, config: settings.Settings) -> None:
        self.nc, self.config = nc, config

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if mail.visitor_of_address(self.config.secret_key, address) is None:
            return "550 5.1.1 No such reply address"
        if envelope.rcpt_tos:
            return "452 4.5.3 One reply address per email"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        visitor_id = mail.visitor_of_address(self.config.secret_key, envelope.rcpt_tos[0])
        assert visitor_id is not None  # RCPT checked it
        raw = envelope.original_content or b""
        message: Any = email.message_from_bytes(raw, policy=email.policy.default)
        if automatic(message, envelope.mail_from):
            # Taken (a refusal would only bounce back to a robot) and dropped: an out-of-office or a bounce is no
            # visitor's message.
            log.info("inbound mail: automatic email to %s dropped", envelope.rcpt_tos[0])
            return "250 OK"
        body = mail.strip_quoted(text_of(message))[: self.config.limits.message_chars]
        if not body or not storable(body):
            return "550 5.6.0 The reply has no text above the quoted email"
        tenant_id = await asyncio.to_thread(_tenant_of, visitor_id)
        if tenant_id is None:
            return "550 5.1.1 No such reply address"
        sender = (envelope.mail_from or "").strip() or None
        if sender:
            await asyncio.to_thread(_follow, tenant_id, visitor_id, sender)
        inbound = Inbound(visitor_id=visitor_id, client_id=client_id_of(message, raw), body=body)
        try:
            await bus.publish_durable(
                self.nc,
                subjects.inbound(tenant_id, visitor_id),
                inbound.payload(),
                subjects.inbound_msg_id(visitor_id, inbound.client_id),
            )
        except bus.BusUnavailable as exc:
            log.warning("inbound mail: not published (%s); the sender will retry", exc)
            return "451 4.3.0 Try again later"
        log.info("inbound mail: reply of visitor %s published", visitor_id)
        return "250 OK"


async def serve(config: settings.Settings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Listen on DESKBELL_MAIL_INBOUND_HOST:PORT until `stop` is set."""
    if not config.nats_url:
        raise SystemExit("NATS_URL is not set")
    nc = await bus.connect(config.nats_url, "inbound-mail")
    handler = Handler(nc, config)
    loop = asyncio.get_running_loop()
    while True:  # a taken port is logged and retried, not fatal: `deskbell run` stops everything when one exits
        try:
            server = await loop.create_server(
                lambda: SMTP(
                    handler, data_size_limit=config.mail.inbound_max_bytes, hostname=config.mail.inbound_domain
                ),
                host=config.mail.inbound_host,
                port=config.mail.inbound_port,
            )
            break
        except OSError as exc:
            log.error("inbound mail: cannot listen on %s:%d (%s); retrying in 30 s",
                      config.mail.inbound_host, config.mail.inbound_port, exc)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 30)
            if stop.is_set():
                await nc.close()
                return
    log.info("inbound mail: listening on %s:%d", config.mail.inbound_host, config.mail.inbound_port)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await bus.flush(nc)
        await nc.close()


def main() -> None:
    logs.configure("inbound-mail")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings.load(), stop)

    with contextlib.suppress(KeyboardInterrupt):
        aio.run(run())


if __name__ == "__main__":
    main()
