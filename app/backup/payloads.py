"""An object's restorable JSON, stored once per tenant and content (backup_payloads).

The normalized form (app.graph.normalize) is what is compared; it flattens settings and
drops what Graph would need to recreate the object. A payload keeps the object as Graph
returns it, with the relations its family reads per object:

    {"object": {...}, "settings": [...], "assignments": [...]}

canonicalised (annotations other than @odata.type dropped, relation lists sorted) so that
two reads of an unchanged object give the same bytes and the same hash, and a backup of an
unchanged tenant stores nothing new. Backups, policy versions and restores share the store.

Payload writers and the pruning of unreferenced payloads exclude each other per tenant
with an advisory lock (shared for writers, exclusive for pruning), so a payload found
"already stored" is never deleted before the row that now refers to it commits.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from app.extensions import db
from app.graph.families import Family
from app.graph.normalize import normalize_object
from app.models import BackupPayload, Tenant

# Relations a family reads per object are kept beside the object, never inside it.
RELATIONS = ("settings", "assignments")
_LOCK_NAMESPACE = 0x7A11  # advisory lock class id for "payloads of a tenant"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(body: dict) -> str:
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _without_annotations(value: Any) -> Any:
    """Annotations (@odata.context, @odata.etag, …) describe the response, not the object."""
    if isinstance(value, dict):
        return {key: _without_annotations(item) for key, item in value.items()
                if not (isinstance(key, str) and "@" in key and key != "@odata.type")}
    if isinstance(value, list):
        return [_without_annotations(item) for item in value]
    return value


def payload_of(family: Family, raw: dict, related: dict[str, list] | None = None) -> dict:
    """The payload of one object: `raw` as listed, its relations from `related` (or inline)."""
    related = related or {}
    body: dict[str, Any] = {"object": _without_annotations(
        {key: value for key, value in raw.items() if key not in RELATIONS})}
    for relation in family.per_object:
        items = related.get(relation, raw.get(relation))
        if isinstance(items, list):
            items = [_without_annotations(item) for item in items]
            body[relation] = sorted(items, key=canonical_json)
    return body


def check_payload(family: Family, body: dict) -> None:
    """Refuse (ValueError or NormalizeError) a payload PostgreSQL could not store or TenantAtlas could not
    compare: a NUL or a lone surrogate in any string (Graph's JSON may carry either), or one the
    normalizer refuses (too deep, too large)."""
    canonical_json(body).encode("utf-8")  # a lone surrogate does not encode
    _check_no_nul(body)
    normalized_payload(family, body)


def _check_no_nul(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a string holds a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_no_nul(key)
            _check_no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _check_no_nul(item)


def normalized_payload(family: Family, body: dict) -> dict:
    """The payload's normalized form, to compare it with another read (app.graph.normalize)."""
    related = {relation: body[relation] for relation in family.per_object if relation in body}
    return normalize_object(family, body.get("object") or {}, related)


def lock_for_writing(tenant_id: int) -> None:
    db.session.execute(text("SELECT pg_advisory_xact_lock_shared(:ns, :t)"), {"ns": _LOCK_NAMESPACE, "t": tenant_id})


def lock_for_pruning(tenant_id: int) -> None:
    db.session.execute(text("SELECT pg_advisory_xact_lock(:ns, :t)"), {"ns": _LOCK_NAMESPACE, "t": tenant_id})


def store_payloads(tenant: Tenant, bodies: Iterable[tuple[Family, dict]]) -> tuple[dict[str, int], int]:
    """Store each (family, body) not stored yet; returns ({hash: payload id}, bytes stored anew).

    One INSERT … ON CONFLICT DO NOTHING for the batch, one SELECT for those that existed.
    """
    rows: dict[str, dict] = {}
    for family, body in bodies:
        encoded = canonical_json(body)
        digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()
        rows.setdefault(digest, {"tenant_id": tenant.id, "workspace_id": tenant.workspace_id, "content_hash": digest,
                                 "family": family.key, "body": body, "size_bytes": len(encoded.encode("utf-8"))})
    if not rows:
        return {}, 0
    lock_for_writing(tenant.id)
    inserted = db.session.execute(
        insert(BackupPayload).values(list(rows.values()))
        .on_conflict_do_nothing(index_elements=["tenant_id", "content_hash"])
        .returning(BackupPayload.id, BackupPayload.content_hash)).all()
    ids = {digest: payload_id for payload_id, digest in inserted}
    missing = [digest for digest in rows if digest not in ids]
    if missing:
        ids.update({digest: payload_id for payload_id, digest in db.session.execute(
            select(BackupPayload.id, BackupPayload.content_hash)
            .where(BackupPayload.tenant_id == tenant.id, BackupPayload.content_hash.in_(missing)))})
    return ids, sum(rows[digest]["size_bytes"] for _, digest in inserted)
