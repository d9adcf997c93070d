"""/admin/w/<slug>/baselines: build, edit and assign baselines; the drift matrix.

Views are thin: building, editing and comparing live in app.drift.baselines; evaluation
after a change is queued as jobs (app.jobs.enqueue_evaluation), never run in the request.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.exc import IntegrityError
from wtforms.fields import SelectChoice

from app.access import parse_external_id, require_role
from app.audit import record_audit
from app.drift.baselines import (BACKUP_SOURCE_STATUSES, POLICY_FAMILIES, BuildRefused, EditRefused, baseline_prefix,
                              build_from_backup, build_from_tenant, edit_policy, hollow_policies,
                              policy_items_of, policy_kind_label)
from app.extensions import db
from app.wording import counted
from app.web.forms import ActionForm
from app.jobs import enqueue_evaluation
from app.web.listing import ListParams, Page, search_clause
from app.models import BackupItem, BackupSet, Finding, Policy, Tenant
from app.web.operations_forms import AssignBaselineForm, BaselineFromBackupForm, BaselineFromTenantForm
from app.operations_models import Baseline, BaselineAssignment, BaselinePolicy, BaselineVersion, Tag, TenantTag
from app.web.workspace.workspace_area import workspace_blueprint

bp = workspace_blueprint("baselines", __name__, "/baselines")

MAX_GOLDEN_CHOICES = 5000


def _workspace_id() -> int:
    return g.workspace_access.workspace.id


def baseline_or_404(baseline_id: int) -> Baseline:
    baseline = db.session.scalar(select(Baseline).where(Baseline.id == baseline_id,
                                                        Baseline.workspace_id == _workspace_id()))
    if baseline is None:
        abort(404)
    return baseline


def baselines_overview(workspace_id: int):
    """Each baseline with its policy count, tenants and tags assigned and open drift findings, in one statement."""
    policies = (select(func.count()).where(BaselinePolicy.baseline_id == Baseline.id).correlate(Baseline)
                .scalar_subquery())

    def assigned(column):
        return (select(func.count(column)).where(BaselineAssignment.baseline_id == Baseline.id).correlate(Baseline)
                .scalar_subquery())
    open_findings = (select(func.count()).where(Finding.baseline_id == Baseline.id, Finding.workspace_id == workspace_id,
                                                Finding.status == "open").correlate(Baseline).scalar_subquery())
    return db.session.execute(select(Baseline, policies, assigned(BaselineAssignment.tenant_id),
                                     assigned(BaselineAssignment.tag_id), open_findings)
                              .where(Baseline.workspace_id == workspace_id).order_by(Baseline.name)).all()


def golden_choices(workspace_id: int) -> list[tuple[str, str]]:
    """Active tenants that hold policies (a baseline is built from them), by name."""
    has_policies = select(Policy.id).where(Policy.tenant_id == Tenant.id).limit(1).exists()
    rows = db.session.execute(select(Tenant.external_id, Tenant.name).where(
        Tenant.workspace_id == workspace_id, Tenant.status == "active", has_policies)
        .order_by(Tenant.name).limit(MAX_GOLDEN_CHOICES)).all()
    return [SelectChoice(str(external_id), name) for external_id, name in rows]


def _index(form: BaselineFromTenantForm, status: int = 200):
    return render_template("baselines/index.html", baselines=baselines_overview(_workspace_id()), form=form), status


def _build_form() -> BaselineFromTenantForm:
    form = BaselineFromTenantForm()
    form.tenant.choices = golden_choices(_workspace_id())
    return form


@bp.get("")
def index():
    return _index(_build_form())


@bp.post("")
def create():
    require_role("manager", "build baselines")
    form = _build_form()
    if not form.validate_on_submit():
        return _index(form, 400)
    tenant = db.session.scalar(select(Tenant).where(Tenant.external_id == parse_external_id(form.tenant.data),
                                                    Tenant.workspace_id == _workspace_id()))
    if tenant is None:
        abort(404)
    try:
        with db.session.begin_nested():
            baseline = build_from_tenant(_workspace_id(), form.name.data, tenant, current_user.id,
                                         severity=form.severity.data, report_extra=form.report_extra.data)
    except IntegrityError:
        form.name.errors.append("This workspace has a baseline of that name already.")
        return _index(form, 400)
    record_audit("baseline.create", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="baseline", target_id=baseline.id, target_name=baseline.name,
                 details={"before": None, "after": {"name": baseline.name, "built_from": tenant.name,
                                                    "policies": len(baseline.policies)}})
    db.session.commit()
    flash(f"Baseline {baseline.name} built from {tenant.name} ({counted(len(baseline.policies), 'policy', 'policies')}). "
          "Assign it to tenants or a tag.", "success")
    return redirect(url_for(".detail", baseline_id=baseline.id))


# --- building from a backup set --------------------------------------------------------------------------

MAX_BACKUP_SET_CHOICES = 50  # the latest sets of a tenant; older ones are rarely a baseline's source
MAX_BACKUP_ITEMS = 5000


def backup_tenant_choices(workspace_id: int) -> list[tuple[str, str]]:
    """Tenants of the workspace with a backup a baseline can be built from, by name."""
    has_backup = select(BackupSet.id).where(BackupSet.tenant_id == Tenant.id,
                                            BackupSet.status.in_(BACKUP_SOURCE_STATUSES)).limit(1).exists()
    rows = db.session.execute(select(Tenant.external_id, Tenant.name).where(
        Tenant.workspace_id == workspace_id, has_backup).order_by(Tenant.name).limit(MAX_GOLDEN_CHOICES)).all()
    return [SelectChoice(str(external_id), name) for external_id, name in rows]


def backup_sets_of(tenant: Tenant) -> list[BackupSet]:
    return list(db.session.scalars(select(BackupSet).where(
        BackupSet.tenant_id == tenant.id, BackupSet.workspace_id == tenant.workspace_id,
        BackupSet.status.in_(BACKUP_SOURCE_STATUSES))
        .order_by(BackupSet.started_at.desc().nulls_last(), BackupSet.id.desc()).limit(MAX_BACKUP_SET_CHOICES)))


def backup_set_of_workspace(value: str | None) -> tuple[BackupSet, Tenant]:
    """The backup set a request names, and its tenant: 400 when the value is no id, the same
    404 for another workspace's set as for one that does not exist."""
    value = (value or "").strip()
    if not value:
        abort(400, "Choose a backup set to build the baseline from.")
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        abort(400, "The backup set is not a backup set id.")
    row = db.session.execute(select(BackupSet, Tenant).join(Tenant, and_(
        Tenant.id == BackupSet.tenant_id, Tenant.workspace_id == BackupSet.workspace_id))
        .where(BackupSet.id == int(value), BackupSet.workspace_id == _workspace_id())).first()
    if row is None:
        abort(404)
    return row[0], row[1]


