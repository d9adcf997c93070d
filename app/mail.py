"""Outgoing email: the one module that speaks SMTP (invitations, alert emails).

Configured by `SMTP_URL` and `SMTP_FROM`:

    smtp://host:25                      plain, as on a local relay
    smtp://user:password@host:587?starttls=1
    smtps://user:password@host:465      TLS from the first byte

Without `SMTP_URL` nothing is sent: callers show what they would have sent (an invitation
link is shown to the owner anyway) and say that email is not configured.

Sending is a blocking call with a timeout, retried with backoff on what an SMTP server
means as "try again" (4xx replies, a dropped connection); a 5xx reply is final. Callers
run it in the worker, never inside a web request, except where a person waits for it and
is told the outcome.
"""
from __future__ import annotations

import os
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from typing import Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from .config import ConfigError

DEFAULT_SENDER = "TenantAtlas <no-reply@tenantatlas.invalid>"
DEFAULT_TIMEOUT = 15.0
DEFAULT_ATTEMPTS = 3


class MailError(RuntimeError):
    """A message could not be sent; `permanent` when retrying later cannot help (a 5xx reply)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    use_tls: bool  # smtps: TLS from the first byte
    starttls: bool
    username: str | None
    password: str | None
    sender: str
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None

    def __repr__(self) -> str:  # never the password, not even in a traceback's locals
        return f"<MailSettings {self.host}:{self.port} tls={self.use_tls} starttls={self.starttls}>"

    @classmethod
    def from_url(cls, url: str, sender: str | None = None, ca_file: str | None = None) -> MailSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError("SMTP_URL must look like smtp://host:25, smtp://user:password@host:587?starttls=1 "
                              "or smtps://user:password@host:465")
        query = parse_qs(parts.query)
        starttls = (query.get("starttls") or ["0"])[0].lower() in ("1", "true", "yes")
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
        except ValueError:
            raise ConfigError("SMTP_URL has a port that is not a number") from None
        name, address = parseaddr(sender or DEFAULT_SENDER)
        if "@" not in address:
            raise ConfigError("SMTP_FROM must be an email address, e.g. TenantAtlas <alerts@example.com>")
        return cls(host=parts.hostname, port=port, use_tls=parts.scheme == "smtps", starttls=starttls,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   sender=formataddr((name, address)), ca_file=ca_file)

    @classmethod
    def from_environ(cls, environ=None) -> MailSettings | None:
        environ = os.environ if environ is None else environ
        url = environ.get("SMTP_URL", "").strip()
        if not url:
            return None
        return cls.from_url(url, environ.get("SMTP_FROM") or None, environ.get("SMTP_CA_BUNDLE") or None)


def build_message(settings: MailSettings, to: str | Iterable[str], subject: str, text: str,
                  html: str | None = None) -> EmailMessage:
    recipients = [to] if isinstance(to, str) else list(to)
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(recipients)
    # One line: a newline in a subject taken from data (a policy name) would start a header.
    message["Subject"] = " ".join(subject.split())[:250]
    message["Message-ID"] = make_msgid(domain=parseaddr(settings.sender)[1].rsplit("@", 1)[-1])
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def send_mail(to: str | Iterable[str], subject: str, text: str, html: str | None = None, *,
              settings: MailSettings | None = None, attempts: int = DEFAULT_ATTEMPTS,
              sleep: Callable[[float], None] = time.sleep) -> str:
    """Send one message; returns its Message-ID. Raises MailError when it could not be sent."""
    settings = settings or MailSettings.from_environ()
    if settings is None:
        raise MailError("Email is not configured (SMTP_URL is not set).", permanent=True)
    message = build_message(settings, to, subject, text, html)
    for attempt in range(1, attempts + 1):
        try:
            _deliver(settings, message)
            return message["Message-ID"]
        except smtplib.SMTPResponseException as error:
            permanent = 500 <= error.smtp_code < 600
            failure = MailError(f"The mail server refused the message: {error.smtp_code} "
                                f"{_text(error.smtp_error)}", permanent=permanent)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            failure = MailError("The mail server refused the recipient(s).",
                                permanent=all(500 <= code < 600 for code in codes))
        except (smtplib.SMTPException, OSError) as error:  # refused, dropped, timed out, TLS failed
            failure = MailError(f"The mail server could not be reached: {type(error).__name__}: {error}")
        if failure.permanent or attempt == attempts:
            raise failure
        sleep(min(2 ** attempt, 30))
    raise AssertionError("unreachable")


def _deliver(settings: MailSettings, message: EmailMessage) -> None:
    context = ssl.create_default_context(cafile=settings.ca_file)
    if settings.use_tls:
        connection = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
    else:
        connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with connection:
        if settings.starttls:
            connection.starttls(context=context)
        if settings.username:
            connection.login(settings.username, settings.password or "")
        connection.send_message(message)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
