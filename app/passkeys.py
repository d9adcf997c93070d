"""Passkeys (WebAuthn): filled in by the passkey slice."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("passkeys", __name__)


def passkeys_enabled() -> bool:
    return False
