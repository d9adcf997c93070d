"""The drift matrix page: its tenants a page at a time with their number, the cells drawn from
the page's findings, and a statement count that does not grow with the tenants."""
from __future__ import annotations

import re

from sqlalchemy import text

from app.operations_models import Baseline, BaselineAssignment, BaselinePolicy, Tag
from tests.conftest import page


def matrix_baseline(db_session, world):
    """A baseline of workspace A (one policy, settings a, b, c) assigned through a tag."""
    baseline = Baseline(workspace_id=world.a.id, name="Matrix baseline")
    tag = Tag(workspace_id=world.a.id, name="Matrix tag")
    db_session.add_all([baseline, tag])
    db_session.flush()
    item = BaselinePolicy(workspace_id=world.a.id, baseline_id=baseline.id, policy_type="deviceConfiguration",
                          platform="windows10", name="Matrix policy", settings={"a": 1, "b": True, "c": "x"})
    db_session.add_all([item, BaselineAssignment(workspace_id=world.a.id, baseline_id=baseline.id, tag_id=tag.id)])
    db_session.commit()
    return baseline, item, tag


def add_tagged_tenants(db_session, world, tag, baseline, item, n: int, prefix: str = "Matrix tenant") -> None:
    """n tenants carrying the tag, each deviating on setting "a" (its value: the tenant's number)."""
    params = {"w": world.a.id, "n": n, "p": prefix, "tag": tag.id}
    db_session.execute(text(
        """INSERT INTO tenants (workspace_id, external_id, name)
           SELECT :w, gen_random_uuid(), :p || ' ' || lpad(g::text, 3, '0') FROM generate_series(1, :n) g"""), params)
    db_session.execute(text(
        """INSERT INTO tenant_tags (tenant_id, tag_id, workspace_id)
           SELECT id, :tag, :w FROM tenants WHERE workspace_id = :w AND name LIKE :p || ' %'"""), params)
    db_session.execute(text(
        """INSERT INTO findings (tenant_id, workspace_id, kind, severity, title, status, baseline_id, subject_key, detail)
           SELECT t.id, :w, 'drift', 'medium', 'Setting a differs', 'open', :b, :key,
                  jsonb_build_object('actualShown', 'value of ' || t.name)
           FROM tenants t WHERE t.workspace_id = :w AND t.name LIKE :p || ' %'"""),
        {**params, "b": baseline.id, "key": f"baseline:{baseline.id}:setting:{item.id}:a"})
    db_session.commit()


def statements_for(client, count_statements, url: str) -> int:
    with count_statements() as counter:
        response = client.get(url)
    assert response.status_code == 200
    return counter.count


def test_the_matrix_costs_the_same_statements_for_5_and_80_tenants(ada, world, db_session, count_statements):
    baseline, item, tag = matrix_baseline(db_session, world)
    url = f"/admin/w/{world.a.slug}/baselines/{baseline.id}/matrix"
    add_tagged_tenants(db_session, world, tag, baseline, item, 5)
    ada.get(url)  # warm: the session's first request reads more
    small = statements_for(ada, count_statements, url)
    add_tagged_tenants(db_session, world, tag, baseline, item, 75, prefix="More tenant")
    large = statements_for(ada, count_statements, url + "?page=2")
    assert large == small


def test_the_matrix_pages_its_tenants_by_name_and_counts_them_all(ada, world, db_session):
    baseline, item, tag = matrix_baseline(db_session, world)
    add_tagged_tenants(db_session, world, tag, baseline, item, 30)
    url = f"/admin/w/{world.a.slug}/baselines/{baseline.id}/matrix"
    body = page(ada, url)
    assert "1–25 of 30" in body and "Page 1 of 2" in body
    assert "Matrix tenant 001" in body and "Matrix tenant 025" in body and "Matrix tenant 026" not in body
    body = page(ada, url + "?page=2")
    assert "26–30 of 30" in body and "Matrix tenant 026" in body and "Matrix tenant 025" not in body
    # Past the end: the last page, with the right count.
    body = page(ada, url + "?page=99")
    assert "26–30 of 30" in body and "Matrix tenant 030" in body
    body = page(ada, url + "?q=tenant+007")
    assert "1–1 of 1" in body and "Matrix tenant 007" in body


