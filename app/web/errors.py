"""Error pages: a clear message, never a traceback."""
from flask import abort, current_app, g, render_template, request, url_for
from flask_login import AnonymousUserMixin, current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from sqlalchemy.exc import DataError, OperationalError

from app.extensions import db
from app.isolation import WorkspaceMismatchError

SHOWN_DESCRIPTIONS = {400, 403, 409, 429}

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Check what you entered and try again."),
    403: ("Not allowed", "Your role in this workspace does not allow this action."),
    404: ("Not found", "There is nothing here, or it is not yours to see."),
    405: ("Method not allowed", "This page does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than this console accepts."),
    429: ("Too many attempts", "Too many attempts in a short time. Wait a minute, then try again."),
    500: ("Something went wrong", "The error has been logged. Try again in a moment."),
    503: ("Unavailable", "The console cannot reach its database right now. Try again in a moment."),
}


# Shown inside the console's layout to a signed-in user; every other code (404 above all:
# it must not vary with who asks) keeps the bare page.
IN_LAYOUT = {400, 403}


def render_error(code: int, message: str | None = None):
    title, default = MESSAGES.get(code, ("Error", "Something went wrong."))
    if request.accept_mimetypes.best == "application/json":
        return {"error": title, "message": message or default}, code
    if code in IN_LAYOUT and current_user and current_user.is_authenticated:
        try:
            return render_template("error_in_layout.html", code=code, title=title, message=message or default,
                                   back_url=_back_url()), code
        except Exception:  # the layout needs the database; the bare page does not
            db.session.rollback()
            current_app.logger.exception("Error page in the layout failed; serving the bare one")
    return render_template("error.html", code=code, title=title, message=message or default), code


def _back_url() -> str:
    referrer = request.referrer or ""
    if referrer.startswith(request.host_url) and referrer != request.url:
        return referrer
    return url_for("shell.home")


def init_app(app):
    @app.before_request
    def reject_nul_bytes():
        # PostgreSQL text cannot hold NUL; refuse such input up front with a 400, in one place.
        values = [request.path, *request.args.values()]
        if request.method in ("POST", "PUT", "PATCH") and request.mimetype in (
            "application/x-www-form-urlencoded", "multipart/form-data"
        ):
            values.extend(request.form.values())
        if any("\x00" in value for value in values):
            abort(400, "The request contains a NUL character, which is never valid here.")

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_error(400, "Your form expired or was not sent from this console. Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(error):
        # A description our code wrote for the user (abort(403, "...")) is shown; a 404
        # never carries one, so it cannot leak what exists.
        custom = error.description != type(error).description
        message = error.description if custom and error.code in SHOWN_DESCRIPTIONS else None
        return render_error(error.code or 500, message)

    @app.errorhandler(WorkspaceMismatchError)
    def workspace_mismatch(error):
        db.session.rollback()
        app.logger.warning("Refused write on %s %s: %s", request.method, request.path, error)
        return render_error(400, "This change would put a record in a workspace other than its tenant's, "
                                 "so it was refused.")

    @app.errorhandler(DataError)
    def invalid_value(error):
        # A value PostgreSQL cannot take (out of range, bad encoding) that slipped past validation.
        db.session.rollback()
        app.logger.warning("Invalid value on %s %s: %s", request.method, request.path, error.orig)
        return render_error(400, "A value in the request is out of range or malformed.")

    @app.errorhandler(OperationalError)
    def database_unavailable(error):
        db.session.rollback()
        app.logger.error("Database unavailable on %s %s: %s", request.method, request.path, error.orig)
        # Rendering asks Flask-Login for the user, which would query the database again.
        g._login_user = AnonymousUserMixin()
        return render_error(503)

    @app.errorhandler(Exception)
    def unhandled(error):
        db.session.rollback()
        app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        return render_error(500)
