"""/admin/t/<tenant_ext>: every tenant feature.

One before_request enforces the hard rule (app.access.require_tenant_access);
every query below is scoped by the resolved tenant from its first line, so a
child record of another tenant is simply not found (404).
"""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta, timezone

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.orm import aliased
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from app.access import require_role, require_tenant_access
from app.audit import record_audit
from app.web.csv_export import (AUDIT_CSV_HEADER, FINDING_CSV_HEADER, audit_csv_row, csv_response, finding_csv_row,
                         read_date_range, sorted_for_export)
from app.diffing import snapshot_diff
from app.drift.findings import MAX_NOTE, TRANSITIONS, TriageRefused, triage
from app.extensions import db
from app.web.forms import ActionForm, BackupScheduleForm
from app.web.listing import paginate, read_list_params, search_clause
from app.models import (
    FINDING_STATUSES,
    SEVERITIES,
    AuditLog,
    BackupItem,
    BackupSchedule,
    BackupSet,
    EntraGroup,
    EntraRoleDefinition,
    Finding,
    InventoryItem,
    InventoryLink,
    Policy,
    PolicyVersion,
    RestoreRun,
    SyncRun,
    TenantPermission,
    TenantPin,
    User,
)
from app.graph.families import FAMILIES, permission_features
from app.operations_models import Baseline
from app.web.shell import current_query_suffix
from app.web.workspace.switcher import is_pinned, record_visit
from app.sync.connection import start_consent
from app.sync.runner import request_sync

bp = Blueprint("tenant", __name__, url_prefix="/admin/t/<tenant_ext>")

# The sidebar's sections: (list endpoint, label, Bootstrap icon). Choosing another
# tenant in the switcher while on a section opens the same section there.
SECTIONS = (
    ("tenant.dashboard", "Dashboard", "speedometer2"),
    ("tenant.policies", "Policies", "shield-check"),
    ("tenant.backups", "Backups", "archive"),
    ("tenant.restore_runs", "Restore runs", "arrow-counterclockwise"),
    ("tenant.schedules", "Backup schedules", "calendar-check"),
    ("tenant.inventory", "Inventory", "boxes"),
    ("tenant.groups", "Groups", "people"),
    ("tenant.findings", "Findings", "exclamation-triangle"),
    ("tenant.roles", "Role definitions", "person-badge"),
    ("tenant.sync", "Sync", "arrow-repeat"),
    ("tenant.permissions", "Permissions", "key"),
    ("tenant.audit_log", "Audit log", "journal-text"),
)
# Which section each endpoint belongs to (detail pages map to their list).
SECTION_OF_ENDPOINT = {
    "tenant.policy_detail": "tenant.policies",
    "tenant.policy_diff": "tenant.policies",
    "tenant.backup_set_detail": "tenant.backups",
    "tenant.backup_item_detail": "tenant.backups",
    "tenant.restore_from_backup": "tenant.backups",
    "tenant.restore_version": "tenant.policies",
    "tenant.restore_run_detail": "tenant.restore_runs",
    "tenant.schedule_new": "tenant.schedules",
    "tenant.schedule_edit": "tenant.schedules",
    "tenant.inventory_item_detail": "tenant.inventory",
    "tenant.sync_run_detail": "tenant.sync",
}


def section_endpoint(endpoint: str | None) -> str:
    if endpoint in dict((e, None) for e, _, _ in SECTIONS):
        return endpoint
    return SECTION_OF_ENDPOINT.get(endpoint or "", "tenant.dashboard")


@bp.url_value_preprocessor
def take_tenant_ext(endpoint, values):
    g.tenant_ext = values.pop("tenant_ext", "") if values else ""


@bp.url_defaults
def add_tenant_ext(endpoint, values):
    access = g.get("tenant_access")
    if "tenant_ext" not in values and access is not None:
        values["tenant_ext"] = str(access.tenant.external_id)