def test_the_matrix_draws_the_settings_that_differ_and_every_setting_when_asked(ada, world, db_session):
    baseline, item, tag = matrix_baseline(db_session, world)
    add_tagged_tenants(db_session, world, tag, baseline, item, 3)
    accepted = db_session.scalar(text("SELECT id FROM tenants WHERE name = 'Matrix tenant 002'"))
    db_session.execute(text("UPDATE findings SET status = 'accepted' WHERE tenant_id = :t"), {"t": accepted})
    missing = db_session.scalar(text("SELECT id FROM tenants WHERE name = 'Matrix tenant 003'"))
    db_session.execute(text("DELETE FROM findings WHERE tenant_id = :t"), {"t": missing})
    db_session.execute(text(
        """INSERT INTO findings (tenant_id, workspace_id, kind, severity, title, status, baseline_id, subject_key)
           VALUES (:t, :w, 'drift', 'high', 'Missing', 'open', :b, :key)"""),
        {"t": missing, "w": world.a.id, "b": baseline.id, "key": f"baseline:{baseline.id}:missing:{item.id}"})
    db_session.commit()
    url = f"/admin/w/{world.a.slug}/baselines/{baseline.id}/matrix"
    body = page(ada, url)
    assert "3 of 3 settings differ" in body  # tenant 003 lacks the whole policy: every setting differs there
    assert "value of Matrix tenant 001" in body and "cell-accepted" in body and "cell-missing" in body
    db_session.execute(text("UPDATE findings SET status = 'resolved' WHERE baseline_id = :b"), {"b": baseline.id})
    db_session.commit()
    body = page(ada, url)
    assert "0 of 3 settings differ" in body and "Every setting is compliant" in body
    body = page(ada, url + "?show=all")
    assert len(re.findall(r'class="matrix-row"', body)) == 3 and body.count("cell-compliant") == 9


def test_a_tenant_never_evaluated_is_not_checked_in_grey_never_compliant(ada, world, db_session):
    """Never connected or synced and no finding of the baseline: it was never compared, so no ✓."""
    baseline, item, tag = matrix_baseline(db_session, world)
    add_tagged_tenants(db_session, world, tag, baseline, item, 2)
    db_session.execute(text(
        """INSERT INTO tenants (workspace_id, external_id, name) VALUES (:w, gen_random_uuid(), 'Matrix never read')"""),
        {"w": world.a.id})
    db_session.execute(text(
        """INSERT INTO tenant_tags (tenant_id, tag_id, workspace_id)
           SELECT id, :tag, :w FROM tenants WHERE name = 'Matrix never read'"""), {"tag": tag.id, "w": world.a.id})
    db_session.commit()
    url = f"/admin/w/{world.a.slug}/baselines/{baseline.id}/matrix"
    body = page(ada, url + "?show=all")
    assert body.count('class="cell cell-not-evaluated"') == 3  # one per setting, the never-read tenant's column
    assert body.count("cell-compliant") == 4  # b and c of the two evaluated tenants
    assert "tenant-not-evaluated" in body and "not evaluated yet" in body
    body = page(ada, url)
    assert "1 of 3 settings differ" in body and "(1 tenant not checked yet)" in body
    # Its findings resolved, an evaluated tenant stays compliant: a resolved finding proves the comparison.
    db_session.execute(text("UPDATE findings SET status = 'resolved' WHERE baseline_id = :b"), {"b": baseline.id})
    db_session.commit()
    body = page(ada, url + "?show=all")
    assert body.count('class="cell cell-not-evaluated"') == 3 and body.count("cell-compliant") == 6
    assert "Every setting is compliant for the evaluated tenants" in page(ada, url)


def test_a_synced_tenant_without_findings_is_compliant_and_old_version_results_say_so(ada, world, db_session):
    baseline, item, tag = matrix_baseline(db_session, world)
    add_tagged_tenants(db_session, world, tag, baseline, item, 2)
    db_session.execute(text("UPDATE baselines SET version = 2 WHERE id = :b"), {"b": baseline.id})
    db_session.execute(text(
        """UPDATE findings SET detail = detail || '{"baselineVersion": 1}'
           WHERE tenant_id = (SELECT id FROM tenants WHERE name = 'Matrix tenant 001')"""))
    db_session.execute(text("DELETE FROM findings WHERE tenant_id = (SELECT id FROM tenants WHERE name = 'Matrix tenant 002')"))
    db_session.execute(text("UPDATE tenants SET connection_status = 'connected', last_sync_at = now() "
                            "WHERE name = 'Matrix tenant 002'"))
    db_session.commit()
    body = page(ada, f"/admin/w/{world.a.slug}/baselines/{baseline.id}/matrix?show=all")
    assert "cell cell-not-evaluated" not in body
    assert body.count("cell-compliant") == 5 and "compared with v1" in body
