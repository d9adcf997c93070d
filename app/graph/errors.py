"""What can go wrong when TenantAtlas talks to Microsoft Graph or the identity platform.

Every error carries a short user-facing ``message`` (shown on run records and tenant
pages) that never holds a token or a secret: texts that come from the network are cut
short and scrubbed of anything that looks like a bearer token or a JWT before they are
kept. ``str(error)`` is that message.
"""
from __future__ import annotations

import re

_MAX_TEXT = 300
# A JWT (three base64url parts, the first two starting with "eyJ": '{"') or a bearer
# credential; neither belongs in a message, even when a server echoes one back.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: object, limit: int = _MAX_TEXT) -> str | None:
    """A server-provided text made safe to show and store: a str, short, no tokens."""
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub("", value)
    text = _JWT.sub("[redacted]", text)
    text = _BEARER.sub("Bearer [redacted]", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or None


class GraphError(Exception):
    """A Graph request failed. ``status`` is the HTTP status (None when no answer came),
    ``code`` Graph's error code (``error.code`` of the body) when it gave one."""

    default_message = "Microsoft Graph request failed"

    def __init__(self, status: int | None = None, code: str | None = None, message: str | None = None):
        self.status = status if isinstance(status, int) else None
        self.code = clean_text(code, 120)
        self.message = clean_text(message) or self.default_message
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class ThrottledError(GraphError):
    """Graph kept answering 429/503 after every retry (or asked for a longer wait than a
    sync should block for). ``retry_after`` is the last wait Graph asked for, in seconds."""

    default_message = "Microsoft Graph is throttling requests for this tenant; try again later"

    def __init__(self, status: int | None = 429, code: str | None = None, message: str | None = None,
                 retry_after: float | None = None):
        super().__init__(status, code, message)
        self.retry_after = retry_after


class PermissionDeniedError(GraphError):
    """A 403: the app lacks a permission (or a licence) in this tenant. ``permission`` is the
    application permission the request needed, when the caller knows it."""

    default_message = "The app is not allowed to read this in the tenant"

    def __init__(self, status: int | None = 403, code: str | None = None, message: str | None = None,
                 permission: str | None = None):
        super().__init__(status, code, message)
        self.permission = permission


class WriteRefusedError(GraphError):
    """Graph refused a write (a 4xx other than 401, 403 and 429: 400 with its error code and
    message, 404, 409, ...): nothing was written. ``code`` and ``message`` are Graph's, for
    "refused by Graph: ..." on the restore's item."""

    default_message = "Microsoft Graph refused the write"


class AmbiguousWriteError(GraphError):
    """A create got no clear answer (a 5xx, a timeout or a connection lost after the request
    went out): Graph may or may not have made the object. It is not sent again, since that
    could make it twice; the caller looks for it (by name) before deciding what to do."""

    default_message = ("Microsoft Graph did not say whether the object was created; "
                       "look for it in the tenant before creating it again")


class ForeignLinkError(GraphError):
    """Graph (or something posing as it) handed out a next/delta link that does not point
    under the configured Graph URL. It is never requested."""

    default_message = "Microsoft Graph returned a link to another host; it was not followed"

    def __init__(self, message: str | None = None):
        super().__init__(None, "foreignLink", message)


class ConsentError(GraphError):
    """No app-only token for the tenant. ``kind`` says why:

    not_consented        the app is known to the tenant but admin consent is missing
                         (AADSTS65001, 500011, 90094, ...)
    app_removed          the app has no service principal in the tenant (consent never
                         granted, or revoked by deleting the enterprise app) or is disabled
                         (AADSTS700016, 7000229, 7000112, ...)
    tenant_not_found     no such tenant in this cloud
    invalid_credentials  the app's own secret or certificate was refused
    unavailable          the identity platform could not be reached or answered 5xx/429
    rejected             any other refusal (conditional access, a malformed request, ...)

    ``aadsts_code`` is the AADSTS number as a string ("AADSTS65001") when Entra gave one;
    ``description`` Entra's error_description, scrubbed and cut short, for logs.
    """

    KINDS = ("not_consented", "app_removed", "tenant_not_found", "invalid_credentials", "unavailable", "rejected")
    MESSAGES = {
        "not_consented": "Admin consent for TenantAtlas is missing or was revoked in this tenant",
        "app_removed": "The TenantAtlas app is not (or no longer) in this tenant, or is disabled; an admin must grant consent",
        "tenant_not_found": "This tenant does not exist in the configured Microsoft cloud",
        "invalid_credentials": "The TenantAtlas app credentials (certificate or secret) were refused",
        "unavailable": "The Microsoft identity platform could not be reached; try again later",
        "rejected": "The Microsoft identity platform refused a token for this tenant",
    }

    def __init__(self, kind: str, aadsts_code: str | None = None, description: str | None = None):
        if kind not in self.KINDS:
            kind = "rejected"
        self.kind = kind
        self.aadsts_code = aadsts_code
        self.description = clean_text(description, 500)
        super().__init__(None, aadsts_code or kind, self.MESSAGES[kind])

    def __repr__(self) -> str:
        return f"ConsentError(kind={self.kind!r}, aadsts_code={self.aadsts_code!r})"
