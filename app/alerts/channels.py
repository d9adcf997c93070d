"""Where alerts go: the one module that validates alert targets and speaks to webhooks.

Email goes through app.mail (SMTP_URL). A webhook gets a JSON POST through httpx with:

- `X-TenantAtlas-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body with the rule's
  signing secret, so the receiver can check it came from this TenantAtlas;
- `X-TenantAtlas-Event` and `X-TenantAtlas-Delivery` (the alert event id: a receiver can
  drop a repeated delivery);
- a timeout per attempt, and up to WEBHOOK_ATTEMPTS attempts with exponential backoff on
  a connection failure, a timeout, 429 or 5xx (a 4xx other than 429 is final). Each
  attempt is reported to `on_attempt` (the delivery log). The sleep is injectable.

TARGETS. A webhook URL must be https (http only in development or with
ALERT_WEBHOOK_ALLOW_HTTP), must not carry
credentials, and its host must resolve only to public addresses: loopback, private,
link-local, multicast, reserved and unspecified addresses are refused (server-side request
forgery), unless ALERT_WEBHOOK_ALLOW_PRIVATE is set (a test server, an internal receiver
the operator chose). The check runs when the rule is saved and again before each delivery
(a name may resolve elsewhere later). Email targets are addresses checked by app.validation.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx
from flask import current_app, has_app_context

from app import validation

WEBHOOK_TIMEOUT = 10.0
WEBHOOK_ATTEMPTS = 3
MAX_EMAIL_RECIPIENTS = 20
SIGNATURE_HEADER = "X-TenantAtlas-Signature"


class TargetRefused(ValueError):
    """The target cannot be used; the message says why."""


def _config(name: str, default=None):
    return current_app.config.get(name, default) if has_app_context() else default


def private_addresses_allowed() -> bool:
    return bool(_config("ALERT_WEBHOOK_ALLOW_PRIVATE", False))


def http_allowed() -> bool:
    """Plain http only in development, or where the operator allows it (ALERT_WEBHOOK_ALLOW_HTTP)."""
    return _config("TENANTATLAS_ENV", "production") == "development" or bool(_config("ALERT_WEBHOOK_ALLOW_HTTP"))


def validate_target(channel: str, target: str, *, resolve: Callable[[str], list[str]] | None = None) -> str:
    target = (target or "").strip()
    if channel == "email":
        addresses = [part.strip() for part in target.split(",") if part.strip()]
        if not addresses:
            raise TargetRefused("Give at least one email address.")
        if len(addresses) > MAX_EMAIL_RECIPIENTS:
            raise TargetRefused(f"At most {MAX_EMAIL_RECIPIENTS} addresses.")
        try:
            return ", ".join(validation.validate_email(address) for address in addresses)
        except validation.ValidationError as error:
            raise TargetRefused(str(error)) from None
    if channel != "webhook":
        raise TargetRefused("Unknown channel.")
    return validate_webhook_url(target, resolve=resolve)


def _resolve(host: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)})
    except socket.gaierror:
        raise TargetRefused(f"The host {host[:80]} does not resolve.") from None


def validate_webhook_url(url: str, *, resolve: Callable[[str], list[str]] | None = None) -> str:
    if len(url) > 1000:
        raise TargetRefused("A webhook URL can be at most 1000 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("That is not a URL.") from None
    allowed = ("https", "http") if http_allowed() else ("https",)
    if parts.scheme not in allowed:
        raise TargetRefused("A webhook URL must be https://." if "http" not in allowed
                            else "A webhook URL must be http:// or https://.")
    if not parts.hostname:
        raise TargetRefused("A webhook URL needs a host.")
    if parts.username or parts.password:
        raise TargetRefused("A webhook URL must not carry a user name or password (the signature authenticates).")
    del port
    if not private_addresses_allowed():
        for address in (resolve or _resolve)(parts.hostname):
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise TargetRefused(f"{parts.hostname[:80]} is an internal address ({ip}); webhooks go to public "
                                    "hosts only (the installation's operator can allow internal receivers).")
    return url


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Attempt:
    number: int
    ok: bool
    status_code: int | None
    error: str | None


def post_webhook(url: str, secret: str, event: str, delivery_id: int, payload: dict[str, Any], *,
                 attempts: int = WEBHOOK_ATTEMPTS, timeout: float = WEBHOOK_TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep, on_attempt: Callable[[Attempt], None] | None = None,
                 transport: httpx.BaseTransport | None = None) -> bool:
    """POST the payload, signed; retried with backoff. True when the receiver answered 2xx."""
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               "X-TenantAtlas-Event": event, "X-TenantAtlas-Delivery": str(delivery_id),
               "User-Agent": "TenantAtlas-Alerts/1"}
    with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client:
        for number in range(1, attempts + 1):
            retry = True
            try:
                validate_webhook_url(url)  # again: the name may resolve elsewhere now
                response = client.post(url, content=body, headers=headers)
                ok = 200 <= response.status_code < 300
                retry = response.status_code == 429 or response.status_code >= 500
                attempt = Attempt(number, ok, response.status_code,
                                  None if ok else f"The receiver answered {response.status_code}.")
            except TargetRefused as refused:
                attempt, retry = Attempt(number, False, None, str(refused)[:500]), False
            except httpx.HTTPError as error:
                attempt = Attempt(number, False, None, f"{type(error).__name__}: {error}"[:500])
            if on_attempt:
                on_attempt(attempt)
            if attempt.ok:
                return True
            if not retry or number == attempts:
                return False
            sleep(min(2 ** number, 60))
    return False
