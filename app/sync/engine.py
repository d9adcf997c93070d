"""Sync one tenant: read every family in app.graph.families through the Graph client,
normalize, and write only what changed.

- A policy gets a new version only when its normalized content hash changes; an
  unchanged tenant's re-sync writes no policy or version row.
- A policy missing from a *complete* listing of its family is marked deleted (kept,
  with when); a family in which any request failed (an inner $batch failure too)
  makes the run "partial" and marks nothing deleted.
- One queued-or-running run per tenant (a unique index), so two triggers never sync a
  tenant at once; a retried job continues its own run and ends with the same rows.
- Every transaction runs inside the run's workspace (row-level security), and the
  only Graph calls are for the run's tenant, through the one client module.

The engine never builds a URL or parses HTTP: app.graph.client does.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.graph.errors import ConsentError, ForeignLinkError, GraphError
from app.graph.families import (FAMILIES, STORE_GROUP, STORE_INVENTORY, STORE_POLICY, STORE_ROLE, Family)
from app.backup.payloads import payload_hash, payload_of, store_payloads
from app.graph.normalize import NormalizeError, content_hash, display_name_of, normalize_object
from app.models import EntraGroup, EntraRoleDefinition, InventoryItem, Policy, PolicyVersion, SyncRun, Tenant
from app.sync.permissions import record_permissions, satisfied

log = logging.getLogger(__name__)

# After this many failed runs in a row, periodic syncing pauses itself (the tenant says so).
FAILURE_PAUSE_THRESHOLD = 5
DEFAULT_SYNC_INTERVAL = timedelta(hours=6)
SETTINGS_CATALOG_TYPES = ("configurationPolicy", "endpointSecurity")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class FamilyOutcome:
    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed_items: int = 0
    complete: bool = True
    error: str | None = None

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyncContext:
    """What a run needs from outside: Graph, and a clock (injectable for tests)."""

    token_provider: Any
    client_factory: Callable[..., Any]  # (tenant_id: str, token_provider) -> GraphClient
    now: Callable[[], datetime] = utcnow
    interval: timedelta = DEFAULT_SYNC_INTERVAL
    progress: Callable[[str, FamilyOutcome], None] | None = None


# --- starting a run ------------------------------------------------------------------------------------


class SyncAlreadyActive(Exception):
    def __init__(self, run: SyncRun):
        super().__init__(f"sync run {run.id} is {run.status}")
        self.run = run


def active_run(tenant_id: int) -> SyncRun | None:
    return db.session.scalar(select(SyncRun).where(SyncRun.tenant_id == tenant_id,
                                                   SyncRun.status.in_(("queued", "running"))))


def create_run(tenant: Tenant, trigger: str, user_id: int | None = None) -> SyncRun:
    """A queued run for `tenant` in the caller's transaction, or SyncAlreadyActive.

    The partial unique index decides between concurrent triggers: the loser's insert
    fails and it is shown the winner's run.
    """
    run = SyncRun(tenant_id=tenant.id, workspace_id=tenant.workspace_id, trigger=trigger,
                  requested_by_user_id=user_id, status="queued")
    savepoint = db.session.begin_nested()
    try:
        db.session.add(run)
        db.session.flush()
    except IntegrityError:
        savepoint.rollback()
        existing = active_run(tenant.id)
        if existing is None:  # the other run finished meanwhile: try once more
            return create_run(tenant, trigger, user_id)
        raise SyncAlreadyActive(existing) from None
    savepoint.commit()
    return run


def spread_next_sync(tenant: Tenant, now: datetime, interval: timedelta) -> datetime:
    """The next periodic sync, spread over the interval so tenants do not all sync at once."""
    offset = (tenant.id * 7919) % max(int(interval.total_seconds()), 1)
    return now + timedelta(seconds=offset) if tenant.last_sync_at is None else now + interval


# --- the run -------------------------------------------------------------------------------------------


def run_sync(run_id: int, context: SyncContext) -> SyncRun | None:
    """Carry out sync run `run_id` (in the caller's workspace context). Returns the finished run."""
    run = db.session.get(SyncRun, run_id)
    if run is None:
        log.warning("sync run %s not found (deleted, or another workspace)", run_id)
        return None
    if run.status not in ("queued", "running"):
        return run  # finished already: a duplicate delivery of the job does nothing
    tenant = db.session.get(Tenant, run.tenant_id)
    now = context.now()
    if tenant.status == "archived":  # archived after the run was queued: nothing is read
        run.status, run.finished_at, run.error = "failed", now, "The tenant was archived; nothing was read."
        db.session.commit()
        return run
    run.status, run.attempts = "running", run.attempts + 1
    run.started_at = run.started_at or now
    run.error = None
    db.session.commit()

    outcomes: dict[str, FamilyOutcome] = {}
    client = None
    try:
        token = context.token_provider.acquire(str(tenant.external_id))
        granted = set(token.roles)
        missing = record_permissions(tenant, granted, now)
        db.session.commit()
        client = context.client_factory(str(tenant.external_id), context.token_provider)
        for item in FAMILIES:
            outcome = FamilyOutcome()
            outcomes[item.key] = outcome
            run.current_family = item.key
            db.session.commit()
            if not satisfied(item.read_permission, granted):
                outcome.complete = False
                outcome.error = f"Permission {item.read_permission} is not granted."
            else:
                try:
                    sync_family(tenant, item, client, outcome, context.now())
                except (ForeignLinkError, ConsentError):
                    raise  # the whole run stops: no request elsewhere, no tenant that refuses us
                except GraphError as error:
                    db.session.rollback()
                    outcome.complete, outcome.error = False, error.message[:300]
            run.families = {**run.families, item.key: outcome.as_record()}
            _record_stats(run, client)
            db.session.commit()
            if context.progress:
                context.progress(item.key, outcome)
        status = "succeeded" if all(o.complete for o in outcomes.values()) else "partial"
        if missing and all(not o.seen for o in outcomes.values()):
            status = "failed"
        error = ("Missing permissions: " + ", ".join(missing)) if missing else None
        return _finish(run, tenant, status, error, client, context)
    except ConsentError as error:
        db.session.rollback()
        tenant.connection_status = "consent_revoked" if error.kind in ("not_consented", "app_removed") else tenant.connection_status
        tenant.connection_error = error.message[:500]
        context.token_provider.forget(str(tenant.external_id))
        return _finish(run, tenant, "failed", error.message, client, context)
    except GraphError as error:  # a foreign link, or an answer the client could not use
        db.session.rollback()
        return _finish(run, tenant, "failed", error.message, client, context)
    finally:
        if client is not None:
            client.close()


def _record_stats(run: SyncRun, client) -> None:
    if client is not None:
        run.requests = client.stats.requests
        run.throttled = client.stats.throttled


def _finish(run: SyncRun, tenant: Tenant, status: str, error: str | None, client, context: SyncContext) -> SyncRun:
    return record_outcome(run, tenant, status, error, client, context.now(), context.interval)


def record_outcome(run: SyncRun, tenant: Tenant, status: str, error: str | None, client, now: datetime,
                   interval: timedelta) -> SyncRun:
    """End a run and carry its outcome to the tenant: failures counted (a pause after the
    threshold), the connection state, the next periodic sync. Commits."""
    run.status, run.finished_at, run.current_family = status, now, None
    run.error = error[:1000] if error else None
    _record_stats(run, client)
    tenant.last_sync_at, tenant.last_sync_status = now, status
    if status == "failed":
        tenant.consecutive_failures += 1
        if tenant.connection_status != "consent_revoked":
            tenant.connection_status = "failing"
            tenant.connection_error = (error or "The sync failed.")[:500]
        if tenant.consecutive_failures >= FAILURE_PAUSE_THRESHOLD and tenant.sync_paused_at is None:
            tenant.sync_paused_at = now
    else:
        tenant.consecutive_failures = 0
        tenant.connection_error = None if not error else error[:500]
    tenant.next_sync_at = now + interval
    db.session.commit()
    return run


# --- one family ------------------------------------------------------------------------------------------


def sync_family(tenant: Tenant, item: Family, client, outcome: FamilyOutcome, now: datetime) -> None:
    """Read one family and write its changes in one transaction (the caller commits).

    A page at a time: its relations ($batch), normalized, written and flushed before the next
    page is read, so a sync holds one page of objects, not the whole family. What was seen is
    kept as ids only, for the deletions a complete listing allows at the end.
    """
    if item.store == STORE_GROUP:
        return _sync_groups(tenant, item, client, outcome)
    writer, existing = _FAMILY_WRITERS[item.store], _EXISTING[item.store](tenant, item)
    seen: set[str] = set()
    for raw_page in client.iter_pages(item):
        normalized = _normalize_page(tenant, item, client, raw_page, outcome, seen)
        writer(tenant, item, normalized, outcome, now, existing)
        db.session.flush()
    outcome.seen = len(seen) + outcome.failed_items
    if outcome.failed_items:
        outcome.error = f"{outcome.failed_items} object(s) could not be read completely."
    if not outcome.complete:
        return
    if item.store == STORE_POLICY:
        gone = [known.id for graph_id, known in existing.items() if graph_id not in seen and known.deleted_at is None]
        if gone:
            db.session.execute(update(Policy).where(Policy.tenant_id == tenant.id, Policy.id.in_(gone))
                               .values(deleted_at=now))
            outcome.deleted = len(gone)
    else:
        _delete_missing(InventoryItem if item.store == STORE_INVENTORY else EntraRoleDefinition,
                        tenant, existing, seen, outcome)


def _normalize_page(tenant: Tenant, item: Family, client, raw_page: list, outcome: FamilyOutcome,
                    seen: set[str]) -> dict[str, tuple[dict, dict, dict]]:
    """graph id -> (raw, normalized, relations) for one page; what cannot be read completely is counted."""
    fresh = []
    for raw in raw_page:
        graph_id = raw.get("id") if isinstance(raw, dict) else None
        if not usable_id(graph_id):
            outcome.failed_items += 1
            outcome.complete = False
        elif graph_id not in seen:  # the same object twice in a listing counts once
            seen.add(graph_id)
            fresh.append(raw)
    related = client.get_related(item, [raw["id"] for raw in fresh]) if item.per_object and fresh else {}
    normalized: dict[str, tuple[dict, dict]] = {}
    for raw in fresh:
        graph_id, parts = raw["id"], {}
        for relation in item.per_object:
            result = related.get((graph_id, relation))
            if result is None or not result.ok:
                parts = None
                break
            parts[relation] = result.items
        try:
            if parts is None:
                raise NormalizeError(f"its {', '.join(item.per_object)} could not be read")
            normalized[graph_id] = (raw, normalize_object(item, raw, parts), parts)
        except NormalizeError as error:
            log.info("tenant %s: %s %s not normalized: %s", tenant.id, item.key, graph_id, error)
            seen.discard(graph_id)
            outcome.failed_items += 1
            outcome.complete = False
    return normalized


@dataclass
class KnownPolicy:
    """What the database holds for one policy graph id, kept current while a family is written."""

    id: int
    content_hash: str | None
    deleted_at: datetime | None


def _existing_policies(tenant: Tenant, item: Family) -> dict[str, KnownPolicy]:
    return {row.graph_id: KnownPolicy(row.id, row.content_hash, row.deleted_at) for row in db.session.execute(
        select(Policy.id, Policy.graph_id, Policy.content_hash, Policy.deleted_at).where(*_policy_scope(tenant, item)))}


def _existing_inventory(tenant: Tenant, item: Family) -> dict[str, InventoryItem]:
    return {row.graph_id: row for row in db.session.scalars(
        select(InventoryItem).where(InventoryItem.tenant_id == tenant.id, InventoryItem.object_type == item.key))}


def _existing_roles(tenant: Tenant, item: Family) -> dict[str, EntraRoleDefinition]:
    return {row.graph_id: row for row in db.session.scalars(
        select(EntraRoleDefinition).where(EntraRoleDefinition.tenant_id == tenant.id))}


def usable_id(value) -> bool:
    """A Graph object id this app stores: a short string without control characters (a NUL
    would not even fit in PostgreSQL text). Anything else makes its family partial."""
    return (isinstance(value, str) and 0 < len(value) <= 128
            and not any(ord(ch) < 32 or ord(ch) == 127 for ch in value))


def _policy_scope(tenant: Tenant, item: Family):
    types = SETTINGS_CATALOG_TYPES if item.policy_type == "configurationPolicy" else (item.policy_type,)
    conditions = [Policy.tenant_id == tenant.id, Policy.policy_type.in_(types)]
    if item.platform:
        conditions.append(Policy.platform == item.platform)
    return conditions


def _policy_type(item: Family, normalized: dict) -> str:
    if item.policy_type == "configurationPolicy" and str(normalized.get("templateFamily") or "").startswith("endpointSecurity"):
        return "endpointSecurity"
    return item.policy_type


def _modified_at(raw: dict) -> datetime | None:
    value = raw.get("lastModifiedDateTime")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _write_policies(tenant: Tenant, item: Family, normalized: dict, outcome: FamilyOutcome, now: datetime,
                    existing: dict[str, KnownPolicy]) -> None:
    """One page of a policy family: new policies with version 1, a new version where the hash changed."""
    # Same graph id under another family's type (a moved object): matched by (tenant, graph_id) anyway.
    unknown = [g for g in normalized if g not in existing]
    if unknown:
        existing.update({row.graph_id: KnownPolicy(row.id, row.content_hash, row.deleted_at) for row in db.session.execute(
            select(Policy.id, Policy.graph_id, Policy.content_hash, Policy.deleted_at)
            .where(Policy.tenant_id == tenant.id, Policy.graph_id.in_(unknown)))})
    digests = {graph_id: content_hash(snapshot) for graph_id, (_raw, snapshot, _parts) in normalized.items()}
    changed_ids = [existing[g].id for g in normalized if g in existing and existing[g].content_hash != digests[g]]
    latest_version = dict(db.session.execute(
        select(PolicyVersion.policy_id, func.max(PolicyVersion.version_number))
        .where(PolicyVersion.tenant_id == tenant.id, PolicyVersion.policy_id.in_(changed_ids))
        .group_by(PolicyVersion.policy_id)).all()) if changed_ids else {}
    # A new version keeps its restorable payload ("Restore this version"), stored once per content.
    versioned = [g for g in normalized if existing.get(g) is None or existing[g].content_hash != digests[g]]
    payloads = {g: payload_of(item, normalized[g][0], normalized[g][2]) for g in versioned}
    payload_ids, _stored = store_payloads(tenant, ((item, body) for body in payloads.values()))
    payload_id_of = {g: payload_ids[payload_hash(body)] for g, body in payloads.items()}
    new_policies = []
    for graph_id, (raw, snapshot, _parts) in normalized.items():
        digest, known = digests[graph_id], existing.get(graph_id)
        values = dict(display_name=display_name_of(item, raw), description=(snapshot.get("description") or None),
                      policy_type=_policy_type(item, snapshot),
                      platform=str(snapshot.get("platform") or item.platform or "unknown")[:32],
                      settings=snapshot.get("settings", {}), last_modified_at=_modified_at(raw),
                      content_hash=digest, deleted_at=None)
        if known is None:
            policy = Policy(tenant_id=tenant.id, workspace_id=tenant.workspace_id, graph_id=graph_id, **values)
            new_policies.append((graph_id, policy, snapshot, digest))
            outcome.new += 1
        elif known.content_hash != digest:
            db.session.execute(update(Policy).where(Policy.id == known.id, Policy.tenant_id == tenant.id).values(**values))
            db.session.add(PolicyVersion(tenant_id=tenant.id, workspace_id=tenant.workspace_id, policy_id=known.id,
                                         version_number=latest_version.get(known.id, 0) + 1, captured_at=now,
                                         snapshot=snapshot, content_hash=digest, payload_id=payload_id_of[graph_id]))
            known.content_hash, known.deleted_at = digest, None
            outcome.changed += 1
        elif known.deleted_at is not None:  # back after a deletion: the same content, so no new version
            db.session.execute(update(Policy).where(Policy.id == known.id, Policy.tenant_id == tenant.id)
                               .values(deleted_at=None))
            known.deleted_at = None
            outcome.changed += 1
        else:
            outcome.unchanged += 1
    if new_policies:
        db.session.add_all([policy for _g, policy, _s, _d in new_policies])
        db.session.flush()
        versions = [PolicyVersion(tenant_id=tenant.id, workspace_id=tenant.workspace_id, policy_id=policy.id,
                                  version_number=1, captured_at=now, snapshot=snapshot, content_hash=digest,
                                  payload_id=payload_id_of[graph_id])
                    for graph_id, policy, snapshot, digest in new_policies]
        db.session.add_all(versions)
        db.session.flush()
        for graph_id, policy, _snapshot, digest in new_policies:
            existing[graph_id] = KnownPolicy(policy.id, digest, None)
        # Written: nothing of this page needs to stay in memory.
        for obj in (*(policy for _g, policy, _s, _d in new_policies), *versions):
            db.session.expunge(obj)


def _write_inventory(tenant: Tenant, item: Family, normalized: dict, outcome: FamilyOutcome, now: datetime,
                     existing: dict[str, InventoryItem]) -> None:
    for graph_id, (raw, snapshot, _parts) in normalized.items():
        name = display_name_of(item, raw)
        row = existing.get(graph_id)
        if row is None:
            db.session.add(InventoryItem(tenant_id=tenant.id, workspace_id=tenant.workspace_id, object_type=item.key,
                                         graph_id=graph_id, display_name=name, data=snapshot, last_seen_at=now))
            outcome.new += 1
        elif row.data != snapshot or row.display_name != name:
            row.data, row.display_name, row.last_seen_at = snapshot, name, now
            outcome.changed += 1
        else:
            outcome.unchanged += 1


def _role_permissions(raw: dict) -> list[str]:
    actions = []
    for permission in raw.get("rolePermissions") or []:
        if isinstance(permission, dict):
            actions += [a for a in permission.get("allowedResourceActions") or [] if isinstance(a, str)]
    return sorted(set(actions))[:500]


def _write_roles(tenant: Tenant, item: Family, normalized: dict, outcome: FamilyOutcome, now: datetime,
                 existing: dict[str, EntraRoleDefinition]) -> None:
    for graph_id, (raw, _snapshot, _parts) in normalized.items():
        values = dict(display_name=display_name_of(item, raw),
                      description=(raw.get("description") if isinstance(raw.get("description"), str) else None),
                      is_built_in=bool(raw.get("isBuiltIn", True)), permissions=_role_permissions(raw))
        row = existing.get(graph_id)
        if row is None:
            db.session.add(EntraRoleDefinition(tenant_id=tenant.id, workspace_id=tenant.workspace_id,
                                               graph_id=graph_id, **values))
            outcome.new += 1
        elif any(getattr(row, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            outcome.changed += 1
        else:
            outcome.unchanged += 1


def _delete_missing(model, tenant: Tenant, existing: dict, seen, outcome: FamilyOutcome) -> None:
    """Rows of a complete listing's family that Graph no longer lists are removed (never after a partial one)."""
    if not outcome.complete:
        return
    gone = [row.id for graph_id, row in existing.items() if graph_id not in seen]
    if gone:
        db.session.execute(delete(model).where(model.tenant_id == tenant.id, model.id.in_(gone)))
        outcome.deleted = len(gone)


_FAMILY_WRITERS = {STORE_POLICY: _write_policies, STORE_INVENTORY: _write_inventory, STORE_ROLE: _write_roles}
_EXISTING = {STORE_POLICY: _existing_policies, STORE_INVENTORY: _existing_inventory, STORE_ROLE: _existing_roles}


def group_type_of(raw: dict) -> str:
    types = raw.get("groupTypes") if isinstance(raw.get("groupTypes"), list) else []
    if "DynamicMembership" in types:
        return "dynamic"
    if "Unified" in types:
        return "microsoft365"
    if raw.get("mailEnabled") and not raw.get("securityEnabled"):
        return "distribution"
    return "security"


def _sync_groups(tenant: Tenant, item: Family, client, outcome: FamilyOutcome) -> None:
    """Groups through a delta query: a full round the first time (or after 410 Gone), then changes only."""
    page = client.delta(item, tenant.groups_delta_link)
    full_round = tenant.groups_delta_link is None or page.restarted
    existing = {row.graph_id: row for row in db.session.scalars(
        select(EntraGroup).where(EntraGroup.tenant_id == tenant.id))}
    seen = set()
    for raw in page.items:
        graph_id = raw.get("id") if isinstance(raw, dict) else None
        if not usable_id(graph_id):
            outcome.failed_items += 1
            continue
        seen.add(graph_id)
        row = existing.get(graph_id)
        name, kind = display_name_of(item, raw), group_type_of(raw)
        if row is None:
            db.session.add(EntraGroup(tenant_id=tenant.id, workspace_id=tenant.workspace_id, graph_id=graph_id,
                                      display_name=name, group_type=kind))
            outcome.new += 1
        elif (row.display_name, row.group_type) != (name, kind):
            row.display_name, row.group_type = name, kind
            outcome.changed += 1
        else:
            outcome.unchanged += 1
    removed = set(page.removed_ids)
    if full_round and not outcome.failed_items:
        removed |= {graph_id for graph_id in existing if graph_id not in seen}
    gone = [existing[g].id for g in removed if g in existing]
    if gone:
        db.session.execute(delete(EntraGroup).where(EntraGroup.tenant_id == tenant.id, EntraGroup.id.in_(gone)))
        outcome.deleted = len(gone)
    outcome.seen = len(seen) + outcome.failed_items
    if outcome.failed_items:
        outcome.complete = False
        outcome.error = f"{outcome.failed_items} group(s) could not be read."
    else:
        tenant.groups_delta_link = page.delta_link