@bp.before_request
@login_required
def require_access():
    """The hard rule, for every tenant page (see app.access)."""
    access = require_tenant_access(g.tenant_ext)
    canonical = str(access.tenant.external_id)
    if request.method == "GET" and g.tenant_ext != canonical and request.endpoint != "tenant.trailing_slash":
        # One address per tenant page (an upper-case GUID, say, goes to the lower-case one).
        return redirect(request.full_path.replace(g.tenant_ext, canonical, 1).rstrip("?"), 301)
    if request.method == "GET":
        record_visit(current_user.id, access.tenant)
        db.session.commit()


def _tenant():
    return g.tenant_access.tenant


@bp.get("/", defaults={"rest": ""})
@bp.get("/<path:rest>/", strict_slashes=False)
def trailing_slash(rest: str):
    """A pasted tenant URL with a trailing slash: the canonical page, for whoever may see it.

    require_access has already refused anyone else (the same 404). Only a path that is a
    tenant page once the slashes are gone redirects; anything else is a 404.
    """
    target = url_for(".dashboard") + (f"/{rest.strip('/')}" if rest.strip("/") else "")
    if not request.path.endswith("/") or tenant_page_match(target) is None:
        abort(404)
    return redirect(target + current_query_suffix(), 301)


def tenant_page_match(path: str) -> tuple[str, dict] | None:
    """(endpoint, arguments) when `path` is a tenant page a GET can open, else None."""
    try:
        endpoint, arguments = current_app.url_map.bind("").match(path, method="GET")
    except (HTTPException, RequestRedirect):
        return None
    if not endpoint.startswith("tenant.") or endpoint == "tenant.trailing_slash":
        return None
    return endpoint, arguments


def _one_or_404(model, record_id: int):
    """A record of the current tenant by id, or 404 (another tenant's id is not found)."""
    record = db.session.scalar(select(model).where(model.id == record_id, model.tenant_id == _tenant().id))
    if record is None:
        abort(404)
    return record


# --- dashboard ----------------------------------------------------------------------------------


def dashboard_summary(tenant_id: int) -> dict:
    """All the dashboard's counts in one statement."""
    def count(model, *conditions):
        return select(func.count()).select_from(model).where(model.tenant_id == tenant_id, *conditions).scalar_subquery()

    row = db.session.execute(select(
        count(Policy).label("policies"),
        count(BackupSet).label("backup_sets"),
        count(BackupSchedule, BackupSchedule.is_enabled.is_(True)).label("enabled_schedules"),
        count(InventoryItem).label("inventory_items"),
        count(EntraGroup).label("groups"),
        count(EntraRoleDefinition).label("roles"),
        count(TenantPermission).label("permissions"),
        count(TenantPermission, TenantPermission.status == "missing").label("missing_permissions"),
        *(count(Finding, Finding.status == "open", Finding.severity == severity).label(f"open_{severity}")
          for severity in SEVERITIES),
    )).one()
    return row._asdict()


@bp.get("")
def dashboard():
    tenant = _tenant()
    latest_backup = db.session.scalar(
        select(BackupSet).where(BackupSet.tenant_id == tenant.id)
        .order_by(BackupSet.started_at.desc().nulls_last(), BackupSet.id.desc()).limit(1))
    severity_rank = func.array_position(list(reversed(SEVERITIES)), Finding.severity)
    top_findings = db.session.scalars(
        select(Finding).where(Finding.tenant_id == tenant.id, Finding.status == "open")
        .order_by(severity_rank, Finding.detected_at.desc()).limit(5)).all()
    return render_template("tenant/dashboard.html", summary=dashboard_summary(tenant.id),
                           latest_backup=latest_backup, top_findings=top_findings,
                           pinned=is_pinned(current_user.id, tenant.id), action_form=ActionForm())


# --- pins ------------------------------------------------------------------------------------------


