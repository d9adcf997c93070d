"""Security headers on every response."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user

# No inline script or style anywhere: everything the pages run or style with is a file
# under /static. Bootstrap's CSS draws some icons from data: URIs. Forms post to this app
# only; "Connect" answers a form with a redirect to the identity platform's admin consent
# page, and browsers check form-action on that redirect too, so its origin is allowed.
_POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "form-action 'self' {login_origin}",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
)


def content_security_policy(login_url: str) -> str:
    parts = urlsplit(login_url)
    return "; ".join(_POLICY).format(login_origin=f"{parts.scheme}://{parts.netloc}")


CONTENT_SECURITY_POLICY = content_security_policy("https://login.microsoftonline.com")


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, except that a static file never sends the cookie back.

    A permanent session is re-sent with every response to keep it alive. A stylesheet
    requested before a page that switched workspace, and answered after it, would send
    the old cookie back and switch the workspace back (seen as a 404 on the next tenant page).
    """

    def should_set_cookie(self, app, session) -> bool:
        if request.endpoint == "static" and not session.modified:
            return False
        return super().should_set_cookie(app, session)


def init_app(app: Flask) -> None:
    hsts = app.config["TENANTATLAS_ENV"] != "development"
    app.session_interface = SessionInterface()

    @app.after_request
    def add_security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy",
                           content_security_policy(current_app.extensions["graph_settings"].login_url))
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if hsts:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.endpoint != "static" and current_user and current_user.is_authenticated:
            # Pages about customers' tenants are never kept in shared or browser caches.
            headers["Cache-Control"] = "no-store"
        return response
