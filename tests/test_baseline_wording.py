"""The baseline pages' words: counts in singular or plural, readable policy kinds, an example
placeholder that does not look filled in, and a confirmation before deleting a baseline."""
from __future__ import annotations

import re

from sqlalchemy import text

from app.drift.baselines import policy_kind_label
from app.operations_models import BaselineAssignment, BaselinePolicy
from tests.conftest import page
from tests.test_drift_matrix import matrix_baseline


def test_policy_kinds_read_as_words_and_an_unknown_platform_says_so():
    assert policy_kind_label("deviceCompliancePolicy", "unknown") == "Compliance policy · platform unknown"
    assert policy_kind_label("deviceConfiguration", "windows10") == "Device configuration · Windows 10/11"
    assert policy_kind_label("appProtectionPolicy", "iOS") == "App protection · iOS/iPadOS"
    assert policy_kind_label("somethingNew", "tvOS") == "somethingNew · tvOS"  # unlisted: kept as Graph says it


def test_the_index_counts_tags_and_tenants_in_singular_or_plural(ada, world, db_session):
    baseline, _item, _tag = matrix_baseline(db_session, world)  # assigned through one tag
    body = page(ada, f"/admin/w/{world.a.slug}/baselines")
    assert "tenant(s)" not in body and "tag(s)" not in body
    assert '<td class="baseline-assigned">1 tag</td>' in body
    db_session.add(BaselineAssignment(workspace_id=world.a.id, baseline_id=baseline.id, tenant_id=world.tenant_a.id))
    db_session.commit()
    assert '<td class="baseline-assigned">1 tag, 1 tenant</td>' in page(ada, f"/admin/w/{world.a.slug}/baselines")
    db_session.execute(text("DELETE FROM baseline_assignments WHERE baseline_id = :b"), {"b": baseline.id})
    db_session.commit()
    assert "nobody yet" in page(ada, f"/admin/w/{world.a.slug}/baselines")


def test_the_name_placeholder_is_an_example_not_a_value(ada, world):
    body = page(ada, f"/admin/w/{world.a.slug}/baselines")
    assert 'placeholder="e.g. MSP Standard"' in body and 'placeholder="MSP Standard"' not in body
    body = page(ada, f"/admin/w/{world.a.slug}/baselines/from-backup?backup_set={world.ids_a['backup_set_id']}")
    assert 'placeholder="e.g. MSP Standard"' in body


def test_the_detail_page_names_policy_kinds_and_asks_before_deleting(ada, world, db_session):
    baseline, item, _tag = matrix_baseline(db_session, world)
    db_session.add(BaselinePolicy(workspace_id=world.a.id, baseline_id=baseline.id, policy_type="deviceCompliancePolicy",
                                  platform="unknown", name="Typeless compliance", settings={"x": 1}))
    db_session.commit()
    body = page(ada, f"/admin/w/{world.a.slug}/baselines/{baseline.id}")
    assert "Compliance policy · platform unknown" in body and "Device configuration · Windows 10/11" in body
    assert "deviceCompliancePolicy · unknown</div>" not in body
    assert 'class="delete-baseline-form" data-confirm="Delete the baseline Matrix baseline?' in body
    assert "drift findings are deleted with it" in body


def test_the_backup_list_keeps_dates_whole_and_counts_items(ada, world):
    body = page(ada, f"/admin/w/{world.a.slug}/baselines/from-backup?tenant={world.tenant_a.external_id}")
    assert "item(s)" not in body and re.search(r"· \d+ items? ·", body)
    assert re.search(r'class="[^"]*backup-set-details[^"]*">[^<]*<span class="text-nowrap">', body)
