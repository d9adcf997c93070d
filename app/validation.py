"""Validation of what people type: one place, shared by the web forms and the commands."""
from __future__ import annotations

import functools
import re
import uuid
import zoneinfo

# Every pattern is applied with fullmatch(): a `$` would also match before a final newline,
# so "<guid>\n" would pass as a GUID and then break whatever parses it next.
SLUG_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
DOMAIN_RE = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
MIN_PASSWORD_LENGTH = 10


class ValidationError(ValueError):
    """Input a person can correct; the message says how."""


def parse_database_id(value: str) -> int | None:
    """A row id typed in a URL or carried in a cookie: ASCII digits that fit a bigint, else None.

    str.isdigit() alone is not enough: it accepts "²" (which int() refuses) and other
    scripts' digits (which int() reads as a number nobody typed).
    """
    if value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def validate_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 254 or not EMAIL_RE.fullmatch(email):
        raise ValidationError(f"{email[:60]!r} is not a valid email address.")
    return email


def validate_name(name: str, *, field: str = "Name", max_length: int = 200) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError(f"{field} must not be empty.")
    if len(name) > max_length:
        raise ValidationError(f"{field} must be at most {max_length} characters.")
    return name


def validate_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > 1024:
        raise ValidationError("The password must be at most 1024 characters.")
    return password


def validate_slug(slug: str) -> str:
    slug = (slug or "").strip()
    if not slug or len(slug) > 63 or not SLUG_RE.fullmatch(slug):
        raise ValidationError(
            "A workspace slug uses lower-case letters, digits and single hyphens (at most 63 characters),"
            " e.g. contoso-msp."
        )
    return slug


def validate_domain(domain: str) -> str:
    domain = (domain or "").strip().lower().rstrip(".")
    if not DOMAIN_RE.fullmatch(domain):
        raise ValidationError(f"{domain[:60]!r} is not a valid domain name, e.g. contoso.onmicrosoft.com.")
    return domain


def parse_guid(value: str) -> uuid.UUID | None:
    """A GUID as typed or pasted into a URL: 8-4-4-4-12 hex digits, optionally in braces
    (as PowerShell and the registry print it); anything else, whitespace included, is None."""
    bare = value[1:-1] if value.startswith("{") and value.endswith("}") else value
    return uuid.UUID(bare) if GUID_RE.fullmatch(bare) else None


def parse_tenant_external_id(value: str) -> uuid.UUID:
    """An Entra tenant id: a GUID in its 8-4-4-4-12 form (braces, as some tools copy it, are allowed)."""
    value = (value or "").strip()
    bare = value[1:-1] if value.startswith("{") and value.endswith("}") else value
    if not GUID_RE.fullmatch(bare):
        raise ValidationError(
            f"{value[:60]!r} is not an Entra tenant id (a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47)."
        )
    if uuid.UUID(bare).int == 0:
        raise ValidationError("The all-zero GUID is not a tenant id.")
    return uuid.UUID(bare)


@functools.lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    """Every IANA timezone name zoneinfo knows (the system's tz database, or the tzdata package)."""
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def validate_timezone(name: str) -> str:
    """An IANA timezone name that zoneinfo loads ("Europe/Berlin"); anything else is refused.

    Checked against the known names first (the whole string: "Europe/Berlin\\n" is no name), so
    that no user input reaches the file lookup.
    """
    name = name or ""
    if len(name) > 64 or name not in known_timezones():
        raise ValidationError("Choose a timezone from the list (an IANA name such as Europe/Berlin).")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("This timezone cannot be loaded on this server.") from None
    return name
