"""/admin/w/<slug>/alerts: alert rules (managers), their events and delivery log, snoozes."""
from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import and_, func, or_, select
from sqlalchemy import delete as delete_rows  # the view below is named delete
from sqlalchemy.exc import IntegrityError
from wtforms.fields import SelectChoice

from app.access import parse_external_id, require_role
from app.alerts.rules import describe_rule
from app.audit import record_audit
from app.extensions import db
from app.wording import counted
from app.web.forms import ActionForm
from app.models import Tenant
from app.web.operations_forms import AlertRuleForm
from app.operations_models import AlertDelivery, AlertEvent, AlertRule, AlertSnooze, Tag
from app.web.workspace.workspace_area import workspace_blueprint

bp = workspace_blueprint("alerts", __name__, "/alerts")
SNOOZE_HOURS = (1, 4, 24, 72, 168)


def _workspace_id() -> int:
    return g.workspace_access.workspace.id


def rule_or_404(rule_id: int) -> AlertRule:
    rule = db.session.scalar(select(AlertRule).where(AlertRule.id == rule_id, AlertRule.workspace_id == _workspace_id()))
    if rule is None:
        abort(404)
    return rule


def _form() -> AlertRuleForm:
    form = AlertRuleForm()
    tags = [SelectChoice(str(tag_id), name) for tag_id, name in db.session.execute(
        select(Tag.id, Tag.name).where(Tag.workspace_id == _workspace_id()).order_by(Tag.name))]
    form.include_tags.choices = [SelectChoice("", "Every tenant")] + tags
    form.exclude_tags.choices = [SelectChoice("", "No exception")] + tags
    return form


def rules_overview(workspace_id: int):
    sent = (select(func.count()).where(AlertEvent.rule_id == AlertRule.id, AlertEvent.status == "sent")
            .correlate(AlertRule).scalar_subquery())
    failed = (select(func.count()).where(AlertEvent.rule_id == AlertRule.id, AlertEvent.status == "failed")
              .correlate(AlertRule).scalar_subquery())
    snoozed_tenants = (select(func.count()).where(AlertSnooze.rule_id == AlertRule.id,
                                                  AlertSnooze.until > func.now())
                       .correlate(AlertRule).scalar_subquery())
    return db.session.execute(select(AlertRule, sent, failed, snoozed_tenants)
                              .where(AlertRule.workspace_id == workspace_id).order_by(AlertRule.name)).all()


def _index(form: AlertRuleForm, status: int = 200):
    tag_names = dict(db.session.execute(select(Tag.id, Tag.name).where(Tag.workspace_id == _workspace_id())).all())
    return render_template("alerts/index.html", rules=rules_overview(_workspace_id()), form=form,
                           tag_names=tag_names, action_form=ActionForm(), snooze_hours=SNOOZE_HOURS,
                           describe=describe_rule,
                           now=datetime.now(timezone.utc)), status


@bp.get("")
def index():
    return _index(_form())


@bp.post("")
def create():
    require_role("manager", "set up alert rules")
    form = _form()
    if not form.validate_on_submit():
        return _index(form, 400)
    rule = AlertRule(workspace_id=_workspace_id(), name=form.name.data, event=form.event.data,
                     min_severity=form.min_severity.data if form.event.data == "new_finding" else None,
                     threshold=form.threshold.data or 1, channel=form.channel.data, target=form.target.data,
                     include_tag_ids=[int(form.include_tags.data)] if form.include_tags.data else [],
                     exclude_tag_ids=[int(form.exclude_tags.data)] if form.exclude_tags.data else [],
                     signing_secret=secrets.token_hex(32) if form.channel.data == "webhook" else None)
    try:
        with db.session.begin_nested():
            db.session.add(rule)
            db.session.flush()
    except IntegrityError:
        form.name.errors.append("This workspace has an alert rule of that name already.")
        return _index(form, 400)
    record_audit("alert_rule.create", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="alert_rule", target_id=rule.id, target_name=rule.name,
                 details={"before": None, "after": {"event": rule.event, "channel": rule.channel,
                                                    "target": rule.target, "threshold": rule.threshold}})
    db.session.commit()
    flash(f"Alert rule {rule.name} created." + (" Its webhook signing secret is on the rule's page."
                                                if rule.channel == "webhook" else ""), "success")
    return redirect(url_for(".detail", rule_id=rule.id))


@bp.get("/<int:rule_id>")
def detail(rule_id: int):
    rule = rule_or_404(rule_id)
    events = db.session.execute(
        select(AlertEvent, Tenant.name).join(Tenant, and_(Tenant.id == AlertEvent.tenant_id,
                                                          Tenant.workspace_id == rule.workspace_id))
        .where(AlertEvent.rule_id == rule.id, AlertEvent.workspace_id == rule.workspace_id)
        .order_by(AlertEvent.created_at.desc(), AlertEvent.id.desc()).limit(50)).all()
    deliveries: dict[int, list[AlertDelivery]] = {}
    if events:
        for delivery in db.session.scalars(select(AlertDelivery).where(
                AlertDelivery.workspace_id == rule.workspace_id,
                AlertDelivery.alert_event_id.in_([event.id for event, _ in events])).order_by(AlertDelivery.id)):
            deliveries.setdefault(delivery.alert_event_id, []).append(delivery)
    now = datetime.now(timezone.utc)
    return render_template("alerts/detail.html", rule=rule, events=events, deliveries=deliveries,
                           description=describe_rule(rule), hour_labels={h: describe_hours(h) for h in SNOOZE_HOURS},
                           action_form=ActionForm(), snooze_hours=SNOOZE_HOURS, snoozes=tenant_snoozes(rule, now),
                           show_secret=g.workspace_access.allows("manager"), now=now)