@bp.post("/pin")
def pin():
    tenant = _tenant()
    if tenant.status == "archived":
        flash(f"{tenant.name} is archived; the switcher lists active tenants only, so it cannot be pinned.", "warning")
    elif not is_pinned(current_user.id, tenant.id):
        db.session.add(TenantPin(user_id=current_user.id, tenant_id=tenant.id, workspace_id=tenant.workspace_id))
        record_audit("tenant.pin", actor=current_user, tenant=tenant, target_type="tenant", target_id=tenant.id,
                     target_name=tenant.name, details={"before": {"pinned": False}, "after": {"pinned": True}})
        db.session.commit()
        flash(f"{tenant.name} is pinned to your tenant switcher.", "success")
    return redirect(url_for(".dashboard"))


@bp.post("/unpin")
def unpin():
    tenant = _tenant()
    pin_row = db.session.scalar(select(TenantPin).where(TenantPin.user_id == current_user.id,
                                                        TenantPin.tenant_id == tenant.id))
    if pin_row is not None:
        db.session.delete(pin_row)
        record_audit("tenant.unpin", actor=current_user, tenant=tenant, target_type="tenant", target_id=tenant.id,
                     target_name=tenant.name, details={"before": {"pinned": True}, "after": {"pinned": False}})
        db.session.commit()
        flash(f"{tenant.name} is no longer pinned.", "success")
    return redirect(url_for(".dashboard"))


# --- policies ----------------------------------------------------------------------------------------


def policies_page(tenant_id: int):
    version_count = (select(func.count()).where(PolicyVersion.policy_id == Policy.id)
                     .correlate(Policy).scalar_subquery())
    sortable = {"name": Policy.display_name, "type": Policy.policy_type, "platform": Policy.platform,
                "modified": Policy.last_modified_at, "versions": version_count}
    params = read_list_params(sortable, "name")
    statement = select(Policy, version_count.label("version_count")).where(Policy.tenant_id == tenant_id)
    if params.q:
        statement = statement.where(search_clause([Policy.display_name, Policy.policy_type, Policy.platform],
                                                  params.q))
    return paginate(statement, params, sortable, tiebreak=Policy.id, scalars=False)


@bp.get("/policies")
def policies():
    return render_template("tenant/policies.html", page=policies_page(_tenant().id))


@bp.get("/policies/<int:policy_id>")
def policy_detail(policy_id: int):
    policy = _one_or_404(Policy, policy_id)
    versions = db.session.scalars(
        select(PolicyVersion).where(PolicyVersion.policy_id == policy.id, PolicyVersion.tenant_id == policy.tenant_id)
        .order_by(PolicyVersion.version_number.desc())).all()
    return render_template("tenant/policy_detail.html", policy=policy, versions=versions)


def _version_of(policy: Policy, version_id) -> PolicyVersion:
    try:
        version_id = int(version_id)
    except (TypeError, ValueError):
        abort(404)
    if not 0 < version_id < 2**63:
        abort(404)
    version = db.session.scalar(select(PolicyVersion).where(
        PolicyVersion.id == version_id, PolicyVersion.policy_id == policy.id,
        PolicyVersion.tenant_id == policy.tenant_id))
    if version is None:
        abort(404)
    return version


_GUID_IN_TEXT = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")


def with_target_names(tenant_id: int, rows):
    """Assignment targets are kept by id; show them with the tenant's group and filter names
    (one statement for every id on the page)."""
    ids = {match.lower() for row in rows for text in (row.path, row.left or "", row.right or "")
           for match in _GUID_IN_TEXT.findall(text)}
    if not ids:
        return rows
    names = dict(db.session.execute(
        select(EntraGroup.graph_id, EntraGroup.display_name)
        .where(EntraGroup.tenant_id == tenant_id, EntraGroup.graph_id.in_(ids))
        .union_all(select(InventoryItem.graph_id, InventoryItem.display_name)
                   .where(InventoryItem.tenant_id == tenant_id, InventoryItem.object_type == "assignmentFilters",
                          InventoryItem.graph_id.in_(ids)))).all())
    if not names:
        return rows

    def named(text):
        if text is None:
            return None
        return _GUID_IN_TEXT.sub(lambda m: f"“{names[m.group(0).lower()]}” ({m.group(0)[:8]}…)"
                                 if m.group(0).lower() in names else m.group(0), text)

    return [dataclasses.replace(row, path=named(row.path), left=named(row.left), right=named(row.right))
            for row in rows]


