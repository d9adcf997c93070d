"""GET /healthz: is the app up, and can it reach its database?"""
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import csrf, db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@csrf.exempt
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        current_app.logger.warning("healthz: database unreachable: %s", exc.__class__.__name__)
        return jsonify(status="degraded", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
