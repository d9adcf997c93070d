"""The workspace findings page's filters, and the per-tenant CSV exports: exactly what was asked for."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from sqlalchemy import select

from app.drift import evaluate_tenant
from app.drift.findings import triage
from app.extensions import db
from app.models import Finding
from app.operations_models import Tag, TenantTag
from app.web.csv_export import cell
from tests.conftest import page, post_form, tenant_url

NOW = datetime.now(timezone.utc)


def rows(response):
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def computed(tenant, kind):
    return db.session.scalars(select(Finding).where(Finding.tenant_id == tenant.id, Finding.kind == kind)).all()


def test_the_workspace_findings_page_filtered_by_tag_or_status_leaves_the_others_out(ada, world, db_session):
    for t in (world.tenant_a, world.tenant_a2):
        t.connection_status = "consent_revoked"
        evaluate_tenant(t, NOW)
    vip = Tag(workspace_id=world.a.id, name="VIP")
    db_session.add(vip)
    db_session.flush()
    db_session.add(TenantTag(tenant_id=world.tenant_a2.id, tag_id=vip.id, workspace_id=world.a.id))
    db_session.commit()
    body = page(ada, f"/admin/w/{world.a.slug}/findings?tag={vip.id}")
    assert world.tenant_a2.name in body and world.tenant_a.name not in body
    [f] = computed(world.tenant_a2, "connection")
    triage(f, "acknowledge", by="Ada", now=NOW, note="x")
    db_session.commit()
    body = page(ada, f"/admin/w/{world.a.slug}/findings?status=acknowledged")
    assert world.tenant_a2.name in body and world.tenant_a.name not in body


def test_a_tenants_findings_and_audit_csv_hold_only_that_tenant_and_the_audit_honours_its_end_date(ada, world, db_session):
    world.tenant_a2.connection_status = "consent_revoked"
    evaluate_tenant(world.tenant_a2, NOW)
    db_session.commit()
    got = rows(ada.get(tenant_url(world.tenant_a, "/findings.csv?status=all")))
    assert {r[0] for r in got[1:]} == {world.tenant_a.name}
    post_form(ada, tenant_url(world.tenant_a2, "/pin"))
    audit = rows(ada.get(tenant_url(world.tenant_a, "/audit.csv")))
    assert all(r[3] == world.tenant_a.name for r in audit[1:])
    post_form(ada, tenant_url(world.tenant_a, "/pin"))
    assert rows(ada.get(tenant_url(world.tenant_a, "/audit.csv?to=2001-01-01")))[1:] == []


def test_a_cell_starting_with_minus_or_at_is_neutralised_and_numbers_stay_numbers():
    assert cell("-2+3") == "'-2+3" and cell("@SUM(A1)") == "'@SUM(A1)" and cell(-5) == -5