def _from_backup(form: BaselineFromBackupForm, backup_set: BackupSet | None = None, tenant: Tenant | None = None,
                 chosen: set[int] | frozenset = frozenset(), status: int = 200):
    if tenant is None and request.args.get("tenant"):
        tenant = db.session.scalar(select(Tenant).where(Tenant.external_id == parse_external_id(request.args["tenant"]),
                                                        Tenant.workspace_id == _workspace_id()))
        if tenant is None:
            abort(404)
    items = (db.session.execute(policy_items_of(backup_set).order_by(BackupItem.display_name, BackupItem.id)
                                .limit(MAX_BACKUP_ITEMS)).all() if backup_set is not None else [])
    return render_template(
        "baselines/from_backup.html", form=form, tenant=tenant, backup_set=backup_set, items=items, chosen=chosen,
        tenants=backup_tenant_choices(_workspace_id()) if backup_set is None else [],
        backup_sets=backup_sets_of(tenant) if tenant is not None and backup_set is None else [],
        family_labels={key: family.label for key, family in POLICY_FAMILIES.items()},
        usable=backup_set is None or backup_set.status in BACKUP_SOURCE_STATUSES), status


@bp.get("/from-backup")
def from_backup():
    """Pick a tenant, one of its backups, then every policy of it or some (any member may look;
    building is for managers, as from a golden tenant)."""
    if request.args.get("backup_set"):
        backup_set, tenant = backup_set_of_workspace(request.args.get("backup_set"))
        return _from_backup(BaselineFromBackupForm(), backup_set, tenant)
    return _from_backup(BaselineFromBackupForm())


