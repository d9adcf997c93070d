"""Sending one alert event (in the worker): by email through app.mail, or to a webhook
through app.alerts.channels; every attempt is logged (alert_deliveries)."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from app.extensions import db
from app.mail import MailError, send_mail
from app.operations_models import AlertDelivery, AlertEvent, AlertRule

from .channels import Attempt, post_webhook


def email_text(event: AlertEvent) -> str:
    payload = event.payload or {}
    finding = payload.get("finding") or {}
    lines = [f"{payload.get('title', event.title)}", "",
             f"Tenant: {payload.get('tenant', {}).get('name')} ({payload.get('tenant', {}).get('id')})",
             f"Rule: {payload.get('rule')}"]
    if finding:
        lines.append(f"Severity: {finding.get('severity')} · kind: {finding.get('kind')}")
        detail = finding.get("detail") or {}
        if detail.get("setting"):
            lines.append(f"Setting: {detail['setting']}: expected {detail.get('expectedShown')}, "
                         f"actual {detail.get('actualShown')}")
    lines += ["", "You receive this because of an alert rule in TenantAtlas."]
    return "\n".join(lines)


def deliver(event_id: int, *, sleep: Callable[[float], None] = time.sleep) -> str:
    """Send one pending event (the job's work); `sleep` waits between retries (injectable)."""
    event = db.session.get(AlertEvent, event_id)
    if event is None:
        db.session.rollback()
        return "missing"
    if event.status != "pending":
        return event.status
    rule = db.session.get(AlertRule, event.rule_id)
    attempts: list[Attempt] = []
    if rule.channel == "email":
        try:
            send_mail([a.strip() for a in rule.target.split(",")], f"[TenantAtlas] {event.title}", email_text(event),
                      sleep=sleep)
            attempts.append(Attempt(1, True, None, None))
        except MailError as error:
            attempts.append(Attempt(1, False, None, str(error)[:500]))
    else:
        post_webhook(rule.target, rule.signing_secret or "", rule.event, event.id, event.payload,
                     sleep=sleep, on_attempt=attempts.append)
    for attempt in attempts:
        db.session.add(AlertDelivery(workspace_id=event.workspace_id, alert_event_id=event.id, attempt=attempt.number,
                                     ok=attempt.ok, status_code=attempt.status_code, error=attempt.error))
    ok = any(a.ok for a in attempts)
    event.attempts = len(attempts)
    event.status = "sent" if ok else "failed"
    event.sent_at = datetime.now(timezone.utc) if ok else None
    db.session.commit()
    return event.status
