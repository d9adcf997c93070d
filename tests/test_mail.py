"""The SMTP client against a real SMTP server on loopback."""
import socket

import pytest

from app.config import ConfigError
from app.mail import MailError, MailSettings, send_mail
from tests.smtp_support import smtp_server, smtp_server_session  # noqa: F401 (fixtures)


def test_a_message_reaches_the_smtp_server_with_sender_recipient_subject_and_body(smtp_server):
    message_id = send_mail("ops@example.test", "Drift in Contoso", "Setting X changed.",
                           settings=smtp_server.settings())
    [mail] = smtp_server.received
    assert mail.recipients == ["ops@example.test"]
    assert mail.sender == "alerts@example.test"
    assert mail.subject == "Drift in Contoso"
    assert mail.text.strip() == "Setting X changed."
    assert mail.message["Message-ID"] == message_id


def test_a_newline_in_a_subject_cannot_add_a_header(smtp_server):
    send_mail("ops@example.test", "Policy\r\nBcc: victim@example.test", "x", settings=smtp_server.settings())
    [mail] = smtp_server.received
    assert mail.message["Bcc"] is None
    assert mail.recipients == ["ops@example.test"]


def test_a_temporary_refusal_is_retried_and_a_permanent_one_is_not(smtp_server):
    smtp_server.recorder.refuse_with = "451 Try again later"
    waits = []
    with pytest.raises(MailError) as refused:
        send_mail("ops@example.test", "s", "t", settings=smtp_server.settings(), attempts=3, sleep=waits.append)
    assert not refused.value.permanent and len(waits) == 2

    smtp_server.recorder.refuse_with = "550 No such user"
    waits.clear()
    with pytest.raises(MailError) as refused:
        send_mail("ops@example.test", "s", "t", settings=smtp_server.settings(), attempts=3, sleep=waits.append)
    assert refused.value.permanent and waits == []
    assert smtp_server.received == []


def test_an_unreachable_server_is_a_mail_error_after_the_retries():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    settings = MailSettings.from_url(f"smtp://127.0.0.1:{port}")
    waits = []
    with pytest.raises(MailError, match="could not be reached"):
        send_mail("ops@example.test", "s", "t", settings=settings, attempts=2, sleep=waits.append)
    assert len(waits) == 1


def test_without_smtp_url_nothing_is_sent_and_the_error_says_so(monkeypatch):
    monkeypatch.delenv("SMTP_URL", raising=False)
    with pytest.raises(MailError, match="not configured") as refused:
        send_mail("ops@example.test", "s", "t")
    assert refused.value.permanent


@pytest.mark.parametrize("url", ["http://mail.example.test", "smtp://", "smtp://host:notaport"])
def test_a_malformed_smtp_url_is_a_configuration_error(url):
    with pytest.raises(ConfigError):
        MailSettings.from_url(url)


def test_the_settings_never_show_the_password():
    settings = MailSettings.from_url("smtp://user:s3cret@mail.example.test:587?starttls=1")
    assert settings.starttls and settings.username == "user" and settings.password == "s3cret"
    assert "s3cret" not in repr(settings)