def _chosen_items() -> list[int]:
    ids = []
    for value in request.form.getlist("item")[:MAX_BACKUP_ITEMS + 1]:
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            abort(400, "An item of the selection is not an item id.")
        ids.append(int(value))
    return ids


@bp.post("/from-backup")
def create_from_backup():
    require_role("manager", "build baselines")
    backup_set, tenant = backup_set_of_workspace(request.form.get("backup_set"))
    form = BaselineFromBackupForm()
    chosen = _chosen_items()
    if not form.validate_on_submit():
        return _from_backup(form, backup_set, tenant, set(chosen), 400)
    if form.scope.data == "all" and chosen:
        # Ticked boxes with "every policy" chosen: which one was meant is unknown, so build nothing.
        form.scope.errors = [*form.scope.errors, (
            f"{len(chosen)} {'policy is' if len(chosen) == 1 else 'policies are'} ticked but "
            "“Every policy of the backup set” is chosen: choose “Only the policies ticked below”, "
            "or untick them to take every policy.")]
        return _from_backup(form, backup_set, tenant, set(chosen), 400)
    try:
        with db.session.begin_nested():
            baseline = build_from_backup(_workspace_id(), form.name.data, backup_set, tenant, current_user.id,
                                         item_ids=chosen if form.scope.data == "chosen" else None,
                                         severity=form.severity.data, report_extra=form.report_extra.data)
    except BuildRefused as refused:
        form.scope.errors = [*form.scope.errors, str(refused)]
        return _from_backup(form, backup_set, tenant, set(chosen), 400)
    except IntegrityError:
        form.name.errors = [*form.name.errors, "This workspace has a baseline of that name already."]
        return _from_backup(form, backup_set, tenant, set(chosen), 400)
    record_audit("baseline.create", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="baseline", target_id=baseline.id, target_name=baseline.name,
                 details={"before": None, "after": {"name": baseline.name, "built_from": tenant.name,
                                                    "backup_set": backup_set.id, "backup_set_name": backup_set.name,
                                                    "policies": len(baseline.policies)}})
    db.session.commit()
    flash(f"Baseline {baseline.name} built from backup {backup_set.name} of {tenant.name} "
          f"({counted(len(baseline.policies), 'policy', 'policies')}). Assign it to tenants or a tag.", "success")
    hollow = hollow_policies(baseline.policies)
    if hollow:
        names = ", ".join(f"“{name}”" for name in hollow[:10]) + (f" and {len(hollow) - 10} more" if len(hollow) > 10 else "")
        flash(f"{len(hollow)} {'policy' if len(hollow) == 1 else 'policies'} of this backup "
              f"{'holds' if len(hollow) == 1 else 'hold'} no settings or no known platform (an incomplete backup "
              f"payload?): {names}. {'It expects' if len(hollow) == 1 else 'They expect'} next to nothing: drop "
              f"{'it' if len(hollow) == 1 else 'them'} below, or build again from a complete backup.", "warning")
    return redirect(url_for(".detail", baseline_id=baseline.id))


# --- one baseline -----------------------------------------------------------------------------------------


