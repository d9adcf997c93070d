"""Back up one tenant: read every backed-up family through the Graph client and keep each object's
restorable payload, content-addressed.

- A backup set is a run record (families, skipped objects, errors, requests) and the list
  of its items (`item_ids`). An item is an object as it was, (family, graph id, payload),
  stored once per tenant: a backup of an unchanged tenant writes one set row and points at
  the items the previous one made (app.backup.payloads).
- Keyed by graph id, never by name: two policies with one name are two items.
- The groups the assignments name are backed up too (as references), with the assignment
  filters and scope tags (families of their own), so a backup can be read and restored
  without its source tenant.
- A family in which a request failed makes the set "partial": it holds what could be read
  and says what could not. A set with nothing read is "failed".
- One pending-or-running backup per tenant (a unique index). A retried job continues its
  own set: items are found again by their content, nothing is stored twice.

The engine never builds a URL or parses HTTP: app.graph.client does.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.graph.errors import ConsentError, ForeignLinkError, GraphError
from app.graph.families import FAMILIES, FAMILIES_BY_KEY, STORE_INVENTORY, STORE_POLICY, Family
from app.graph.normalize import NormalizeError, display_name_of
from app.models import BackupItem, BackupSchedule, BackupSet, Tenant
from app.sync.engine import usable_id, utcnow
from app.sync.permissions import satisfied

from .payloads import check_payload, payload_of, store_payloads

log = logging.getLogger(__name__)

# What a backup reads: every policy family, assignment filters and scope tags.
BACKUP_FAMILIES: tuple[Family, ...] = tuple(f for f in FAMILIES if f.store in (STORE_POLICY, STORE_INVENTORY))
GROUPS = FAMILIES_BY_KEY["groups"]


@dataclass
class FamilyBackup:
    items: int = 0
    skipped: int = 0
    error: str | None = None

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackupContext:
    """What a backup needs from outside: Graph, and a clock (injectable for tests)."""

    token_provider: Any
    client_factory: Callable[..., Any]  # (tenant_id: str, token_provider) -> GraphClient
    now: Callable[[], datetime] = utcnow
    progress: Callable[[str, FamilyBackup], None] | None = None


class BackupAlreadyActive(Exception):
    def __init__(self, backup_set: BackupSet):
        super().__init__(f"backup set {backup_set.id} is {backup_set.status}")
        self.backup_set = backup_set


def active_backup(tenant_id: int) -> BackupSet | None:
    return db.session.scalar(select(BackupSet).where(BackupSet.tenant_id == tenant_id,
                                                     BackupSet.status.in_(("pending", "running"))))


def backup_families(requested: list[str] | None) -> tuple[Family, ...]:
    """The families a backup reads: those asked for (unknown keys ignored), else all. Policies
    bring the inventory they refer to (assignment filters, scope tags), as they bring their
    groups: a backup of one family can still be read and restored without its tenant."""
    if not requested:
        return BACKUP_FAMILIES
    wanted = set(requested)
    if any(f.store == STORE_POLICY for f in BACKUP_FAMILIES if f.key in wanted):
        wanted |= {f.key for f in BACKUP_FAMILIES if f.store == STORE_INVENTORY}
    chosen = tuple(f for f in BACKUP_FAMILIES if f.key in wanted)
    return chosen or BACKUP_FAMILIES


def create_backup(tenant: Tenant, trigger: str, *, user_id: int | None = None, schedule: BackupSchedule | None = None,
                  families: list[str] | None = None, name: str | None = None, now: datetime | None = None) -> BackupSet:
    """A pending backup set for `tenant` in the caller's transaction, or BackupAlreadyActive."""
    now = now or utcnow()
    label = name or (f"{schedule.name} {now:%Y-%m-%d %H:%M} UTC" if schedule else f"Backup {now:%Y-%m-%d %H:%M} UTC")
    backup_set = BackupSet(tenant_id=tenant.id, workspace_id=tenant.workspace_id, name=label[:200], status="pending",
                           triggered_by=trigger, triggered_by_user_id=user_id,
                           schedule_id=schedule.id if schedule else None,
                           requested_families=[f.key for f in backup_families(families)] if families else [])
    savepoint = db.session.begin_nested()
    try:
        db.session.add(backup_set)
        db.session.flush()
    except IntegrityError:
        savepoint.rollback()
        existing = active_backup(tenant.id)
        if existing is None:  # finished meanwhile: once more
            return create_backup(tenant, trigger, user_id=user_id, schedule=schedule, families=families, name=name,
                                 now=now)
        raise BackupAlreadyActive(existing) from None
    savepoint.commit()
    return backup_set


