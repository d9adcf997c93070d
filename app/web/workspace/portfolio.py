"""/admin/w/<slug>: the workspace-scoped portfolio (landing, tenant registration, audit, switcher search)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import String, and_, cast, func, literal, null, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from app.access import parse_external_id, require_role, require_workspace_member
from app.audit import record_audit
from app.extensions import db
from app.web.forms import ActionForm, TenantRegisterForm
from app.web.csv_export import AUDIT_CSV_HEADER, audit_csv_row, csv_response, read_date_range, sorted_for_export
from app.web.listing import (KeysetSort, capped_count, keyset_page, paginate, read_list_params, read_search_term,
                      search_clause)
from app.models import AuditLog, Tenant, TenantHealth, User, WorkspaceTenantTotal
from app.operations_models import Baseline, Tag, TenantTag
from app.web.shell import current_query_suffix
from app.web.workspace.switcher import search_switcher_tenants
from app.web.tenant.tenant_pages import tenant_page_match
from app.validation import parse_database_id

bp = Blueprint("portfolio", __name__, url_prefix="/admin/w/<slug>")


@bp.url_value_preprocessor
def take_slug(endpoint, values):
    g.workspace_slug = values.pop("slug", None) if values else None


@bp.url_defaults
def add_slug(endpoint, values):
    # Links to portfolio pages default to the workspace of the page being rendered.
    access = g.get("workspace_access")
    if "slug" not in values and access is not None:
        values["slug"] = access.workspace.slug


@bp.before_request
@login_required
def require_membership():
    """Every portfolio page: a member of this workspace, or 404. Visiting makes it current."""
    require_workspace_member(g.workspace_slug or "")


# --- the landing: the portfolio's health table ---------------------------------------------

STATUS_FILTERS = ("active", "archived", "all")
# A search or tag filter is counted up to here ("1,000+"): past it an exact number costs a
# scan of every matching tenant per page and tells a person nothing more.
COUNT_CAP = 1000


def portfolio_page(workspace_id: int):
    """One page of the portfolio (see portfolio_query) by seeking: usually one statement,
    whose cost does not grow with the workspace (each sort is one index's range, migration 0018)."""
    params, statement, sortable, rows = portfolio_query(workspace_id)
    total, cap = portfolio_total(workspace_id, params, rows)
    return keyset_page(statement, params, portfolio_sorts(sortable, workspace_id), tiebreak=Tenant.id, scope=workspace_id,
                       total=total, cap=cap)


def portfolio_sorts(sortable: dict, workspace_id: int) -> dict[str, KeysetSort]:
    """The keyset form of each sortable column: a key may be NULL if its column is nullable or
    comes from tenant_health (outer-joined: a tenant without a health row has none).

    A health sort reads tenant_health in index order (its keyed rows join their tenant, so the
    health row's tenant_id is the tiebreak). Its NULL-key rows, read at the end of the list,
    are a range of the same index unless some tenant of the workspace has no health row at
    all (rows restored with triggers off, before `flask refresh-tenant-health`): only then are
    the tenants scanned for them.
    """
    def may_be_null(column) -> bool:
        return bool(getattr(column, "nullable", True)) or column.table is TenantHealth.__table__

    def health_null_rows(first):
        def condition():
            if every_tenant_has_health_row(workspace_id):
                return and_(TenantHealth.tenant_id.is_not(None), first.is_(None))
            return first.is_(None)
        return condition

    sorts = {}
    for name, columns in sortable.items():
        columns = columns if isinstance(columns, tuple) else (columns,)
        from_health = columns[0].table is TenantHealth.__table__
        sorts[name] = KeysetSort(columns, nullable=any(may_be_null(column) for column in columns),
                                 tiebreak=TenantHealth.tenant_id if from_health else None,
                                 null_rows=health_null_rows(columns[0]) if from_health else None)
    return sorts


def every_tenant_has_health_row(workspace_id: int) -> bool:
    """Whether the workspace's health rows are as many as its tenants (asked at the end of a
    health-sorted list only). Both counted, not read from the kept totals: a tenant written with
    triggers off (a restore) has neither a health row nor a place in the totals, and must still
    be listed, as "Health not counted yet"."""
    health_rows = select(func.count()).select_from(TenantHealth).where(
        TenantHealth.workspace_id == workspace_id).scalar_subquery()
    tenants = select(func.count()).select_from(Tenant).where(Tenant.workspace_id == workspace_id).scalar_subquery()
    return bool(db.session.scalar(select(health_rows >= tenants)))


def portfolio_total(workspace_id: int, params, rows: list):
    """(scalar select, cap): how many tenants the page's filter matches, read with the page.

    Status alone: the workspace's totals (kept by triggers, migration 0018), exact and
    one row per status. A search or tag: counted up to COUNT_CAP + 1 (the page says "1,000+").
    """
    if not params.q and not params.filters.get("tag"):
        totals = [WorkspaceTenantTotal.workspace_id == workspace_id]
        if params.filters["status"] != "all":
            totals.append(WorkspaceTenantTotal.status == params.filters["status"])
        return select(func.coalesce(func.sum(WorkspaceTenantTotal.tenants), 0)).where(*totals), None
    if not params.q:
        # The tag alone: read from the tag's own index, each tenant probed for its status (a
        # join the planner would otherwise build from every tagged tenant of the workspace).
        tagged = (select(TenantTag.tenant_id).join(Tenant, Tenant.id == TenantTag.tenant_id)
                  .where(TenantTag.workspace_id == workspace_id, TenantTag.tag_id == int(params.filters["tag"]),
                         *rows[1:2] if params.filters["status"] != "all" else ()))
        return capped_count(tagged, COUNT_CAP), COUNT_CAP
    return capped_count(select(Tenant.id).where(*rows), COUNT_CAP), COUNT_CAP


def portfolio_query(workspace_id: int):
    """(params, statement, sortable, conditions): the workspace's tenants with their health, as
    the query string filters them (the page and the CSV export share it).

    The health columns come from tenant_health (kept by database triggers), so
    sorting by one of them sorts one row per tenant instead of counting every
    policy of the workspace.
    """
    health = TenantHealth
    # Worst first: by critical, then high, medium, low (a weighted sum would let eleven
    # low findings outrank one medium).
    findings_by_severity = (health.open_critical, health.open_high, health.open_medium, health.open_low)
    sortable = {
        "name": Tenant.name,
        "domain": Tenant.primary_domain,
        # The GUID itself: its order is the order of its text, and it has an index.
        "external_id": Tenant.external_id,
        "status": Tenant.status,
        "policies": health.policy_count,
        "last_backup": health.last_backup_at,
        "findings": findings_by_severity,
        "missing_permissions": health.missing_permissions,
    }
    params = portfolio_params(workspace_id, sortable)
    rows = portfolio_conditions(workspace_id, params)
    # Each tenant's tag ids, in the page's own statement (the names come with the filter's choices).
    tag_ids = (select(func.array_agg(TenantTag.tag_id)).where(TenantTag.tenant_id == Tenant.id)
               .correlate(Tenant).scalar_subquery())
    statement = (
        select(
            Tenant, health.policy_count, health.last_backup_at, health.last_backup_status,
            health.open_critical, health.open_high, health.open_medium, health.open_low,
            health.missing_permissions, tag_ids.label("tag_ids"),
        )
        # Outer: a tenant whose row is missing (restored with triggers off, before a
        # refresh) is still listed, with its health unknown rather than zero.
        .outerjoin(health, and_(health.tenant_id == Tenant.id, health.workspace_id == workspace_id))
        .where(*rows)
    )
    return params, statement, sortable, rows


def portfolio_params(workspace_id: int, sortable: dict):
    """The portfolio's list parameters: search, sort, status, and a tag id.

    The tag is not looked up: the filter joins the workspace's own tenant_tags, so an id that
    is no tag of this workspace matches no tenant (and says nothing about other workspaces).
    """
    params = read_list_params(sortable, "name", filters={"status": STATUS_FILTERS},
                              filter_defaults={"status": "active"})
    tag_id = parse_database_id(request.args.get("tag", "")[:20])
    params.filters["tag"] = str(tag_id) if tag_id is not None else ""
    return params


def portfolio_conditions(workspace_id: int, params) -> list:
    """Which tenants the portfolio lists: the page, its CSV and a bulk action on "all that match" alike."""
    rows = [Tenant.workspace_id == workspace_id]
    if params.filters["status"] != "all":
        rows.append(Tenant.status == params.filters["status"])
    if params.filters.get("tag"):
        rows.append(Tenant.id.in_(select(TenantTag.tenant_id).where(
            TenantTag.workspace_id == workspace_id, TenantTag.tag_id == int(params.filters["tag"]))))
    if params.q:
        rows.append(search_clause([Tenant.name, Tenant.primary_domain, cast(Tenant.external_id, String)], params.q))
    return rows


@dataclass(frozen=True)
class Choice:
    """A tag or baseline the portfolio's filter and bulk bar offer."""

    id: int
    name: str
    colour: str | None = None


def portfolio_choices(workspace_id: int) -> tuple[list[Choice], list[Choice]]:
    """(tags, baselines) of the workspace, in one statement."""
    tags = select(literal("tag").label("kind"), Tag.id, Tag.name, Tag.colour).where(Tag.workspace_id == workspace_id)
    baselines = select(literal("baseline"), Baseline.id, Baseline.name, cast(null(), String)).where(
        Baseline.workspace_id == workspace_id)
    rows = db.session.execute(tags.union_all(baselines).order_by("kind", "name")).all()
    return ([Choice(r.id, r.name, r.colour) for r in rows if r.kind == "tag"],
            [Choice(r.id, r.name) for r in rows if r.kind == "baseline"])


def workspace_has_tenants(workspace_id: int, page) -> bool:
    """Whether the workspace has any tenant, archived ones included (asked only when the page is empty)."""
    if page.total:
        return True
    return db.session.scalar(select(Tenant.id).where(Tenant.workspace_id == workspace_id).limit(1)) is not None


def _portfolio_context(workspace_id: int, page) -> dict:
    tags, baselines = portfolio_choices(workspace_id)
    return {"tags": tags, "tags_by_id": {tag.id: tag for tag in tags}, "baselines": baselines}


@bp.get("/managed-tenants")
def managed_tenants():
    workspace_id = g.workspace_access.workspace.id
    page = portfolio_page(workspace_id)
    return render_template("portfolio/managed_tenants.html", page=page, has_tenants=workspace_has_tenants(workspace_id, page),
                           register_form=TenantRegisterForm(), action_form=ActionForm(),
                           **_portfolio_context(workspace_id, page))


@bp.post("/managed-tenants")
def register_tenant():
    require_role("manager", "register tenants")
    workspace = g.workspace_access.workspace
    form = TenantRegisterForm()
    if form.validate_on_submit():
        external_id = uuid.UUID(form.external_id.data)
        tenant = Tenant(workspace_id=workspace.id, external_id=external_id, name=form.name.data,
                        primary_domain=form.primary_domain.data or None)
        db.session.add(tenant)
        try:
            # The unique key (workspace, tenant id) decides, race-free. Another workspace's
            # registration of the same id plays no part: a registration proves nothing until
            # admin consent (migration 0011), so no answer here depends on other workspaces.
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            form.external_id.errors.append("This tenant is registered in this workspace already.")
        else:
            record_audit("tenant.create", actor=current_user, tenant=tenant, target_type="tenant",
                         target_id=tenant.id, target_name=tenant.name, details={"before": None, "after": {
                             "external_id": str(external_id), "name": tenant.name,
                             "primary_domain": tenant.primary_domain}})
            db.session.commit()
            flash(f"Tenant {tenant.name} registered.", "success")
            return redirect(url_for(".managed_tenants"))
    page = portfolio_page(workspace.id)
    return render_template("portfolio/managed_tenants.html", page=page, has_tenants=workspace_has_tenants(workspace.id, page),
                           register_form=form, action_form=ActionForm(), show_register=True,
                           **_portfolio_context(workspace.id, page)), 400


def _workspace_tenant_or_404(external_id: str) -> Tenant:
    tenant_uuid = parse_external_id(external_id)
    tenant = None
    if tenant_uuid is not None:
        tenant = db.session.scalar(select(Tenant).where(
            Tenant.external_id == tenant_uuid, Tenant.workspace_id == g.workspace_access.workspace.id))
    if tenant is None:
        abort(404)
    return tenant


def _set_tenant_status(external_id: str, status: str, verb: str):
    require_role("manager", f"{verb} tenants")
    tenant = _workspace_tenant_or_404(external_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    before = tenant.status
    if before != status:
        tenant.status = status
        record_audit(f"tenant.{verb}", actor=current_user, tenant=tenant, target_type="tenant",
                     target_id=tenant.id, target_name=tenant.name,
                     details={"before": {"status": before}, "after": {"status": status}})
        db.session.commit()
        flash(f"{tenant.name} {verb}d.", "success")
    return redirect(request.referrer if _same_site(request.referrer) else url_for(".managed_tenants"))


def _same_site(url: str | None) -> bool:
    return bool(url) and url.startswith(request.host_url)


@bp.post("/managed-tenants/<external_id>/archive")
def archive_tenant(external_id: str):
    return _set_tenant_status(external_id, "archived", "archive")


@bp.post("/managed-tenants/<external_id>/unarchive")
def unarchive_tenant(external_id: str):
    return _set_tenant_status(external_id, "active", "unarchive")


PORTFOLIO_CSV_HEADER = ("Tenant", "Tenant ID", "Primary domain", "Status", "Connection", "Last sync",
                        "Policies", "Last backup", "Last backup status", "Open critical", "Open high",
                        "Open medium", "Open low", "Missing permissions")


@bp.get("/managed-tenants.csv")
def managed_tenants_csv():
    """The portfolio as filtered and sorted on the page, every page of it, streamed."""
    workspace = g.workspace_access.workspace
    params, statement, sortable, _rows = portfolio_query(workspace.id)
    def rows():
        for t, policies, backup_at, backup_status, critical, high, medium, low, missing, _tags in db.session.execute(
                sorted_for_export(statement, sortable, params,
                                  Tenant.id.desc() if params.direction == "desc" else Tenant.id)):
            yield (t.name, str(t.external_id), t.primary_domain, t.status, t.connection_status, t.last_sync_at,
                   policies, backup_at, backup_status, critical, high, medium, low, missing)

    return csv_response(f"tenants-{workspace.slug}.csv", PORTFOLIO_CSV_HEADER, rows)


# --- permalinks: a tenant page that names its workspace --------------------------------------


@bp.get("/t/<tenant_ext>", defaults={"rest": ""})
@bp.get("/t/<tenant_ext>/<path:rest>")
def tenant_permalink(tenant_ext: str, rest: str):
    """/admin/w/<slug>/t/<tenant>/<section path>: a link that works whatever workspace is current.

    The membership check (require_membership) has made this workspace current; the tenant
    must be one of its tenants and the rest a tenant page, else the same 404 as anywhere.
    """
    tenant = _workspace_tenant_or_404(tenant_ext)
    target = url_for("tenant.dashboard", tenant_ext=str(tenant.external_id)) + (f"/{rest}" if rest else "")
    if tenant_page_match(target) is None:
        abort(404)
    return redirect(target + current_query_suffix())


def tenant_permalink_of_this_page() -> str | None:
    """The workspace-qualified permalink of the tenant page being rendered (for "Copy link")."""
    access = g.get("tenant_access")
    if access is None or request.method != "GET":
        return None
    prefix = url_for("tenant.dashboard", tenant_ext=str(access.tenant.external_id))
    rest = request.path[len(prefix):].strip("/") if request.path.startswith(prefix) else ""
    link = url_for("portfolio.tenant_permalink", slug=access.workspace.slug,
                   tenant_ext=str(access.tenant.external_id), rest=rest or None)
    return link + current_query_suffix()


# --- the workspace audit log ---------------------------------------------------------------


def workspace_audit_query(workspace_id: int):
    """(params, statement, sortable) of the workspace's audit log: search, and a date range (from, to)."""
    actor = aliased(User)
    sortable = {"created_at": AuditLog.created_at, "action": AuditLog.action}
    params = read_list_params(sortable, "created_at", default_direction="desc")
    statement = (
        select(AuditLog, actor.name, Tenant.name, Tenant.external_id)
        .outerjoin(actor, actor.id == AuditLog.actor_user_id)
        .outerjoin(Tenant, and_(Tenant.id == AuditLog.tenant_id, Tenant.workspace_id == workspace_id))
        .where(AuditLog.workspace_id == workspace_id)
    )
    if params.q:
        statement = statement.where(search_clause([AuditLog.action, actor.name, Tenant.name, AuditLog.target_name], params.q))
    start, end = read_date_range(request.args)
    if start:
        statement = statement.where(AuditLog.created_at >= start)
    if end:
        statement = statement.where(AuditLog.created_at < end)
    return params, statement, sortable


def workspace_audit_page(workspace_id: int):
    params, statement, sortable = workspace_audit_query(workspace_id)
    return paginate(statement, params, sortable, tiebreak=AuditLog.id.desc(), scalars=False)


@bp.get("/audit")
def audit_log():
    return render_template("portfolio/audit.html", page=workspace_audit_page(g.workspace_access.workspace.id))


@bp.get("/audit.csv")
def audit_log_csv():
    workspace = g.workspace_access.workspace
    params, statement, sortable = workspace_audit_query(workspace.id)
    def rows():
        for entry, actor_name, tenant_name, _ext in db.session.execute(
                sorted_for_export(statement, sortable, params, AuditLog.id.desc())):
            yield audit_csv_row(entry, actor_name, tenant_name)

    return csv_response(f"audit-{workspace.slug}.csv", AUDIT_CSV_HEADER, rows)


# --- the tenant switcher's search ------------------------------------------------------------


@bp.get("/tenant-switcher/search")
def switcher_search():
    term = read_search_term()
    tenants = search_switcher_tenants(g.workspace_access.workspace.id, term)
    return jsonify(results=[
        {"external_id": str(t.external_id), "name": t.name, "domain": t.primary_domain} for t in tenants
    ])


@bp.get("/tenant-switcher")
def switcher_fragment():
    return render_template("_tenant_switcher_list.html")
