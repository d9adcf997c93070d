"""The simulator's directory: tenants and, per tenant and family, their Graph objects.

An object is kept as its Graph representation (what GET by id returns) plus, per relation
of its family (`Family.per_object`, e.g. "settings", "assignments"), the list the relation
endpoint returns. Every change gets the tenant's next sequence number; deletions leave a
tombstone, so delta queries can tell what changed since a token (see graph.py).

All methods expect the caller to hold the simulator's lock; they are the single place
that mutates objects: the control API edits through create/update/delete, Graph's write
endpoints (writes.py) through create/rewrite. Each tenant also keeps its write log (what
Graph writes did) and the writes it is told to refuse.
"""
from __future__ import annotations

import copy
import datetime as dt
import itertools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from app.graph.families import FAMILIES, FAMILIES_BY_KEY, Family

from .common import Refusal, WriteRecord


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    """Graph's timestamp format: UTC with a Z."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def is_app_protection(family: Family) -> bool:
    return family.policy_type == "appProtectionPolicy"


def is_settings_catalog(family: Family) -> bool:
    return family.name_key == "name" and "settings" in family.per_object


class StoreError(Exception):
    """A control-API or store operation that cannot be done (unknown tenant, family, object)."""

    status = 400

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class StoredObject:
    id: str
    data: dict[str, Any]
    relations: dict[str, list[dict[str, Any]]]
    ordinal: int  # creation order: paging cursors point at it, so deletions never shift pages
    seq: int  # the tenant's sequence number of the last change
    deleted: bool = False

    def full(self) -> dict[str, Any]:
        """The object with its relations inline (what `Simulator.objects` returns)."""
        result = copy.deepcopy(self.data)
        for name, items in self.relations.items():
            result[name] = copy.deepcopy(items)
        return result


@dataclass
class TenantState:
    tenant_id: str
    name: str
    domain: str
    roles: list[str]
    consented: bool
    service_principal_id: str
    demo_key: int | None = None
    families: dict[str, dict[str, StoredObject]] = field(default_factory=dict)
    writes: list[WriteRecord] = field(default_factory=list)  # Graph writes done, oldest first
    refusals: list[Refusal] = field(default_factory=list)
    seq: int = 0
    _ordinals: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    def __post_init__(self) -> None:
        for family in FAMILIES:
            self.families.setdefault(family.key, {})

    def summary(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "name": self.name, "domain": self.domain, "roles": list(self.roles),
            "consented": self.consented, "demo_key": self.demo_key,
            "objects": {key: sum(not item.deleted for item in items.values()) for key, items in self.families.items()},
        }

    # --- reading -------------------------------------------------------------------------

    def family_objects(self, family_key: str) -> dict[str, StoredObject]:
        try:
            return self.families[family_key]
        except KeyError:
            raise StoreError(f"unknown family {family_key!r}; known: {', '.join(FAMILIES_BY_KEY)}", 404) from None

    def live(self, family_key: str) -> list[StoredObject]:
        """Objects that exist, in creation order."""
        return sorted(
            (item for item in self.family_objects(family_key).values() if not item.deleted), key=lambda i: i.ordinal
        )

    def get(self, family_key: str, object_id: str) -> StoredObject:
        item = self.family_objects(family_key).get(object_id)
        if item is None or item.deleted:
            raise StoreError(f"no {family_key} object {object_id!r} in tenant {self.tenant_id}", 404)
        return item

    # --- writing -------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def create(self, family_key: str, obj: dict[str, Any]) -> StoredObject:
        family = FAMILIES_BY_KEY.get(family_key)
        if family is None:
            raise StoreError(f"unknown family {family_key!r}; known: {', '.join(FAMILIES_BY_KEY)}", 404)
        if not isinstance(obj, dict):
            raise StoreError("an object must be a JSON object")
        data = copy.deepcopy(obj)
        relations: dict[str, list[dict[str, Any]]] = {}
        for name in family.per_object:
            value = data.pop(name, None)
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
                raise StoreError(f"{name} must be a list of objects")
            relations[name] = value
        object_id = data.get("id")
        if object_id is None or object_id == "":
            object_id = ("T_" if is_app_protection(family) else "") + str(uuid.uuid4())
            data = {"id": object_id, **data}
        object_id = str(object_id)
        data["id"] = object_id
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,200}", object_id):
            raise StoreError(f"object ids may hold letters, digits and _.:- only, not {object_id!r}")
        existing = self.families[family_key].get(object_id)
        if existing is not None and not existing.deleted:
            raise StoreError(f"{family_key} object {object_id!r} exists already in tenant {self.tenant_id}", 409)
        item = StoredObject(
            id=object_id, data=data, relations=relations, ordinal=next(self._ordinals), seq=self._next_seq()
        )
        self.families[family_key][object_id] = item
        return item

    def update(self, family_key: str, object_id: str, changes: dict[str, Any], *, now: dt.datetime | None = None) -> StoredObject:
        from .shapes import apply_changes  # the family-specific editing rules

        if not isinstance(changes, dict) or not changes:
            raise StoreError("changes must be a non-empty JSON object")
        item = self.get(family_key, object_id)
        apply_changes(FAMILIES_BY_KEY[family_key], item, changes, now or utc_now())
        item.seq = self._next_seq()
        return item

    def rewrite(self, family_key: str, object_id: str, data: dict[str, Any],
                relations: dict[str, list[dict[str, Any]]] | None = None) -> StoredObject:
        """Sets an object's representation (and the relations given) as a Graph write left it."""
        item = self.get(family_key, object_id)
        item.data = copy.deepcopy(data)
        item.data["id"] = item.id
        for name, items in (relations or {}).items():
            if name not in item.relations:
                raise StoreError(f"{family_key} has no relation {name!r}")
            item.relations[name] = copy.deepcopy(items)
        item.seq = self._next_seq()
        return item

    def delete(self, family_key: str, object_id: str) -> None:
        item = self.get(family_key, object_id)
        item.deleted = True
        item.relations = {name: [] for name in item.relations}
        item.seq = self._next_seq()
