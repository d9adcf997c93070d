"""/admin/t/<tenant_ext>/backups, /restore-runs, /schedules: backups, restores and their schedules.

Routes of the tenant blueprint (app.web.tenant.tenant_pages), under its before_request guard: every
record below is looked up inside the current tenant, and a restore's target among the
current workspace's tenants, so another workspace's id is the same 404 at every step.
Thin views: the engines (app.backup, app.restore) and their services do the work.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import aliased

from app.access import require_role
from app.audit import record_audit
from app.backup.engine import BACKUP_FAMILIES
from app.backup.runner import request_backup
from app.backup.schedules import backup_blocker, next_run_after, schedule_blocker
from app.extensions import db
from app.web.forms import ActionForm, BackupScheduleForm, RestorePlanForm
from wtforms.fields import SelectChoice
from app.graph.families import FAMILIES_BY_KEY
from app.web.listing import paginate, read_list_params, search_clause
from app.models import (BackupItem, BackupPayload, BackupSchedule, BackupSet, Policy, PolicyVersion,
                     RestoreItem, RestoreRun, Tenant, User)
from app.restore import service as restores
from app.web.tenant.tenant_pages import _one_or_404, _tenant, bp
from app.validation import parse_guid

FAMILY_LABELS = {family.key: family.label for family in (*BACKUP_FAMILIES, FAMILIES_BY_KEY["groups"])}


def family_label(key: str) -> str:
    return FAMILY_LABELS.get(key, key)


# --- backup sets -------------------------------------------------------------------------------------------


def backup_sets_page(tenant_id: int):
    triggered_by = aliased(User)
    sortable = {"started": BackupSet.started_at, "name": BackupSet.name, "status": BackupSet.status,
                "items": BackupSet.item_count}
    params = read_list_params(sortable, "started", default_direction="desc")
    statement = (select(BackupSet, triggered_by.name).outerjoin(triggered_by, triggered_by.id == BackupSet.triggered_by_user_id)
                 .where(BackupSet.tenant_id == tenant_id))
    if params.q:
        statement = statement.where(search_clause([BackupSet.name, BackupSet.status], params.q))
    return paginate(statement, params, sortable, tiebreak=BackupSet.id.desc(), scalars=False)


@bp.get("/backups")
def backups():
    tenant = _tenant()
    active = db.session.scalar(select(BackupSet).where(BackupSet.tenant_id == tenant.id,
                                                       BackupSet.status.in_(("pending", "running"))))
    return render_template("tenant/backups.html", page=backup_sets_page(tenant.id), active=active,
                           families=BACKUP_FAMILIES, action_form=ActionForm(), blocker=backup_blocker(tenant))


@bp.post("/backups/run")
def backup_now():
    require_role("operator", "start a backup")
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    tenant = _tenant()
    blocker = backup_blocker(tenant)
    if blocker:
        flash(blocker, "warning")
        return redirect(url_for(".backups"))
    families = [key for key in request.form.getlist("family") if key in FAMILY_LABELS]
    backup_set, created = request_backup(tenant, "user", current_user.id, families or None)
    if created:
        record_audit("backup.start", actor=current_user, tenant=tenant, target_type="backup_set",
                     target_id=backup_set.id, target_name=backup_set.name,
                     details={"before": None, "after": {"status": backup_set.status,
                                                        "families": families or "all"}})
        flash("Backup started; this page follows it.", "success")
    else:
        flash("A backup of this tenant is already under way; here it is.", "info")
    db.session.commit()
    return redirect(url_for(".backup_set_detail", backup_set_id=backup_set.id))


def backup_items_page(backup_set: BackupSet):
    sortable = {"name": BackupItem.display_name, "family": BackupItem.family}
    families = tuple(FAMILY_LABELS)
    params = read_list_params(sortable, "name", filters={"family": ("", *families)}, filter_defaults={"family": ""})
    statement = select(BackupItem).where(BackupItem.tenant_id == backup_set.tenant_id,
                                         BackupItem.id.in_(backup_set.item_ids or [0]))
    if params.filters["family"]:
        statement = statement.where(BackupItem.family == params.filters["family"])
    if params.q:
        statement = statement.where(search_clause([BackupItem.display_name, BackupItem.graph_id], params.q))
    return paginate(statement, params, sortable, tiebreak=BackupItem.id)


@bp.get("/backups/<int:backup_set_id>")
def backup_set_detail(backup_set_id: int):
    backup_set = _one_or_404(BackupSet, backup_set_id)
    triggered_by = db.session.get(User, backup_set.triggered_by_user_id) if backup_set.triggered_by_user_id else None
    return render_template("tenant/backup_set.html", backup_set=backup_set, page=backup_items_page(backup_set),
                           family_label=family_label, families=FAMILY_LABELS, triggered_by=triggered_by)


@bp.get("/backups/<int:backup_set_id>/items/<int:backup_item_id>")
def backup_item_detail(backup_set_id: int, backup_item_id: int):
    backup_set = _one_or_404(BackupSet, backup_set_id)
    if backup_item_id not in set(backup_set.item_ids):
        abort(404)
    item = _one_or_404(BackupItem, backup_item_id)
    payload = db.session.scalar(select(BackupPayload).where(BackupPayload.id == item.payload_id,
                                                            BackupPayload.tenant_id == item.tenant_id))
    return render_template("tenant/backup_item.html", backup_set=backup_set, item=item, payload=payload,
                           body=json.dumps(payload.body, indent=2, sort_keys=True, ensure_ascii=False),
                           family_label=family_label)


# --- the restore wizard -----------------------------------------------------------------------------------


def restore_targets(tenant: Tenant) -> list[Tenant]:
    """The tenants a restore may write to: the active tenants of the current workspace (this one first)."""
    rows = db.session.scalars(select(Tenant).where(Tenant.workspace_id == tenant.workspace_id,
                                                   Tenant.status == "active").order_by(Tenant.name).limit(5000)).all()
    return sorted(rows, key=lambda row: row.id != tenant.id)


def _restore_form(tenant: Tenant, families: set[str]) -> RestorePlanForm:
    """The wizard's form; a target that cannot take these families (not connected, permissions
    missing) is listed disabled with the reason, rather than refused after the submit."""
    form = RestorePlanForm()
    choices, usable = [], []
    for target in restore_targets(tenant):
        label = target.name + (" (this tenant)" if target.id == tenant.id else "")
        shortfall = restores.target_shortfall(target, families) if families else None
        if shortfall:
            choices.append(SelectChoice(str(target.external_id), f"{label}: {shortfall}", {"disabled": True}))
        else:
            choices.append(SelectChoice(str(target.external_id), label))
            usable.append(str(target.external_id))
    form.target_tenant.choices = choices
    if request.method == "GET" and not form.target_tenant.data and usable:  # offered first; never assumed for a POST
        form.target_tenant.data = str(tenant.external_id) if str(tenant.external_id) in usable else usable[0]
    return form


def _chosen_target(form: RestorePlanForm, tenant: Tenant) -> Tenant:
    """The target named by the form: a tenant of the current workspace, or the same 404 as any foreign id."""
    external_id = parse_guid(form.target_tenant.data or "")
    target = db.session.scalar(select(Tenant).where(Tenant.workspace_id == tenant.workspace_id,
                                                    Tenant.external_id == external_id)) if external_id else None
    if target is None:
        abort(404)
    return target


def _item_ids() -> list[int]:
    ids = []
    for value in request.form.getlist("item")[:restores.MAX_ITEMS + 1]:
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            abort(400, "An item of the selection is not an item id.")
        ids.append(int(value))
    return ids


@bp.route("/backups/<int:backup_set_id>/restore", methods=["GET", "POST"])
def restore_from_backup(backup_set_id: int):
    backup_set = _one_or_404(BackupSet, backup_set_id)
    require_role("manager", "restore")
    tenant = _tenant()
    items = restores.restorable_items(backup_set, list(backup_set.item_ids))
    form = _restore_form(tenant, {item.family for item in items})
    chosen = set()
    if request.method == "POST":
        chosen = set(_item_ids())
        strangers = chosen - {item.id for item in items}
        if strangers:
            flash(f"{len(strangers)} chosen item(s) are not in this backup set (or cannot be restored): "
                  "choose from its list below.", "danger")
            chosen -= strangers
        elif form.validate_on_submit():
            target = _chosen_target(form, tenant)
            try:
                run = restores.start_restore_from_backup(backup_set, sorted(chosen), target,
                                                         mode=form.assignment_mode.data, user=current_user)
            except restores.RestoreRefused as refused:
                db.session.rollback()
                flash(str(refused), "danger")
            else:
                db.session.commit()
                flash("Planning the restore: nothing is written until you execute the plan.", "success")
                return redirect(url_for(".restore_run_detail", tenant_ext=str(target.external_id),
                                        restore_run_id=run.id))
    status = 400 if request.method == "POST" else 200
    return render_template("tenant/restore_wizard.html", backup_set=backup_set, items=items, form=form,
                           chosen=chosen, family_label=family_label, version=None), status


@bp.route("/policies/<int:policy_id>/versions/<int:version_id>/restore", methods=["GET", "POST"])
def restore_version(policy_id: int, version_id: int):
    policy = _one_or_404(Policy, policy_id)
    version = db.session.scalar(select(PolicyVersion).where(PolicyVersion.id == version_id,
                                                            PolicyVersion.policy_id == policy.id,
                                                            PolicyVersion.tenant_id == policy.tenant_id))
    if version is None:
        abort(404)
    require_role("manager", "restore")
    tenant = _tenant()
    payload_family = db.session.scalar(select(BackupPayload.family).where(
        BackupPayload.id == version.payload_id, BackupPayload.tenant_id == version.tenant_id)) \
        if version.payload_id else None
    form = _restore_form(tenant, {payload_family} if payload_family in FAMILIES_BY_KEY else set())
    if request.method == "POST" and form.validate_on_submit():
        target = _chosen_target(form, tenant)
        try:
            run = restores.start_restore_from_version(version, policy, target, mode=form.assignment_mode.data,
                                                      user=current_user)
        except restores.RestoreRefused as refused:
            db.session.rollback()
            flash(str(refused), "danger")
        else:
            db.session.commit()
            flash("Planning the restore: nothing is written until you execute the plan.", "success")
            return redirect(url_for(".restore_run_detail", tenant_ext=str(target.external_id), restore_run_id=run.id))
    status = 400 if request.method == "POST" else 200
    return render_template("tenant/restore_wizard.html", backup_set=None, items=[], form=form, chosen=set(),
                           family_label=family_label, version=version, policy=policy), status


# --- restore runs ---------------------------------------------------------------------------------------


def restore_runs_page(tenant_id: int):
    requested_by = aliased(User)
    source = aliased(Tenant)
    sortable = {"created": RestoreRun.created_at, "status": RestoreRun.status, "backup": BackupSet.name}
    params = read_list_params(sortable, "created", default_direction="desc")
    statement = (
        select(RestoreRun, BackupSet.name, requested_by.name, source.name)
        .outerjoin(BackupSet, (BackupSet.id == RestoreRun.backup_set_id)
                   & (BackupSet.tenant_id == RestoreRun.source_tenant_id))
        .outerjoin(requested_by, requested_by.id == RestoreRun.requested_by_user_id)
        .join(source, source.id == RestoreRun.source_tenant_id)
        .where(RestoreRun.tenant_id == tenant_id)
    )
    if params.q:
        statement = statement.where(search_clause([BackupSet.name, RestoreRun.status, source.name], params.q))
    return paginate(statement, params, sortable, tiebreak=RestoreRun.id.desc(), scalars=False)


@bp.get("/restore-runs")
def restore_runs():
    return render_template("tenant/restore_runs.html", page=restore_runs_page(_tenant().id))


def restore_items_page(run: RestoreRun):
    sortable = {"position": RestoreItem.position, "name": RestoreItem.display_name, "action": RestoreItem.action,
                "status": RestoreItem.status}
    params = read_list_params(sortable, "position", filters={"action": ("", "create", "update", "skip", "conflict")},
                              filter_defaults={"action": ""})
    statement = select(RestoreItem).where(RestoreItem.tenant_id == run.tenant_id, RestoreItem.restore_run_id == run.id)
    if params.filters["action"]:
        statement = statement.where(RestoreItem.action == params.filters["action"])
    if params.q:
        statement = statement.where(search_clause([RestoreItem.display_name], params.q))
    return paginate(statement, params, sortable, tiebreak=RestoreItem.id)


@bp.get("/restore-runs/<int:restore_run_id>")
def restore_run_detail(restore_run_id: int):
    run = _one_or_404(RestoreRun, restore_run_id)
    source = db.session.get(Tenant, run.source_tenant_id)
    backup_set = db.session.scalar(select(BackupSet).where(BackupSet.id == run.backup_set_id,
                                                           BackupSet.tenant_id == run.source_tenant_id)) \
        if run.backup_set_id else None
    people = {user.id: user for user in db.session.scalars(select(User).where(
        User.id.in_([i for i in (run.requested_by_user_id, run.executed_by_user_id) if i])))}
    version = policy = None
    if run.policy_version_id:
        version = db.session.scalar(select(PolicyVersion).where(PolicyVersion.id == run.policy_version_id,
                                                                PolicyVersion.tenant_id == run.source_tenant_id))
        policy = db.session.scalar(select(Policy).where(Policy.id == version.policy_id,
                                                        Policy.tenant_id == run.source_tenant_id)) if version else None
    write_check = None
    if run.status == "planned":
        try:
            restores.check_target(_tenant(), {family for family in run_families(run)})
        except restores.RestoreRefused as refused:
            write_check = str(refused)
    return render_template("tenant/restore_run.html", run=run, source=source, backup_set=backup_set,
                           requested_by=people.get(run.requested_by_user_id),
                           executed_by=people.get(run.executed_by_user_id), page=restore_items_page(run),
                           family_label=family_label, action_form=ActionForm(), write_check=write_check,
                           version=version, policy=policy, execute_question=execute_question(run, _tenant()))


def execute_question(run: RestoreRun, target: Tenant) -> str | None:
    """What the Execute button asks before writing ("Write 3 creates and 16 updates to Contoso?"),
    or None when the plan writes nothing."""
    actions = (run.summary or {}).get("actions") or {}
    counts = [f"{actions[action]} {action}{'s' if actions[action] != 1 else ''}"
              for action in ("create", "update") if actions.get(action)]
    if not counts:
        return None
    return f"Write {' and '.join(counts)} to {target.name}?"


def run_families(run: RestoreRun) -> set[str]:
    return set(db.session.scalars(select(RestoreItem.family).where(RestoreItem.tenant_id == run.tenant_id,
                                                                   RestoreItem.restore_run_id == run.id).distinct()))


def _restore_action(restore_run_id: int, act, done: str):
    run = _one_or_404(RestoreRun, restore_run_id)
    require_role("manager", "restore")
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    try:
        act(run, current_user)
    except restores.RestoreRefused as refused:
        db.session.rollback()
        flash(str(refused), "warning")
    else:
        db.session.commit()
        flash(done, "success")
    return redirect(url_for(".restore_run_detail", restore_run_id=run.id))


@bp.post("/restore-runs/<int:restore_run_id>/execute")
def restore_execute(restore_run_id: int):
    return _restore_action(restore_run_id, restores.execute, "Restore started; this page follows it.")


@bp.post("/restore-runs/<int:restore_run_id>/cancel")
def restore_cancel(restore_run_id: int):
    return _restore_action(restore_run_id, restores.cancel, "The plan was discarded; nothing was written.")


# --- backup schedules ----------------------------------------------------------------------------------------


@bp.get("/schedules")
def schedules():
    tenant = _tenant()
    rows = db.session.scalars(select(BackupSchedule).where(BackupSchedule.tenant_id == tenant.id)
                              .order_by(BackupSchedule.name).limit(500)).all()
    return render_template("tenant/schedules.html", schedules=rows, action_form=ActionForm(),
                           blocker=schedule_blocker(tenant))


def _schedule_snapshot(schedule: BackupSchedule) -> dict:
    return {"name": schedule.name, "frequency": schedule.frequency, "retention_days": schedule.retention_days,
            "keep_last": schedule.keep_last, "is_enabled": schedule.is_enabled}


def _name_taken(name: str, except_id: int | None = None) -> bool:
    statement = select(BackupSchedule.id).where(BackupSchedule.tenant_id == _tenant().id,
                                                BackupSchedule.name == name)
    if except_id is not None:
        statement = statement.where(BackupSchedule.id != except_id)
    return db.session.scalar(statement) is not None


@bp.route("/schedules/new", methods=["GET", "POST"])
def schedule_new():
    require_role("operator", "manage backup schedules")
    form = BackupScheduleForm()
    if form.validate_on_submit():
        if _name_taken(form.name.data):
            form.name.errors.append("A schedule with this name exists already.")
        else:
            tenant = _tenant()
            schedule = BackupSchedule(tenant_id=tenant.id, name=form.name.data, frequency=form.frequency.data,
                                      retention_days=form.retention_days.data, keep_last=form.keep_last.data,
                                      is_enabled=form.is_enabled.data)
            schedule.next_run_at = next_run_after(datetime.now(timezone.utc), schedule.frequency)
            db.session.add(schedule)
            db.session.flush()
            record_audit("schedule.create", actor=current_user, tenant=tenant, target_type="backup_schedule",
                         target_id=schedule.id, target_name=schedule.name,
                         details={"before": None, "after": _schedule_snapshot(schedule)})
            db.session.commit()
            flash(f"Schedule {schedule.name} created.", "success")
            return redirect(url_for(".schedules"))
    status = 400 if request.method == "POST" else 200
    return render_template("tenant/schedule_form.html", form=form, schedule=None), status


@bp.route("/schedules/<int:schedule_id>/edit", methods=["GET", "POST"])
def schedule_edit(schedule_id: int):
    schedule = _one_or_404(BackupSchedule, schedule_id)
    require_role("operator", "manage backup schedules")
    form = BackupScheduleForm(obj=schedule)
    # Enable and Disable are their own actions: an edit form opened before a Disable must not undo it.
    del form.is_enabled
    if form.validate_on_submit():
        shorter = (form.retention_days.data < schedule.retention_days or form.keep_last.data < schedule.keep_last)
        if _name_taken(form.name.data, except_id=schedule.id):
            form.name.errors.append("A schedule with this name exists already.")
        elif shorter and not g.workspace_access.allows("manager"):
            # Shortening retention deletes restore points, which only a manager may use or give up.
            form.retention_days.errors.append("Only a manager or higher can shorten how long backups are kept.")
        else:
            before = _schedule_snapshot(schedule)
            form.populate_obj(schedule)
            if schedule.frequency != before["frequency"] or schedule.next_run_at is None:
                schedule.next_run_at = next_run_after(datetime.now(timezone.utc), schedule.frequency)
            record_audit("schedule.update", actor=current_user, tenant=_tenant(), target_type="backup_schedule",
                         target_id=schedule.id, target_name=schedule.name,
                         details={"before": before, "after": _schedule_snapshot(schedule)})
            db.session.commit()
            flash(f"Schedule {schedule.name} saved.", "success")
            return redirect(url_for(".schedules"))
    status = 400 if request.method == "POST" else 200
    return render_template("tenant/schedule_form.html", form=form, schedule=schedule), status


def _set_schedule_enabled(schedule_id: int, enabled: bool):
    """Enable or disable, as asked: never flips, so a stale tab's "Disable" cannot turn a schedule back on."""
    schedule = _one_or_404(BackupSchedule, schedule_id)
    require_role("operator", "enable or disable backup schedules")
    state = "enabled" if enabled else "disabled"
    if schedule.is_enabled == enabled:
        flash(f"Schedule {schedule.name} is already {state}; nothing changed.", "info")
        return redirect(url_for(".schedules"))
    before = _schedule_snapshot(schedule)
    schedule.is_enabled = enabled
    now = datetime.now(timezone.utc)
    if enabled and (schedule.next_run_at is None or schedule.next_run_at < now):
        schedule.next_run_at = next_run_after(now, schedule.frequency)
    record_audit("schedule.enable" if enabled else "schedule.disable", actor=current_user,
                 tenant=_tenant(), target_type="backup_schedule", target_id=schedule.id, target_name=schedule.name,
                 details={"before": before, "after": _schedule_snapshot(schedule)})
    db.session.commit()
    flash(f"Schedule {schedule.name} {state}.", "success")
    return redirect(url_for(".schedules"))


@bp.post("/schedules/<int:schedule_id>/enable")
def schedule_enable(schedule_id: int):
    return _set_schedule_enabled(schedule_id, True)


@bp.post("/schedules/<int:schedule_id>/disable")
def schedule_disable(schedule_id: int):
    return _set_schedule_enabled(schedule_id, False)


# How a run's assignment handling reads in a sentence ("the backup's assignments are …").
ASSIGNMENT_MODE_LABELS = {"keep": "added to the target's own", "replace": "replacing the target's",
                          "skip": "not restored"}


@bp.app_context_processor
def restore_labels():
    return {"assignment_mode_label": ASSIGNMENT_MODE_LABELS.get, "endpoints": current_app.view_functions}
