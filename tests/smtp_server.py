"""A real SMTP server in the test process (aiosmtpd), standing in for a tenant's mail server: it keeps every email
it receives, and can be stopped and started again on the same port (a dead mail server, then back)."""

from __future__ import annotations

import email
import email.policy
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from desk.embedded import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content().replace("\r\n", "\n") if part is not None else ""


@dataclass
class SmtpServer:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message: Any = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"

    def start(self) -> SmtpServer:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def settings_form(self) -> dict[str, str]:
        """What an admin types on the Email page for this server."""
        return {"host": "127.0.0.1", "port": str(self.port), "security": "none", "from_address": "help@shop.test"}

    def wait_for(self, to: str, subject_has: str = "", timeout: float = 40.0) -> Received:
        """The first email to `to` whose subject contains `subject_has`, once it has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.received:
                if to in item.rcpt_tos and subject_has in str(item.message["Subject"]):
                    return item
            time.sleep(0.1)
        got = [(r.rcpt_tos, r.message["Subject"]) for r in self.received]
        raise AssertionError(f"no email to {to} ({subject_has!r}); got {got}")
