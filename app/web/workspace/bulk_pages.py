"""/admin/w/<slug>/bulk: start a bulk action from the portfolio; see each run's per-tenant outcome."""
from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import and_, func, select

from app.access import require_role
from app.audit import record_audit
from app.bulk import BadSelection, ForeignSelection, resolve_selection, start_bulk_run
from app.extensions import db
from app.web.forms import ActionForm
from app.models import Tenant
from app.operations_models import Baseline, BulkRun, BulkRunItem, Tag
from app.web.workspace.portfolio import portfolio_query
from app.web.workspace.workspace_area import workspace_blueprint

bp = workspace_blueprint("bulk", __name__, "/bulk")

# Who may start each action (a bulk action is as strong as doing it tenant by tenant).
REQUIRED_ROLE = {"sync": "operator", "backup": "operator", "add_tag": "operator", "remove_tag": "operator", "assign_baseline": "manager"}


def runs_overview(workspace_id: int):
    """The latest bulk runs with their outcome counts, in one statement."""
    def count(status=None):
        conditions = [BulkRunItem.bulk_run_id == BulkRun.id, BulkRunItem.workspace_id == workspace_id]
        if status:
            conditions.append(BulkRunItem.status == status)
        return select(func.count()).where(*conditions).correlate(BulkRun).scalar_subquery()

    return db.session.execute(select(BulkRun, count(), count("queued"), count("succeeded"), count("skipped"),
                                     count("failed"))
                              .where(BulkRun.workspace_id == workspace_id)
                              .order_by(BulkRun.created_at.desc(), BulkRun.id.desc()).limit(50)).all()


@bp.get("")
def index():
    return render_template("bulk/index.html", runs=runs_overview(g.workspace_access.workspace.id))


def _parameters(workspace_id: int, action: str) -> dict:
    """The action's target (a tag, a baseline) as one of this workspace's, or 404."""
    if action in ("add_tag", "remove_tag"):
        tag_id = _id(request.form.get("tag_id", ""))
        if db.session.scalar(select(Tag.id).where(Tag.id == tag_id, Tag.workspace_id == workspace_id)) is None:
            abort(404)
        return {"tag_id": tag_id}
    if action == "assign_baseline":
        baseline_id = _id(request.form.get("baseline_id", ""))
        if db.session.scalar(select(Baseline.id).where(Baseline.id == baseline_id,
                                                       Baseline.workspace_id == workspace_id)) is None:
            abort(404)
        return {"baseline_id": baseline_id}
    return {}


def _id(value: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) < 19):
        abort(400, "Choose a tag or baseline from the list.")
    return int(value)


@bp.post("")
def start():
    """Selected tenants (`tenant` values), or every tenant the portfolio's filter (the query
    string: q, status, tag) matches when scope=filter."""
    workspace_id = g.workspace_access.workspace.id
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    action = request.form.get("action", "")
    if action not in REQUIRED_ROLE:
        abort(400, "Choose a bulk action.")
    require_role(REQUIRED_ROLE[action], "run this bulk action")
    parameters = _parameters(workspace_id, action)
    if request.form.get("scope") == "filter":
        _params, _statement, _sortable, conditions = portfolio_query(workspace_id)
        tenants = list(db.session.scalars(select(Tenant).where(*conditions).order_by(Tenant.id)
                                          .limit(current_app.config.get("BULK_MAX_TENANTS", 10_000))))
        if not tenants:
            abort(400, "The filter matches no tenant.")
    else:
        try:
            tenants = resolve_selection(workspace_id, request.form.getlist("tenant"))
        except BadSelection as bad:
            abort(400, str(bad))
        except ForeignSelection:
            current_app.logger.info("bulk selection of user %s names a tenant outside workspace %s",
                                    current_user.id, workspace_id)
            abort(404)
    run = start_bulk_run(workspace_id, action, tenants, parameters, current_user.id)
    record_audit("bulk.start", actor=current_user, workspace=g.workspace_access.workspace, target_type="bulk_run",
                 target_id=run.id, target_name=run.label,
                 details={"before": None, "after": {"action": action, "tenants": len(tenants), **parameters}})
    db.session.commit()
    flash(f"{run.label}: queued for {len(tenants)} tenant(s).", "success")
    return redirect(url_for(".detail", bulk_run_id=run.id))


@bp.get("/<int:bulk_run_id>")
def detail(bulk_run_id: int):
    workspace_id = g.workspace_access.workspace.id
    run = db.session.scalar(select(BulkRun).where(BulkRun.id == bulk_run_id, BulkRun.workspace_id == workspace_id))
    if run is None:
        abort(404)
    items = db.session.execute(
        select(BulkRunItem, Tenant.name, Tenant.external_id)
        .join(Tenant, and_(Tenant.id == BulkRunItem.tenant_id, Tenant.workspace_id == workspace_id))
        .where(BulkRunItem.bulk_run_id == run.id, BulkRunItem.workspace_id == workspace_id)
        .order_by(Tenant.name, Tenant.id).limit(10_000)).all()
    return render_template("bulk/detail.html", run=run, items=items)