@bp.get("/policies/<int:policy_id>/diff")
def policy_diff(policy_id: int):
    policy = _one_or_404(Policy, policy_id)
    picks = request.args.getlist("pick")
    if len(picks) == 2:  # the checkboxes themselves (the form without script, or with it)
        chosen = picks
    elif "a" in request.args and "b" in request.args and not picks:
        chosen = [request.args["a"], request.args["b"]]
    else:
        abort(400, "Choose two versions to compare.")
    left, right = _version_of(policy, chosen[0]), _version_of(policy, chosen[1])
    if left.id == right.id:
        abort(400, "Choose two different versions to compare.")
    if left.version_number > right.version_number:
        left, right = right, left
    rows = with_target_names(policy.tenant_id, snapshot_diff(left.snapshot, right.snapshot))
    if request.args.get("changes") == "only":
        rows = [row for row in rows if row.status != "same"]
    return render_template("tenant/policy_diff.html", policy=policy, left=left, right=right, rows=rows,
                           changed=sum(1 for row in rows if row.status != "same"))


# --- inventory, groups, roles, permissions --------------------------------------------------------------------


def inventory_object_types(tenant_id: int) -> list[str]:
    """The object types this tenant's inventory holds (the type filter's choices), bounded."""
    return list(db.session.scalars(
        select(InventoryItem.object_type).where(InventoryItem.tenant_id == tenant_id).distinct()
        .order_by(InventoryItem.object_type).limit(100)))


def inventory_page(tenant_id: int, object_types: list[str]):
    sortable = {"name": InventoryItem.display_name, "type": InventoryItem.object_type,
                "last_seen": InventoryItem.last_seen_at}
    params = read_list_params(sortable, "name", filters={"type": ("", *object_types)}, filter_defaults={"type": ""})
    statement = select(InventoryItem).where(InventoryItem.tenant_id == tenant_id)
    if params.filters["type"]:
        statement = statement.where(InventoryItem.object_type == params.filters["type"])
    if params.q:
        statement = statement.where(search_clause([InventoryItem.display_name, InventoryItem.object_type], params.q))
    return paginate(statement, params, sortable, tiebreak=InventoryItem.id)


@bp.get("/inventory")
def inventory():
    object_types = inventory_object_types(_tenant().id)
    return render_template("tenant/inventory.html", page=inventory_page(_tenant().id, object_types),
                           object_types=object_types)


def item_links(item: InventoryItem):
    """The item's links both ways, with the item at the other end, in one statement each way."""
    other = aliased(InventoryItem)
    outgoing = db.session.execute(
        select(InventoryLink, other).join(other, (other.id == InventoryLink.target_item_id)
                                          & (other.tenant_id == InventoryLink.tenant_id))
        .where(InventoryLink.tenant_id == item.tenant_id, InventoryLink.source_item_id == item.id)
        .order_by(InventoryLink.link_type, other.display_name).limit(200)).all()
    incoming = db.session.execute(
        select(InventoryLink, other).join(other, (other.id == InventoryLink.source_item_id)
                                          & (other.tenant_id == InventoryLink.tenant_id))
        .where(InventoryLink.tenant_id == item.tenant_id, InventoryLink.target_item_id == item.id)
        .order_by(InventoryLink.link_type, other.display_name).limit(200)).all()
    return outgoing, incoming


@bp.get("/inventory/<int:item_id>")
def inventory_item_detail(item_id: int):
    item = _one_or_404(InventoryItem, item_id)
    outgoing, incoming = item_links(item)
    return render_template("tenant/inventory_item.html", item=item, outgoing=outgoing, incoming=incoming)