def run_backup(backup_set_id: int, context: BackupContext) -> BackupSet | None:
    """Carry out backup `backup_set_id` (in the caller's workspace context). Returns the finished set."""
    backup_set = db.session.get(BackupSet, backup_set_id)
    if backup_set is None:
        log.warning("backup set %s not found (deleted, or another workspace)", backup_set_id)
        return None
    if not backup_set.is_active:
        return backup_set  # a duplicate delivery of the job does nothing
    tenant = db.session.get(Tenant, backup_set.tenant_id)
    now = context.now()
    if tenant.status == "archived":
        return _finish(backup_set, "failed", "The tenant was archived; nothing was read.", None, context)
    backup_set.status, backup_set.attempts = "running", backup_set.attempts + 1
    backup_set.started_at = backup_set.started_at or now
    backup_set.error = None
    db.session.commit()

    outcomes: dict[str, FamilyBackup] = {}
    item_ids: list[int] = []
    stored_bytes = 0
    client = None
    try:
        token = context.token_provider.acquire(str(tenant.external_id))
        granted = set(token.roles)
        client = context.client_factory(str(tenant.external_id), context.token_provider)
        group_ids: set[str] = set()
        for family in backup_families(backup_set.requested_families):
            outcome = outcomes[family.key] = FamilyBackup()
            if not satisfied(family.read_permission, granted):
                outcome.error = f"Permission {family.read_permission} is not granted."
            else:
                try:
                    ids, size = _back_up_family(tenant, family, client, outcome, group_ids)
                    item_ids += ids
                    stored_bytes += size
                    db.session.commit()
                except (ForeignLinkError, ConsentError):
                    raise
                except GraphError as error:
                    db.session.rollback()
                    outcome.error = error.message[:300]
            _record_progress(backup_set, outcomes, client, len(item_ids))
            if context.progress:
                context.progress(family.key, outcome)
        if group_ids:
            outcome = outcomes[GROUPS.key] = FamilyBackup()
            try:
                ids, size = _back_up_groups(tenant, client, sorted(group_ids), outcome)
                item_ids += ids
                stored_bytes += size
                db.session.commit()
            except (ForeignLinkError, ConsentError):
                raise
            except GraphError as error:
                db.session.rollback()
                outcome.error = error.message[:300]
            _record_progress(backup_set, outcomes, client, len(item_ids))
        failed = [key for key, o in outcomes.items() if o.error or o.skipped]
        status = "completed" if not failed else ("partial" if item_ids else "failed")
        error = None
        if failed:
            error = "; ".join(f"{FAMILIES_BY_KEY[key].label}: {outcomes[key].error or f'{outcomes[key].skipped} skipped'}"
                              for key in failed)
        backup_set.item_ids = sorted(set(item_ids))
        backup_set.size_bytes = stored_bytes
        return _finish(backup_set, status, error, client, context)
    except ConsentError as error:
        db.session.rollback()
        return _finish(backup_set, "failed", error.message, client, context, item_ids=item_ids, size=stored_bytes)
    except GraphError as error:
        db.session.rollback()
        return _finish(backup_set, "failed", error.message, client, context, item_ids=item_ids, size=stored_bytes)
    finally:
        if client is not None:
            client.close()


def _record_progress(backup_set: BackupSet, outcomes: dict[str, FamilyBackup], client, items: int) -> None:
    backup_set.families = {key: outcome.as_record() for key, outcome in outcomes.items()}
    backup_set.skipped_count = sum(outcome.skipped for outcome in outcomes.values())
    backup_set.item_count = items
    if client is not None:
        backup_set.requests, backup_set.throttled = client.stats.requests, client.stats.throttled
    db.session.commit()


def _finish(backup_set: BackupSet, status: str, error: str | None, client, context: BackupContext, *,
            item_ids: list[int] | None = None, size: int | None = None) -> BackupSet:
    backup_set.status, backup_set.finished_at = status, context.now()
    backup_set.error = error[:1000] if error else None
    if item_ids is not None and status != "failed":
        backup_set.item_ids = sorted(set(item_ids))
    if status == "failed":
        backup_set.item_ids = []  # a failed backup holds nothing anyone could restore from
    backup_set.item_count = len(backup_set.item_ids)
    if size is not None:
        backup_set.size_bytes = size
    if client is not None:
        backup_set.requests, backup_set.throttled = client.stats.requests, client.stats.throttled
    db.session.commit()
    return backup_set


# --- one family ------------------------------------------------------------------------------------------