def assignments_of(baseline: Baseline):
    """(assignment, tenant name, tenant external id, tag) rows of the baseline, in one statement."""
    return db.session.execute(
        select(BaselineAssignment, Tenant.name, Tenant.external_id, Tag)
        .outerjoin(Tenant, and_(Tenant.id == BaselineAssignment.tenant_id, Tenant.workspace_id == baseline.workspace_id))
        .outerjoin(Tag, and_(Tag.id == BaselineAssignment.tag_id, Tag.workspace_id == baseline.workspace_id))
        .where(BaselineAssignment.baseline_id == baseline.id, BaselineAssignment.workspace_id == baseline.workspace_id)
        .order_by(Tag.name.nulls_last(), Tenant.name)).all()


def assign_choices(workspace_id: int) -> list[tuple[str, str]]:
    tags = db.session.execute(select(Tag.id, Tag.name).where(Tag.workspace_id == workspace_id).order_by(Tag.name)).all()
    tenants = db.session.execute(select(Tenant.external_id, Tenant.name).where(
        Tenant.workspace_id == workspace_id, Tenant.status == "active").order_by(Tenant.name)
        .limit(MAX_GOLDEN_CHOICES)).all()
    return ([SelectChoice(f"tag:{tag_id}", f"Tag: {name}") for tag_id, name in tags]
            + [SelectChoice(f"tenant:{external_id}", f"Tenant: {name}") for external_id, name in tenants])


def _detail(baseline: Baseline, assign_form: AssignBaselineForm, status: int = 200):
    versions = db.session.scalars(select(BaselineVersion).where(
        BaselineVersion.baseline_id == baseline.id, BaselineVersion.workspace_id == baseline.workspace_id)
        .order_by(BaselineVersion.version.desc()).limit(20)).all()
    return render_template("baselines/detail.html", baseline=baseline, assignments=assignments_of(baseline),
                           versions=versions, assign_form=assign_form, action_form=ActionForm(),
                           policy_kind_label=policy_kind_label), status


def _assign_form() -> AssignBaselineForm:
    form = AssignBaselineForm()
    form.target.choices = assign_choices(_workspace_id())
    return form


@bp.get("/<int:baseline_id>")
def detail(baseline_id: int):
    return _detail(baseline_or_404(baseline_id), _assign_form())


def tenants_of_baseline(baseline: Baseline):
    """Select of the active tenants the baseline applies to (directly or through a tag)."""
    direct = select(BaselineAssignment.tenant_id).where(BaselineAssignment.baseline_id == baseline.id,
                                                        BaselineAssignment.tenant_id.is_not(None))
    tagged = (select(TenantTag.tenant_id).join(BaselineAssignment, and_(
        BaselineAssignment.tag_id == TenantTag.tag_id, BaselineAssignment.workspace_id == TenantTag.workspace_id))
        .where(BaselineAssignment.baseline_id == baseline.id))
    return select(Tenant).where(Tenant.workspace_id == baseline.workspace_id, Tenant.status == "active",
                                or_(Tenant.id.in_(direct), Tenant.id.in_(tagged)))


def queue_evaluations(tenant_ids) -> int:
    queued = 0
    for tenant_id in tenant_ids:
        enqueue_evaluation(tenant_id, _workspace_id())
        queued += 1
    return queued