def simple_page(model, sortable: dict, default_sort: str, search_columns, tenant_id: int):
    params = read_list_params(sortable, default_sort)
    statement = select(model).where(model.tenant_id == tenant_id)
    if params.q:
        statement = statement.where(search_clause(search_columns, params.q))
    return paginate(statement, params, sortable, tiebreak=model.id)


@bp.get("/groups")
def groups():
    page = simple_page(EntraGroup, {"name": EntraGroup.display_name, "type": EntraGroup.group_type,
                                    "members": EntraGroup.member_count}, "name",
                       [EntraGroup.display_name, EntraGroup.group_type], _tenant().id)
    return render_template("tenant/groups.html", page=page)


@bp.get("/roles")
def roles():
    page = simple_page(EntraRoleDefinition, {"name": EntraRoleDefinition.display_name,
                                             "built_in": EntraRoleDefinition.is_built_in}, "name",
                       [EntraRoleDefinition.display_name, EntraRoleDefinition.description], _tenant().id)
    return render_template("tenant/roles.html", page=page)


@bp.get("/permissions")
def permissions():
    page = simple_page(TenantPermission, {"name": TenantPermission.permission_name,
                                          "status": TenantPermission.status,
                                          "checked": TenantPermission.checked_at}, "name",
                       [TenantPermission.permission_name], _tenant().id)
    return render_template("tenant/permissions.html", page=page, permission_features=permission_features())


# --- findings ----------------------------------------------------------------------------------------------------


def tenant_findings_query(tenant_id: int):
    """(params, statement, sortable) of the tenant's findings as the query string filters them."""
    severity_rank = func.array_position(list(SEVERITIES), Finding.severity)
    sortable = {"severity": severity_rank, "detected": Finding.detected_at, "title": Finding.title,
                "status": Finding.status, "kind": Finding.kind}
    params = read_list_params(sortable, "severity", default_direction="desc",
                              filters={"severity": ("",) + SEVERITIES, "status": ("", "all") + FINDING_STATUSES},
                              filter_defaults={"severity": "", "status": "open"})
    statement = select(Finding, Policy.display_name).outerjoin(
        Policy, (Policy.id == Finding.policy_id) & (Policy.tenant_id == Finding.tenant_id)
    ).where(Finding.tenant_id == tenant_id)
    if params.filters["severity"]:
        statement = statement.where(Finding.severity == params.filters["severity"])
    if params.filters["status"] not in ("", "all"):
        statement = statement.where(Finding.status == params.filters["status"])
    if params.q:
        statement = statement.where(search_clause([Finding.title, Finding.kind], params.q))
    return params, statement, sortable


def findings_page(tenant_id: int):
    params, statement, sortable = tenant_findings_query(tenant_id)
    return paginate(statement, params, sortable, tiebreak=Finding.id, scalars=False)


@bp.get("/findings.csv")
def findings_csv():
    """The tenant's findings as filtered on its page, in the workspace export's columns."""
    tenant = _tenant()
    params, statement, sortable = tenant_findings_query(tenant.id)
    baseline_names = dict(db.session.execute(select(Baseline.id, Baseline.name).where(
        Baseline.workspace_id == tenant.workspace_id)).all())
    name, external_id = tenant.name, tenant.external_id

    def rows():
        for finding, _policy_name in db.session.execute(sorted_for_export(statement, sortable, params, Finding.id)):
            yield finding_csv_row(finding, name, external_id, baseline_names.get(finding.baseline_id))

    return csv_response(f"findings-{tenant.external_id}.csv", FINDING_CSV_HEADER, rows)


@bp.get("/findings")
def findings():
    return render_template("tenant/findings.html", page=findings_page(_tenant().id), action_form=ActionForm(),
                           severities=SEVERITIES, statuses=FINDING_STATUSES)


MAX_ACKNOWLEDGEMENT_NOTE = MAX_NOTE


def _acceptance_expiry(value: str) -> datetime | None:
    """The accept form's optional expiry (a date, YYYY-MM-DD): the end of that day, UTC."""
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        abort(400, "An acceptance's expiry is a date (YYYY-MM-DD).")
    return day.replace(tzinfo=timezone.utc) + timedelta(days=1)


