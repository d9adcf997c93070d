"""A real SMTP server on loopback for the tests (aiosmtpd), and what it received."""
from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from app.mail import MailSettings


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part else ""


@dataclass
class SMTPRecorder:
    """The aiosmtpd handler: keeps every message; `refuse_with` answers DATA with that reply instead."""

    received: list[ReceivedMail] = field(default_factory=list)
    refuse_with: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_with:
            return self.refuse_with
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SMTPServer:
    def __init__(self) -> None:
        self.recorder = SMTPRecorder()
        # aiosmtpd connects to its own port to confirm it started, so the port is chosen up front.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=port)

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[ReceivedMail]:
        return self.recorder.received

    def settings(self, sender: str = "TenantAtlas <alerts@example.test>") -> MailSettings:
        return MailSettings.from_url(self.url, sender)

    def clear(self) -> None:
        self.recorder.received.clear()
        self.recorder.refuse_with = None


@pytest.fixture(scope="session")
def smtp_server_session():
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(smtp_server_session, monkeypatch):
    """A running SMTP server, empty for each test, that SMTP_URL points at."""
    smtp_server_session.clear()
    monkeypatch.setenv("SMTP_URL", smtp_server_session.url)
    yield smtp_server_session
    smtp_server_session.clear()