def _back_up_family(tenant: Tenant, family: Family, client, outcome: FamilyBackup,
                    group_ids: set[str]) -> tuple[list[int], int]:
    """A page at a time: relations by $batch, payloads and items stored before the next page is read."""
    item_ids: list[int] = []
    stored = 0
    seen: set[str] = set()
    for raw_page in client.iter_pages(family):
        fresh = []
        for raw in raw_page:
            graph_id = raw.get("id") if isinstance(raw, dict) else None
            if not usable_id(graph_id):
                outcome.skipped += 1
            elif graph_id not in seen:
                seen.add(graph_id)
                fresh.append(raw)
        related = client.get_related(family, [raw["id"] for raw in fresh]) if family.per_object and fresh else {}
        objects = []
        for raw in fresh:
            parts: dict[str, list] | None = {}
            for relation in family.per_object:
                result = related.get((raw["id"], relation))
                if result is None or not result.ok:
                    parts = None
                    break
                parts[relation] = result.items
            if parts is None:
                outcome.skipped += 1
                continue
            body = payload_of(family, raw, parts)
            try:
                check_payload(family, body)
            except (NormalizeError, ValueError) as error:
                log.info("tenant %s: %s %s not backed up: %s", tenant.id, family.key, raw["id"], error)
                outcome.skipped += 1
                continue
            group_ids.update(assigned_group_ids(body))
            objects.append((raw["id"], display_name_of(family, raw), body))
        ids, size = store_items(tenant, family, objects)
        item_ids += ids
        stored += size
        outcome.items += len(ids)
        db.session.flush()
    if outcome.skipped and not outcome.error:
        outcome.error = f"{outcome.skipped} object(s) could not be read completely."
    return item_ids, stored


def _back_up_groups(tenant: Tenant, client, group_ids: list[str], outcome: FamilyBackup) -> tuple[list[int], int]:
    """The groups assignments name, read by id ($batch): a restore maps them by id, then by name."""
    found = client.groups_by_ids(group_ids)
    objects = []
    for graph_id, group in found.items():
        if usable_id(graph_id) and isinstance(group, dict):
            body = payload_of(GROUPS, group)
            try:
                check_payload(GROUPS, body)
            except (NormalizeError, ValueError):
                continue
            objects.append((graph_id, display_name_of(GROUPS, group), body))
    missing = len(group_ids) - len(objects)
    if missing:
        outcome.error = f"{missing} assigned group(s) no longer exist in the tenant."
    ids, size = store_items(tenant, GROUPS, objects, is_reference=True)
    outcome.items = len(ids)
    return ids, size


def assigned_group_ids(body: dict) -> set[str]:
    """The group ids an object's assignments target (include and exclude)."""
    ids = set()
    for assignment in body.get("assignments") or []:
        target = assignment.get("target") if isinstance(assignment, dict) else None
        group_id = target.get("groupId") if isinstance(target, dict) else None
        if isinstance(group_id, str) and usable_id(group_id):
            ids.add(group_id)
    return ids


def store_items(tenant: Tenant, family: Family, objects: list[tuple[str, str, dict]], *,
                is_reference: bool = False) -> tuple[list[int], int]:
    """Store (graph id, display name, payload) objects as items; returns (their item ids, bytes stored anew).

    An object whose payload is unchanged since an earlier backup gets that backup's item back.
    """
    if not objects:
        return [], 0
    from .payloads import payload_hash

    hashes = [payload_hash(body) for _, _, body in objects]
    payload_ids, stored = store_payloads(tenant, ((family, body) for _, _, body in objects))
    rows = {}
    for (graph_id, name, _body), digest in zip(objects, hashes):
        rows[(graph_id, payload_ids[digest])] = {
            "tenant_id": tenant.id, "workspace_id": tenant.workspace_id, "family": family.key, "graph_id": graph_id,
            "display_name": (name or graph_id)[:400], "payload_id": payload_ids[digest], "content_hash": digest,
            "is_reference": is_reference}
    inserted = db.session.execute(
        insert(BackupItem).values(list(rows.values()))
        .on_conflict_do_nothing(index_elements=["tenant_id", "family", "graph_id", "payload_id"])
        .returning(BackupItem.id, BackupItem.graph_id, BackupItem.payload_id)).all()
    ids = {(graph_id, payload_id): item_id for item_id, graph_id, payload_id in inserted}
    missing = [key for key in rows if key not in ids]
    if missing:
        for item_id, graph_id, payload_id in db.session.execute(
                select(BackupItem.id, BackupItem.graph_id, BackupItem.payload_id)
                .where(BackupItem.tenant_id == tenant.id, BackupItem.family == family.key,
                       BackupItem.graph_id.in_([g for g, _ in missing]),
                       BackupItem.payload_id.in_([p for _, p in missing]))):
            ids[(graph_id, payload_id)] = item_id
    return [ids[key] for key in rows], stored
