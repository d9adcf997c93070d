"""The tenant switcher: search, recent visits and pins, all scoped to one workspace.

It never lists a workspace's whole tenant set: search returns at most
SEARCH_LIMIT matches, and the recent and pinned lists are bounded too.
"""
from __future__ import annotations

from sqlalchemy import DateTime, String, case, cast, func, null, select
from sqlalchemy.dialects.postgresql import insert

from app.extensions import db
from app.web.listing import escape_like
from app.operations_models import Tag, TenantTag
from app.models import Tenant, TenantPin, TenantVisit

SEARCH_LIMIT = 20
RECENT_LIMIT = 5
PINNED_LIMIT = 10


def search_switcher_tenants(workspace_id: int, term: str) -> list[Tenant]:
    """Active tenants of the workspace matching `term` (name, domain, id or a tag's name); prefix matches first."""
    statement = select(Tenant).where(Tenant.workspace_id == workspace_id, Tenant.status == "active")
    if term:
        escaped = escape_like(term)
        contains, prefix = f"%{escaped}%", f"{escaped}%"
        # A tag's name matches every tenant carrying it ("Healthcare" lists the healthcare customers).
        tagged = (select(TenantTag.tenant_id).join(Tag, (Tag.id == TenantTag.tag_id) & (Tag.workspace_id == workspace_id))
                  .where(TenantTag.workspace_id == workspace_id, Tag.name.ilike(contains, escape="\\")))
        statement = statement.where(
            Tenant.name.ilike(contains, escape="\\")
            | Tenant.primary_domain.ilike(contains, escape="\\")
            | cast(Tenant.external_id, String).ilike(prefix, escape="\\")
            | Tenant.id.in_(tagged)
        ).order_by(case((Tenant.name.ilike(prefix, escape="\\"), 0), else_=1))
    return list(db.session.scalars(statement.order_by(Tenant.name, Tenant.id).limit(SEARCH_LIMIT)))


def switcher_marks(user_id: int, workspace_id: int) -> tuple[list[Tenant], list[Tenant]]:
    """(pinned, recent): the user's pinned and recently opened active tenants of this workspace.

    One statement: the union of both marks, bounded.
    """
    pinned = (
        select(TenantPin.tenant_id, TenantPin.created_at.label("pinned_at"), cast(null(), DateTime(timezone=True)).label("visited_at"))
        .where(TenantPin.user_id == user_id, TenantPin.workspace_id == workspace_id)
        .order_by(TenantPin.created_at)
        .limit(PINNED_LIMIT)
    )
    recent = (
        select(TenantVisit.tenant_id, cast(null(), DateTime(timezone=True)).label("pinned_at"), TenantVisit.visited_at)
        .where(TenantVisit.user_id == user_id, TenantVisit.workspace_id == workspace_id)
        .order_by(TenantVisit.visited_at.desc())
        .limit(RECENT_LIMIT + PINNED_LIMIT)
    )
    marks = pinned.union_all(recent).subquery()
    rows = db.session.execute(
        select(Tenant, marks.c.pinned_at, marks.c.visited_at)
        .join(marks, marks.c.tenant_id == Tenant.id)
        .where(Tenant.workspace_id == workspace_id, Tenant.status == "active")
        .order_by(marks.c.pinned_at.asc().nulls_last(), marks.c.visited_at.desc().nulls_last())
    ).all()
    pinned_tenants = [tenant for tenant, pinned_at, _ in rows if pinned_at is not None]
    pinned_ids = {tenant.id for tenant in pinned_tenants}
    recent_tenants = [tenant for tenant, pinned_at, _ in rows if pinned_at is None and tenant.id not in pinned_ids]
    return pinned_tenants, recent_tenants[:RECENT_LIMIT]


def record_visit(user_id: int, tenant: Tenant) -> None:
    """Remember that the user opened this tenant (one upsert; the caller commits)."""
    statement = insert(TenantVisit).values(user_id=user_id, tenant_id=tenant.id, workspace_id=tenant.workspace_id)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[TenantVisit.user_id, TenantVisit.tenant_id],
        set_={"visited_at": func.now(), "workspace_id": statement.excluded.workspace_id},
    ))


def is_pinned(user_id: int, tenant_id: int) -> bool:
    return db.session.scalar(
        select(TenantPin.id).where(TenantPin.user_id == user_id, TenantPin.tenant_id == tenant_id)
    ) is not None
