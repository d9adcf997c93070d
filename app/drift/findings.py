"""A computed finding's life, in one place: detected, updated, resolved, reopened, triaged.

A computation (hygiene, a baseline) says which findings hold for a tenant *now*, each
keyed by what it is about (`subject_key`, unique per tenant). `reconcile` compares that
with the tenant's computed findings and writes only the difference:

- a new key: a new open finding ("detected");
- a key that holds again after it was resolved: reopened ("reopened") — or back to
  accepted, when the tenant's acceptance (reason, optional expiry) still stands: an
  exception the customer agreed to is respected by every later run;
- an accepted finding whose acceptance has expired: open again ("acceptance expired");
- a key that no longer holds: resolved ("resolved"), whatever its status was;
- otherwise: its title, severity and detail follow the data; its status stays.

People's actions (`triage`) — acknowledge with a note, accept with a reason and an optional
expiry, reopen, resolve — keep who, why and when in the finding's detail and history, so a
run never loses them. History is capped at HISTORY_LIMIT entries (the oldest go first).

The tenant's computed findings are reconciled under a transaction-level advisory lock on
the tenant, so two evaluations of one tenant (a sync ending, the periodic run) take turns
instead of inserting the same key twice.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update

from app.extensions import db
from app.models import SEVERITIES, Finding

HISTORY_LIMIT = 50
SYSTEM_ACTOR = "TenantAtlas"
MAX_SUBJECT_KEY = 600
# Keys of a finding's detail that people wrote; a computation never overwrites them.
TRIAGE_KEYS = ("acknowledgement", "acceptance")


@dataclass
class Desired:
    """A finding that holds now, as a computation sees it."""

    key: str
    kind: str
    severity: str
    title: str
    detail: dict[str, Any] = field(default_factory=dict)
    policy_id: int | None = None
    baseline_id: int | None = None


@dataclass
class Changes:
    detected: list[Finding] = field(default_factory=list)
    reopened: list[Finding] = field(default_factory=list)
    resolved: list[Finding] = field(default_factory=list)
    holding: list[Finding] = field(default_factory=list)  # every finding that holds now
    updated: int = 0
    unchanged: int = 0


def subject_key(*parts: Any) -> str:
    """A subject key from its parts; one too long for the column keeps its head and a digest."""
    key = ":".join(str(part) for part in parts)
    if len(key) <= MAX_SUBJECT_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:MAX_SUBJECT_KEY - 66]}#{digest}"


def history_entry(at: datetime, event: str, by: str = SYSTEM_ACTOR, note: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    entry = {"at": at.isoformat(), "event": event, "by": by}
    if note:
        entry["note"] = note
    entry.update({k: v for k, v in extra.items() if v is not None})
    return entry


def _append(finding: Finding, entry: dict[str, Any]) -> None:
    finding.history = [*(finding.history or []), entry][-HISTORY_LIMIT:]


def lock_tenant_findings(tenant_id: int) -> None:
    """One evaluation of a tenant's computed findings at a time (until this transaction ends)."""
    db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext('tenant-findings'), CAST(:t AS integer))"),
                       {"t": tenant_id % 2_147_483_647})


def acceptance_stands(finding: Finding, now: datetime) -> bool:
    acceptance = (finding.detail or {}).get("acceptance")
    return bool(acceptance) and (finding.accepted_until is None or finding.accepted_until > now)