@bp.post("/<int:baseline_id>/assign")
def assign(baseline_id: int):
    require_role("manager", "assign baselines")
    baseline = baseline_or_404(baseline_id)
    form = _assign_form()
    if not form.validate_on_submit():
        return _detail(baseline, form, 400)
    kind, _, value = form.target.data.partition(":")
    assignment = BaselineAssignment(workspace_id=baseline.workspace_id, baseline_id=baseline.id)
    if kind == "tag":
        tag = db.session.scalar(select(Tag).where(Tag.id == int(value), Tag.workspace_id == baseline.workspace_id))
        if tag is None:
            abort(404)
        assignment.tag_id, label = tag.id, f"tag {tag.name}"
    else:
        tenant = db.session.scalar(select(Tenant).where(Tenant.external_id == parse_external_id(value),
                                                        Tenant.workspace_id == baseline.workspace_id))
        if tenant is None:
            abort(404)
        assignment.tenant_id, label = tenant.id, tenant.name
    try:
        with db.session.begin_nested():
            db.session.add(assignment)
    except IntegrityError:
        flash(f"{baseline.name} is assigned to {label} already.", "info")
        return redirect(url_for(".detail", baseline_id=baseline.id))
    record_audit("baseline.assign", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="baseline", target_id=baseline.id, target_name=baseline.name,
                 details={"before": None, "after": {"assigned_to": label}})
    queued = queue_evaluations(db.session.scalars(tenants_of_baseline(baseline).with_only_columns(Tenant.id)))
    db.session.commit()
    flash(f"{baseline.name} assigned to {label}; {counted(queued, 'tenant is', 'tenants are')} being compared with it.", "success")
    return redirect(url_for(".detail", baseline_id=baseline.id))


@bp.post("/<int:baseline_id>/assignments/<int:assignment_id>/remove")
def unassign(baseline_id: int, assignment_id: int):
    require_role("manager", "assign baselines")
    baseline = baseline_or_404(baseline_id)
    assignment = db.session.scalar(select(BaselineAssignment).where(
        BaselineAssignment.id == assignment_id, BaselineAssignment.baseline_id == baseline.id,
        BaselineAssignment.workspace_id == baseline.workspace_id))
    if assignment is None or not ActionForm().validate_on_submit():
        abort(404 if assignment is None else 400)
    affected = list(db.session.scalars(tenants_of_baseline(baseline).with_only_columns(Tenant.id)))
    db.session.delete(assignment)
    record_audit("baseline.unassign", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="baseline", target_id=baseline.id, target_name=baseline.name,
                 details={"before": {"assignment": assignment_id}, "after": None})
    queue_evaluations(affected)
    db.session.commit()
    flash("Assignment removed; its tenants are evaluated again.", "success")
    return redirect(url_for(".detail", baseline_id=baseline.id))


EDIT_ACTIONS = ("drop_policy", "drop_setting", "any_value", "exact_value")


@bp.post("/<int:baseline_id>/policies/<int:baseline_policy_id>/edit")
def edit(baseline_id: int, baseline_policy_id: int):
    require_role("manager", "edit baselines")
    baseline = baseline_or_404(baseline_id)
    item = db.session.scalar(select(BaselinePolicy).where(BaselinePolicy.id == baseline_policy_id,
                                                          BaselinePolicy.baseline_id == baseline.id,
                                                          BaselinePolicy.workspace_id == baseline.workspace_id))
    if item is None:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    action = request.form.get("action", "")
    if action not in EDIT_ACTIONS:
        abort(400, f"Unknown change {action[:40]!r}; one of {', '.join(EDIT_ACTIONS)}.")
    key = request.form.get("key")
    if key is not None and len(key) > 1000:
        abort(400, "That setting key is too long to be one of this baseline's.")
    try:
        change = edit_policy(baseline, item, action, key, current_user.id)
    except EditRefused as refused:
        flash(str(refused), "warning")
        return redirect(url_for(".detail", baseline_id=baseline.id))
    record_audit("baseline.edit", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="baseline", target_id=baseline.id, target_name=baseline.name,
                 details={"before": {"version": baseline.version - 1},
                          "after": {"version": baseline.version, "change": change}})
    queue_evaluations(db.session.scalars(tenants_of_baseline(baseline).with_only_columns(Tenant.id)))
    db.session.commit()
    flash(f"{change}: {baseline.name} is now version {baseline.version}.", "success")
    return redirect(url_for(".detail", baseline_id=baseline.id) + f"#policy-{baseline_policy_id}"
                    if action != "drop_policy" else url_for(".detail", baseline_id=baseline.id))


