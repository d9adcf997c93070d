"""Sign in with Microsoft (OpenID Connect): filled in by the OIDC slice."""
from __future__ import annotations

from flask import Blueprint, current_app

bp = Blueprint("oidc", __name__)


def microsoft_sign_in_enabled() -> bool:
    return current_app.extensions.get("oidc_settings") is not None


@bp.get("/login/microsoft")
def start():
    return "", 404
