"""A real SMTP server on loopback for tests and drills (aiosmtpd, in-process).

``stop()`` is an SMTP outage (connections refused); ``start()`` brings the same port back.
"""

from __future__ import annotations

import email
import email.policy
import logging
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from testing.servers import free_port


class Inbox:
    """aiosmtpd's handler: keeps every accepted message; refuses listed recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []
        self.refused: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address, options
    ):
        if address in self.refused:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.messages.append((envelope, bytes(envelope.original_content or b"")))
        return "250 Message accepted"


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        # aiosmtpd logs every SMTP command at INFO.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def raw(self) -> list[bytes]:
        with self.inbox.lock:
            return [content for _, content in self.inbox.messages]

    @property
    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(content, policy=email.policy.default) for content in self.raw
        ]

    @property
    def recipients(self) -> list[list[str]]:
        with self.inbox.lock:
            return [list(envelope.rcpt_tos) for envelope, _ in self.inbox.messages]
