"""/admin/w/<slug>/findings: every tenant's findings in one list, and its CSV.

Filters: severity, kind, tag, baseline, status. The page and the CSV are built by one
query function (`workspace_findings`), so they always agree.
"""
from __future__ import annotations

from flask import g, render_template
from sqlalchemy import and_, func, select

from app.web.csv_export import FINDING_CSV_HEADER, csv_response, finding_csv_row, sorted_for_export
from app.extensions import db
from app.web.listing import paginate, read_list_params, search_clause
from app.models import FINDING_STATUSES, SEVERITIES, Finding, Tenant
from app.operations_models import Baseline, Tag, TenantTag
from app.web.workspace.workspace_area import workspace_blueprint

bp = workspace_blueprint("findings", __name__)

KINDS = ("drift", "backup", "sync", "permission", "connection")


def filter_choices(workspace_id: int) -> dict:
    tags = db.session.execute(select(Tag.id, Tag.name).where(Tag.workspace_id == workspace_id).order_by(Tag.name)).all()
    baselines = db.session.execute(select(Baseline.id, Baseline.name).where(Baseline.workspace_id == workspace_id)
                                   .order_by(Baseline.name)).all()
    return {"tags": tags, "baselines": baselines}


def workspace_findings(workspace_id: int, choices: dict):
    """(params, statement, sortable): the filtered findings of the workspace, with tenant and baseline names."""
    severity_rank = func.array_position(list(SEVERITIES), Finding.severity)
    sortable = {"severity": severity_rank, "detected": Finding.detected_at, "tenant": Tenant.name,
                "title": Finding.title, "status": Finding.status, "kind": Finding.kind}
    params = read_list_params(sortable, "severity", default_direction="desc", filters={
        "severity": ("",) + SEVERITIES, "status": ("", "all") + FINDING_STATUSES, "kind": ("",) + KINDS,
        "tag": ("",) + tuple(str(tag_id) for tag_id, _ in choices["tags"]),
        "baseline": ("",) + tuple(str(baseline_id) for baseline_id, _ in choices["baselines"])},
        filter_defaults={"severity": "", "status": "open", "kind": "", "tag": "", "baseline": ""})
    statement = (select(Finding, Tenant.name, Tenant.external_id, Baseline.name)
                 .join(Tenant, and_(Tenant.id == Finding.tenant_id, Tenant.workspace_id == workspace_id))
                 .outerjoin(Baseline, and_(Baseline.id == Finding.baseline_id, Baseline.workspace_id == workspace_id))
                 .where(Finding.workspace_id == workspace_id))
    chosen = params.filters
    if chosen["severity"]:
        statement = statement.where(Finding.severity == chosen["severity"])
    if chosen["status"] not in ("", "all"):
        statement = statement.where(Finding.status == chosen["status"])
    if chosen["kind"]:
        statement = statement.where(Finding.kind == chosen["kind"])
    if chosen["tag"]:
        statement = statement.where(Finding.tenant_id.in_(select(TenantTag.tenant_id).where(
            TenantTag.workspace_id == workspace_id, TenantTag.tag_id == int(chosen["tag"]))))
    if chosen["baseline"]:
        statement = statement.where(Finding.baseline_id == int(chosen["baseline"]))
    if params.q:
        statement = statement.where(search_clause([Finding.title, Tenant.name], params.q))
    return params, statement, sortable


@bp.get("/findings")
def index():
    workspace_id = g.workspace_access.workspace.id
    choices = filter_choices(workspace_id)
    params, statement, sortable = workspace_findings(workspace_id, choices)
    page = paginate(statement, params, sortable, tiebreak=Finding.id, scalars=False)
    return render_template("findings/index.html", page=page, choices=choices, severities=SEVERITIES,
                           statuses=FINDING_STATUSES, kinds=KINDS)


@bp.get("/findings.csv")
def export():
    workspace = g.workspace_access.workspace
    params, statement, sortable = workspace_findings(workspace.id, filter_choices(workspace.id))
    def rows():
        for row in db.session.execute(sorted_for_export(statement, sortable, params, Finding.id)):
            yield finding_csv_row(*row)

    return csv_response(f"findings-{workspace.slug}.csv", FINDING_CSV_HEADER, rows)