@bp.post("/findings/<int:finding_id>/<any(acknowledge, accept, resolve, reopen):action>")
def finding_transition(finding_id: int, action: str):
    """Triage (app.drift.findings.triage keeps who, why and when across runs); the view audits it."""
    finding = _one_or_404(Finding, finding_id)
    require_role("operator", "triage findings")
    # An acknowledgement's note, or an acceptance's reason (fields of their own: both forms sit in one row).
    field = {"acknowledge": "note", "accept": "reason"}.get(action)
    note = " ".join(request.form.get(field, "").split()) if field else ""
    if len(note) > MAX_ACKNOWLEDGEMENT_NOTE:
        abort(400, f"A note can be at most {MAX_ACKNOWLEDGEMENT_NOTE} characters; this one has {len(note):,}.")
    until = _acceptance_expiry(request.form.get("until", "")[:20]) if action == "accept" else None
    now = datetime.now(timezone.utc)
    try:
        before = triage(finding, action, by=current_user.name, now=now, note=note, until=until)
    except TriageRefused as refused:
        flash(str(refused), "warning")
    else:
        done = TRANSITIONS[action][2]
        after = {"status": finding.status, **({"note": note} if note else {}),
                 **({"until": until.date().isoformat()} if until else {})}
        record_audit(f"finding.{action}", actor=current_user, tenant=_tenant(), target_type="finding",
                     target_id=finding.id, target_name=finding.title,
                     details={"before": {"status": before}, "after": after})
        db.session.commit()
        flash(f"Finding “{finding.title}” {done}" + (" with your note." if note else "."), "success")
    back = request.form.get("next", "")
    return redirect(back if back.startswith(url_for(".findings")) else url_for(".findings"))


# --- the tenant's audit log -------------------------------------------------------------------------------------


def tenant_audit_query(tenant_id: int):
    """(params, statement, sortable) of the tenant's audit log: search, and a date range (from, to)."""
    actor = aliased(User)
    sortable = {"created_at": AuditLog.created_at, "action": AuditLog.action}
    params = read_list_params(sortable, "created_at", default_direction="desc")
    statement = (select(AuditLog, actor.name).outerjoin(actor, actor.id == AuditLog.actor_user_id)
                 .where(AuditLog.tenant_id == tenant_id))
    if params.q:
        statement = statement.where(search_clause([AuditLog.action, actor.name, AuditLog.target_name], params.q))
    start, end = read_date_range(request.args)
    if start:
        statement = statement.where(AuditLog.created_at >= start)
    if end:
        statement = statement.where(AuditLog.created_at < end)
    return params, statement, sortable


def tenant_audit_page(tenant_id: int):
    params, statement, sortable = tenant_audit_query(tenant_id)
    return paginate(statement, params, sortable, tiebreak=AuditLog.id.desc(), scalars=False)


@bp.get("/audit")
def audit_log():
    return render_template("tenant/audit.html", page=tenant_audit_page(_tenant().id))


@bp.get("/audit.csv")
def audit_log_csv():
    tenant = _tenant()
    params, statement, sortable = tenant_audit_query(tenant.id)
    name = tenant.name

    def rows():
        for entry, actor_name in db.session.execute(sorted_for_export(statement, sortable, params, AuditLog.id.desc())):
            yield audit_csv_row(entry, actor_name, name)

    return csv_response(f"audit-{tenant.external_id}.csv", AUDIT_CSV_HEADER, rows)


# --- the Graph connection and sync -----------------------------------------------------------------------------


def sync_runs_page(tenant_id: int):
    requested_by = aliased(User)
    sortable = {"created": SyncRun.created_at, "status": SyncRun.status}
    params = read_list_params(sortable, "created", default_direction="desc")
    statement = (select(SyncRun, requested_by.name).outerjoin(requested_by, requested_by.id == SyncRun.requested_by_user_id)
                 .where(SyncRun.tenant_id == tenant_id))
    if params.q:
        statement = statement.where(search_clause([SyncRun.status, SyncRun.trigger], params.q))
    return paginate(statement, params, sortable, tiebreak=SyncRun.id.desc(), scalars=False)