@bp.post("/<int:baseline_id>/evaluate")
def evaluate(baseline_id: int):
    require_role("operator", "evaluate baselines")
    baseline = baseline_or_404(baseline_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    queued = queue_evaluations(db.session.scalars(tenants_of_baseline(baseline).with_only_columns(Tenant.id)))
    record_audit("baseline.evaluate", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="baseline", target_id=baseline.id, target_name=baseline.name,
                 details={"before": None, "after": {"tenants_queued": queued}})
    db.session.commit()
    flash(f"{counted(queued, 'tenant', 'tenants')} queued for comparison with {baseline.name}.", "success")
    return redirect(url_for(".matrix", baseline_id=baseline.id))


@bp.post("/<int:baseline_id>/delete")
def delete(baseline_id: int):
    require_role("manager", "delete baselines")
    baseline = baseline_or_404(baseline_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    record_audit("baseline.delete", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="baseline", target_id=baseline.id, target_name=baseline.name,
                 details={"before": {"name": baseline.name, "version": baseline.version}, "after": None})
    db.session.delete(baseline)  # its policies, versions, assignments and drift findings go with it
    db.session.commit()
    flash(f"Baseline {baseline.name} deleted with its drift findings.", "success")
    return redirect(url_for(".index"))


# --- the drift matrix -------------------------------------------------------------------------------------

MATRIX_TENANTS_PER_PAGE = 25


@dataclass
class Cell:
    state: str  # compliant, deviating (value: the tenant's), accepted, missing (no matching policy)
    value: str = ""


def matrix_rows(baseline: Baseline) -> list[tuple[BaselinePolicy, str]]:
    rows = []
    for item in baseline.policies:
        for key in sorted(set(item.settings) | set(item.any_value)):
            rows.append((item, key))
    return rows


def matrix_tenants(baseline: Baseline, q: str):
    """Select of (id, name, external_id, never_read) of the baseline's active tenants matching `q`:
    only the columns the matrix draws, so sorting the page does not carry whole tenant rows.
    never_read: never connected or never synced, the portfolio's "not checked"."""
    never_read = Tenant.nothing_read.label("never_read")
    tenants = tenants_of_baseline(baseline).with_only_columns(Tenant.id, Tenant.name, Tenant.external_id, never_read)
    if q:
        tenants = tenants.where(search_clause([Tenant.name, Tenant.primary_domain, cast(Tenant.external_id, String)], q))
    return tenants


def matrix_page(baseline: Baseline) -> tuple[Page, dict]:
    """One page of the baseline's tenants (by name) and their cells, in two statements: the page
    with the number of tenants (a window count over the same scan: no second pass over every
    tenant), and the page's open drift findings of this baseline (four short columns each).
    A page number past the end costs one count more, then shows the last page."""
    try:
        page_no = max(1, min(int(request.args.get("page", 1)), 1_000_000))
    except ValueError:
        page_no = 1
    q = " ".join(request.args.get("q", "").split())[:200]
    tenants = matrix_tenants(baseline, q)
    params = ListParams(q=q, sort="name", page=page_no, per_page=MATRIX_TENANTS_PER_PAGE,
                        filters={"show": "all" if request.args.get("show") == "all" else ""})

    def fetch(number: int) -> list:
        # Whether a tenant has any finding of this baseline (resolved ones too) is asked for the
        # page's rows only, outside the sorted scan: a finding proves an evaluation took place.
        rows = (tenants.add_columns(func.count().over().label("total")).order_by(Tenant.name, Tenant.id)
                .limit(MATRIX_TENANTS_PER_PAGE).offset((number - 1) * MATRIX_TENANTS_PER_PAGE).subquery())
        compared = (select(Finding.id).where(Finding.baseline_id == baseline.id, Finding.tenant_id == rows.c.id,
                                             Finding.workspace_id == baseline.workspace_id)
                    .limit(1).exists().label("compared"))
        return db.session.execute(select(rows, compared).order_by(rows.c.name, rows.c.id)).all()

    items = fetch(page_no)
    if items:
        total = items[0].total
    else:
        total = db.session.scalar(select(func.count()).select_from(tenants.subquery()))
        params.page = max(1, -(-total // MATRIX_TENANTS_PER_PAGE))
        items = fetch(params.page) if total and params.page != page_no else []
    page = Page(items=items, total=total, params=params)
    findings = db.session.execute(select(
        Finding.tenant_id, Finding.subject_key, Finding.status, Finding.detail["actualShown"].astext,
        Finding.detail["baselineVersion"].astext)
        .where(Finding.baseline_id == baseline.id, Finding.tenant_id.in_([t.id for t in items]),
               Finding.workspace_id == baseline.workspace_id, Finding.status != "resolved")).all() if items else []
    prefix = baseline_prefix(baseline.id)
    cells: dict = {}
    # Unevaluated: no finding of this baseline ever, and nothing ever read from the tenant. An
    # evaluation of a tenant with no synced policy finds every baseline policy missing, so such a
    # tenant without findings was never compared: its ✓ would be a guess.
    for tenant in items:
        if tenant.never_read and not tenant.compared:
            cells[tenant.id] = NOT_EVALUATED
    for tenant_id, key, status, actual, version in findings:
        if version and version.isdigit() and int(version) < baseline.version:
            # Its findings were computed against an older version: the current one is pending.
            cells[("compared", tenant_id)] = min(int(version), cells.get(("compared", tenant_id), int(version)))
        parts = key.removeprefix(prefix).split(":", 2)
        state = "accepted" if status == "accepted" else "deviating"
        if parts[0] == "setting" and len(parts) == 3:
            cells[(tenant_id, int(parts[1]), parts[2])] = Cell(state, actual or "")
        elif parts[0] == "missing":
            cells[(tenant_id, int(parts[1]))] = Cell("missing" if state == "deviating" else state, "no policy")
    return page, cells


COMPLIANT = Cell("compliant")
NOT_EVALUATED = Cell("not-evaluated")


def matrix_grid(rows: list[tuple[BaselinePolicy, str]], page: Page, cells: dict, show_all: bool):
    """[(baseline policy, setting key, [cell per tenant of the page])]: the rows to draw, computed once.
    Without show=all, only the rows where some tenant differs (a tenant not evaluated yet differs
    from nothing: it is drawn grey in the rows that are shown)."""
    grid = []
    tenant_ids = [tenant.id for tenant in page.items]  # plain ints: no attribute access per cell
    unevaluated = {tenant_id for tenant_id in tenant_ids if cells.get(tenant_id) is NOT_EVALUATED}
    if len(unevaluated) == len(cells) and not show_all:
        return []
    for item, key in rows:
        item_id = item.id
        row = [NOT_EVALUATED if tenant_id in unevaluated
               else cells.get((tenant_id, item_id)) or cells.get((tenant_id, item_id, key)) or COMPLIANT
               for tenant_id in tenant_ids]
        if show_all or any(cell is not COMPLIANT and cell is not NOT_EVALUATED for cell in row):
            grid.append((item, key, row))
    return grid


@bp.get("/<int:baseline_id>/matrix")
def matrix(baseline_id: int):
    """Settings x tenants. By default only the settings that differ somewhere on this page of
    tenants (show=all lists every setting of the baseline)."""
    baseline = baseline_or_404(baseline_id)
    page, cells = matrix_page(baseline)
    show_all = request.args.get("show") == "all"
    rows = matrix_rows(baseline)
    not_evaluated = {tenant.id for tenant in page.items if cells.get(tenant.id) is NOT_EVALUATED}
    compared_with = {tenant.id: cells[("compared", tenant.id)] for tenant in page.items
                     if ("compared", tenant.id) in cells}
    return render_template("baselines/matrix.html", baseline=baseline, page=page,
                           grid=matrix_grid(rows, page, cells, show_all), show_all=show_all,
                           not_evaluated=not_evaluated, compared_with=compared_with,
                           total_settings=len(rows), action_form=ActionForm())