def reconcile(tenant, desired: list[Desired], now: datetime, *, scope_prefixes: tuple[str, ...] | None = None
              ) -> Changes:
    """Bring the tenant's computed findings (those under `scope_prefixes`, all by default) in line
    with `desired`. The caller holds lock_tenant_findings and commits."""
    statement = select(Finding).where(Finding.tenant_id == tenant.id, Finding.subject_key.is_not(None))
    existing = {finding.subject_key: finding for finding in db.session.scalars(statement)
                if scope_prefixes is None or finding.subject_key.startswith(scope_prefixes)}
    changes = Changes()
    wanted = {}
    for item in desired:
        wanted.setdefault(item.key, item)  # the first word on a key wins (a computation never repeats one)
    still_holding = []
    for key, item in wanted.items():
        finding = existing.get(key)
        if finding is None:
            finding = Finding(tenant_id=tenant.id, workspace_id=tenant.workspace_id, subject_key=key, kind=item.kind,
                              severity=item.severity, title=item.title[:400], detail=dict(item.detail),
                              policy_id=item.policy_id, baseline_id=item.baseline_id, status="open",
                              detected_at=now, last_evaluated_at=now, history=[history_entry(now, "detected")])
            db.session.add(finding)
            changes.detected.append(finding)
            changes.holding.append(finding)
            continue
        changes.holding.append(finding)
        before = (finding.status, finding.title, finding.severity, finding.detail, finding.policy_id)
        detail = {**item.detail, **{k: v for k, v in (finding.detail or {}).items() if k in TRIAGE_KEYS}}
        finding.title, finding.severity, finding.policy_id = item.title[:400], item.severity, item.policy_id
        finding.kind, finding.baseline_id = item.kind, item.baseline_id
        if finding.status == "resolved":
            finding.resolved_at = None
            detail.pop("acknowledgement", None)  # that acknowledgement was of the last episode (history keeps it)
            if acceptance_stands(finding, now):
                finding.status = "accepted"
                _append(finding, history_entry(now, "returned", note="The deviation returned; the acceptance stands."))
            else:
                finding.status = "open"
                _append(finding, history_entry(now, "reopened", note="The deviation returned."))
            changes.reopened.append(finding)
        elif finding.status == "accepted" and not acceptance_stands(finding, now):
            finding.status = "open"
            _append(finding, history_entry(now, "acceptance_expired", note="The acceptance has expired."))
            changes.reopened.append(finding)
        finding.detail = detail
        if before != (finding.status, finding.title, finding.severity, finding.detail, finding.policy_id):
            finding.last_evaluated_at = now
            changes.updated += 1
        else:
            still_holding.append(finding.id)
            changes.unchanged += 1
    for key, finding in existing.items():
        if key not in wanted and finding.status != "resolved":
            finding.status, finding.resolved_at, finding.last_evaluated_at = "resolved", now, now
            _append(finding, history_entry(now, "resolved", note="Compliant again."))
            changes.resolved.append(finding)
    if still_holding:  # one statement, however many findings still hold unchanged
        db.session.execute(update(Finding).where(Finding.tenant_id == tenant.id, Finding.id.in_(still_holding))
                           .values(last_evaluated_at=now).execution_options(synchronize_session=False))
    db.session.flush()
    return changes


# --- people's actions ------------------------------------------------------------------------------------

MAX_NOTE = 1000

TRANSITIONS = {
    # action: (allowed from, to, past tense for messages)
    "acknowledge": (("open",), "acknowledged", "acknowledged"),
    "accept": (("open", "acknowledged"), "accepted", "accepted for this tenant"),
    "resolve": (("open", "acknowledged"), "resolved", "resolved"),
    "reopen": (("acknowledged", "accepted", "resolved"), "open", "reopened"),
}


class TriageRefused(ValueError):
    """The finding's status does not allow the action (the message says why)."""


def triage(finding: Finding, action: str, *, by: str, now: datetime, note: str = "",
           until: datetime | None = None) -> str:
    """Apply a person's action to a finding; returns the status before. The caller audits and commits."""
    allowed_from, target, done = TRANSITIONS[action]
    if finding.status not in allowed_from:
        raise TriageRefused(f"“{finding.title}” is {finding.status}; it cannot be {done} from there.")
    if action == "accept" and not note:
        raise TriageRefused("Say why this is accepted for this tenant (a reason is required).")
    if until is not None and until <= now:
        raise TriageRefused("An acceptance's expiry must be in the future.")
    before = finding.status
    finding.status = target
    finding.resolved_at = now if target == "resolved" else None
    detail = dict(finding.detail or {})
    if target == "acknowledged":
        detail["acknowledgement"] = {"note": note, "by": by, "at": now.isoformat()}
    elif target == "accepted":
        detail["acceptance"] = {"reason": note, "by": by, "at": now.isoformat(),
                                "until": until.isoformat() if until else None}
        finding.accepted_until = until
    elif target == "open":
        # Reopened by a person: earlier triage no longer applies (the history keeps it).
        detail.pop("acknowledgement", None)
        detail.pop("acceptance", None)
        finding.accepted_until = None
    finding.detail = detail
    _append(finding, history_entry(now, action, by=by, note=note or None,
                                   until=until.isoformat() if until else None))
    return before


def severity_above(severity: str) -> str:
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