@bp.get("/sync")
def sync():
    tenant = _tenant()
    active = db.session.scalar(select(SyncRun).where(SyncRun.tenant_id == tenant.id,
                                                     SyncRun.status.in_(("queued", "running"))))
    return render_template("tenant/sync.html", page=sync_runs_page(tenant.id), active=active,
                           families=FAMILIES, action_form=ActionForm(), graph=current_app.extensions["graph_settings"])


@bp.get("/sync/<int:run_id>")
def sync_run_detail(run_id: int):
    run = _one_or_404(SyncRun, run_id)
    requested_by = db.session.get(User, run.requested_by_user_id) if run.requested_by_user_id else None
    return render_template("tenant/sync_run.html", run=run, families=FAMILIES, requested_by=requested_by)


@bp.post("/sync")
def sync_now():
    require_role("operator", "start a sync")
    tenant = _tenant()
    if tenant.status == "archived":
        flash(f"{tenant.name} is archived; unarchive it to sync again.", "warning")
    elif not tenant.is_connected:
        flash(f"{tenant.name} is not connected. A manager connects it first (Connect, on this page).", "warning")
    else:
        run, created = request_sync(tenant, "user", current_user.id)
        if created:
            record_audit("tenant.sync_requested", actor=current_user, tenant=tenant, target_type="sync_run",
                         target_id=run.id, target_name=f"Sync run {run.id}",
                         details={"before": None, "after": {"sync_run": run.id, "trigger": "user"}})
        db.session.commit()
        flash("Sync queued." if created else f"A sync is already {run.status}; it was not queued twice.",
              "success" if created else "info")
    return redirect(url_for(".sync"))


@bp.post("/sync/resume")
def sync_resume():
    require_role("operator", "resume syncing")
    tenant = _tenant()
    if tenant.status == "archived":
        flash(f"{tenant.name} is archived; unarchive it to sync again.", "warning")
    elif not tenant.is_connected:
        flash(f"{tenant.name} is not connected; a manager connects it first.", "warning")
    elif tenant.sync_paused_at is None:
        flash("Syncing is not paused.", "info")
    else:
        tenant.sync_paused_at, tenant.consecutive_failures = None, 0
        record_audit("tenant.sync_resumed", actor=current_user, tenant=tenant, target_type="tenant",
                     target_id=tenant.id, target_name=tenant.name,
                     details={"before": {"paused": True}, "after": {"paused": False}})
        request_sync(tenant, "user", current_user.id)
        db.session.commit()
        flash("Syncing resumed; a sync is queued.", "success")
    return redirect(url_for(".sync"))


@bp.post("/connect")
def connect():
    require_role("manager", "connect a tenant")
    tenant = _tenant()
    settings = current_app.extensions["graph_settings"]
    if not settings.configured:
        flash("Microsoft Graph is not configured for this installation (GRAPH_CLIENT_ID and a certificate or "
              "secret; see the README).", "danger")
        return redirect(url_for(".sync"))
    if tenant.status == "archived":
        flash(f"{tenant.name} is archived; unarchive it before connecting.", "warning")
        return redirect(url_for(".sync"))
    target = start_consent(tenant, current_user.id, url_for("consent.callback", _external=True))
    record_audit("tenant.connect_started", actor=current_user, tenant=tenant, target_type="tenant",
                 target_id=tenant.id, target_name=tenant.name,
                 details={"before": {"connection": tenant.connection_status},
                          "after": {"admin_consent": "requested"}})
    db.session.commit()
    return redirect(target)


# The backup, restore and schedule pages register on this blueprint.
from app.web.tenant import tenant_backups  # noqa: E402,F401
from app.web.tenant import tenant_backup_files  # noqa: E402,F401