def _hours() -> int:
    value = request.form.get("hours", "")
    if value not in {str(h) for h in SNOOZE_HOURS} | {"0"}:
        abort(400, f"Snooze for one of {', '.join(map(str, SNOOZE_HOURS))} hours (or 0 to end a snooze).")
    return int(value)


@bp.post("/<int:rule_id>/snooze")
def snooze(rule_id: int):
    require_role("operator", "snooze alerts")
    rule = rule_or_404(rule_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    hours = _hours()
    before = rule.snoozed_until.isoformat() if rule.snoozed_until else None
    rule.snoozed_until = datetime.now(timezone.utc) + timedelta(hours=hours) if hours else None
    record_audit("alert_rule.snooze", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="alert_rule", target_id=rule.id, target_name=rule.name,
                 details={"before": {"snoozed_until": before},
                          "after": {"snoozed_until": rule.snoozed_until.isoformat() if rule.snoozed_until else None}})
    db.session.commit()
    flash(f"{rule.name} is snoozed for {describe_hours(hours)}." if hours else f"{rule.name} is no longer snoozed.",
          "success")
    return redirect(url_for(".detail", rule_id=rule.id))


@bp.post("/<int:rule_id>/snooze-tenant")
def snooze_tenant(rule_id: int):
    """No alert of this rule about one tenant for a while (the tenant by its Entra id)."""
    require_role("operator", "snooze alerts")
    rule = rule_or_404(rule_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    tenant = find_snoozed_tenant(rule.workspace_id, request.form.get("tenant", ""))
    if tenant is None:  # the same answer for a tenant of another workspace as for none at all
        flash("No tenant of this workspace has that name or tenant id. Give its name as the portfolio shows it, "
              "its tenant id, or the address of one of its pages.", "danger")
        return redirect(url_for(".detail", rule_id=rule.id))
    hours = _hours()
    # One snooze per rule and tenant: a new one replaces it, 0 hours ends it.
    ended = db.session.execute(delete_rows(AlertSnooze).where(
        AlertSnooze.workspace_id == rule.workspace_id, AlertSnooze.tenant_id == tenant.id,
        AlertSnooze.rule_id == rule.id, AlertSnooze.until > datetime.now(timezone.utc))).rowcount
    if hours:
        db.session.add(AlertSnooze(tenant_id=tenant.id, workspace_id=tenant.workspace_id, rule_id=rule.id,
                                   until=datetime.now(timezone.utc) + timedelta(hours=hours)))
    record_audit("alert_rule.snooze_tenant", actor=current_user, tenant=tenant, target_type="alert_rule",
                 target_id=rule.id, target_name=rule.name,
                 details={"before": {"snoozed": bool(ended)}, "after": {"tenant": tenant.name, "hours": hours}})
    db.session.commit()
    if hours:
        flash(f"Alerts of {rule.name} about {tenant.name} are snoozed for {describe_hours(hours)}.", "success")
    else:
        flash(f"Alerts of {rule.name} about {tenant.name} are no longer snoozed." if ended else
              f"Alerts of {rule.name} about {tenant.name} were not snoozed.", "success" if ended else "info")
    return redirect(url_for(".detail", rule_id=rule.id))


GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def find_snoozed_tenant(workspace_id: int, given: str) -> Tenant | None:
    """The workspace's tenant a person named: by tenant id (alone, or inside a pasted page address),
    else by its exact name (case aside) when one tenant has it."""
    given = " ".join(given[:300].split())
    found = GUID.search(given)
    tenant_uuid = parse_external_id(found.group(0)) if found else None
    if tenant_uuid is not None:
        return db.session.scalar(select(Tenant).where(Tenant.external_id == tenant_uuid,
                                                      Tenant.workspace_id == workspace_id))
    if not given:
        return None
    named = db.session.scalars(select(Tenant).where(Tenant.workspace_id == workspace_id,
                                                    func.lower(Tenant.name) == given.lower()).limit(2)).all()
    return named[0] if len(named) == 1 else None


def describe_hours(hours: int) -> str:
    return counted(hours // 24, "day") if hours % 24 == 0 else counted(hours, "hour")


def tenant_snoozes(rule: AlertRule, now: datetime) -> list[tuple[AlertSnooze, Tenant]]:
    """The rule's live snoozes of single tenants (and those of every rule), for its page."""
    return list(db.session.execute(
        select(AlertSnooze, Tenant).join(Tenant, and_(Tenant.id == AlertSnooze.tenant_id,
                                                      Tenant.workspace_id == AlertSnooze.workspace_id))
        .where(AlertSnooze.workspace_id == rule.workspace_id, AlertSnooze.until > now,
               or_(AlertSnooze.rule_id == rule.id, AlertSnooze.rule_id.is_(None)))
        .order_by(AlertSnooze.until, AlertSnooze.id).limit(200)).all())


@bp.post("/<int:rule_id>/delete")
def delete(rule_id: int):
    require_role("manager", "delete alert rules")
    rule = rule_or_404(rule_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    record_audit("alert_rule.delete", actor=current_user, workspace=g.workspace_access.workspace,
                 target_type="alert_rule", target_id=rule.id, target_name=rule.name,
                 details={"before": {"event": rule.event, "target": rule.target}, "after": None})
    db.session.delete(rule)
    db.session.commit()
    flash(f"Alert rule {rule.name} deleted.", "success")
    return redirect(url_for(".index"))
