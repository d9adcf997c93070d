"""Editing a baseline on its page: drop a setting, drop a policy; each edit is a new version."""
from __future__ import annotations

from sqlalchemy import select

from app.models import Policy
from app.operations_models import Baseline, BaselinePolicy
from tests.conftest import post_form


def test_dropping_a_setting_then_a_policy_on_the_page_makes_a_new_version_each(ada, world, db_session):
    policy = db_session.scalar(select(Policy).where(Policy.tenant_id == world.tenant_a.id))
    policy.settings = {"passwordRequired": True, "minLength": 12}
    db_session.commit()
    base = f"/admin/w/{world.a.slug}/baselines"
    post_form(ada, base, {"name": "Std", "tenant": str(world.tenant_a.external_id), "severity": "high"})
    baseline = db_session.scalar(select(Baseline).where(Baseline.workspace_id == world.a.id))
    item = db_session.scalar(select(BaselinePolicy).where(BaselinePolicy.baseline_id == baseline.id))
    post_form(ada, f"{base}/{baseline.id}/policies/{item.id}/edit", {"action": "drop_setting", "key": "minLength"})
    db_session.refresh(item)
    assert item.settings == {"passwordRequired": True}
    post_form(ada, f"{base}/{baseline.id}/policies/{item.id}/edit", {"action": "drop_policy"})
    db_session.expire_all()
    assert db_session.get(BaselinePolicy, item.id) is None
    assert db_session.get(Baseline, baseline.id).version == 3
