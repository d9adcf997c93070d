"""Backups that hold under pressure, from the review of issue 12: retention never blocked by a restore and never
pruning the last complete backup, pruning never taking a running backup's items, one hostile object never failing
a whole backup."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.backup.schedules import apply_retention, prune_unreferenced
from app.extensions import db
from app.models import BackupItem, BackupSchedule, BackupSet, RestoreRun, Tenant
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app  # noqa: F401


def test_a_restore_from_an_expired_set_does_not_block_retention(db_session, make_workspace, make_tenant,
                                                                     populate_tenant):
    """A restore refers to its set ON DELETE SET NULL: a planned (even cancelled) restore never keeps an expired
    set alive, and retention of the schedule goes on."""
    tenant = make_tenant(make_workspace())
    ids = populate_tenant(tenant)
    schedule = db_session.get(BackupSchedule, ids["schedule_id"])
    schedule.keep_last = 3
    now = datetime.now(timezone.utc)
    oldest = db_session.get(BackupSet, ids["backup_set_id"])
    oldest.started_at = now - timedelta(days=60)
    for age in (3, 2, 1):  # three newer good sets: the oldest is past retention and not among the newest 3
        db_session.add(BackupSet(tenant_id=tenant.id, name=f"newer {age}", status="completed", triggered_by="schedule",
                                 schedule_id=schedule.id, started_at=now - timedelta(days=age), item_ids=[]))
    run = db_session.get(RestoreRun, ids["restore_run_id"])  # refers to the oldest set
    run.status = "cancelled"
    db_session.commit()
    try:
        deleted = apply_retention(schedule, now)
    except IntegrityError as error:
        db_session.rollback()
        raise AssertionError(f"retention raised: {str(error.orig).splitlines()[0]}") from None
    assert deleted == 1


def test_pruning_during_a_backup_never_takes_the_items_it_already_made(connected_tenant, graph_simulator):
    """The set lists each family's items in the transaction that made them, so a prune between two families
    (another schedule's retention, a command outside the job lock) finds them referenced."""
    from app.backup.engine import create_backup
    from app.backup.runner import carry_out_backup
    from app.row_security import working_in_workspace
    from tests import sync_support

    tenant = connected_tenant()
    # make the first family's objects new: nothing else lists them
    with sync_support._graph_app.app_context(), working_in_workspace(tenant.workspace_id):
        backup_set = create_backup(db.session.get(Tenant, tenant.id), "command")
        db.session.commit()
        pruned = []

        def progress(family_key, outcome):
            if not pruned:
                pruned.append(prune_unreferenced(tenant.id))
                db.session.commit()

        carry_out_backup(backup_set.id, progress=progress)
        backup_set = db.session.get(BackupSet, backup_set.id)
        listed = set(backup_set.item_ids)
        existing = set(db.session.scalars(select(BackupItem.id).where(BackupItem.id.in_(listed))))
    assert listed == existing, f"{len(listed - existing)} listed item ids do not exist"


def test_one_object_with_a_nul_in_a_setting_does_not_fail_the_whole_backup(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    external = str(tenant.external_id)
    victim = graph_simulator.objects(external, "deviceConfigurations")[0]
    graph_simulator.change_object(external, "deviceConfigurations", victim["id"], {"description": "bad\x00value"})
    backup_set = backup_now(tenant)
    assert backup_set.status == "partial", (backup_set.status, backup_set.error)
    assert backup_set.item_count > 0


def test_partial_backups_do_not_count_as_the_good_ones_retention_keeps(db_session, make_workspace, make_tenant):
    """Three nightly partial sets that hold only scope tags (a read permission was removed) are not "the newest
    good ones": the last complete backup stays."""
    tenant = make_tenant(make_workspace())
    schedule = BackupSchedule(tenant_id=tenant.id, name="Nightly", frequency="daily", retention_days=30, keep_last=3)
    db_session.add(schedule)
    db_session.flush()
    now = datetime.now(timezone.utc)
    complete = BackupSet(tenant_id=tenant.id, name="last complete", status="completed", triggered_by="schedule",
                         schedule_id=schedule.id, started_at=now - timedelta(days=31), item_ids=[])
    db_session.add(complete)
    for age in (3, 2, 1):
        db_session.add(BackupSet(tenant_id=tenant.id, name=f"partial {age}", status="partial", triggered_by="schedule",
                                 schedule_id=schedule.id, started_at=now - timedelta(days=age), item_ids=[],
                                 families={"deviceConfigurations": {"items": 0, "skipped": 0,
                                           "error": "Permission DeviceManagementConfiguration.Read.All is not granted."},
                                           "scopeTags": {"items": 2, "skipped": 0, "error": None}}))
    db_session.commit()
    complete_id = complete.id
    apply_retention(schedule, now)
    db_session.commit()
    db_session.expunge_all()
    assert db_session.get(BackupSet, complete_id) is not None, "the only complete backup was pruned"


@pytest.mark.parametrize("answer", [b'{"id": "x", "displayName": "ok", "description": "\\ud800"}',
                                    b'{"id": "x", "displayName": "ok", "description": "a\\u0000b"}'])
def test_a_payload_postgresql_cannot_store_is_refused_before_it_is_stored(answer):
    """JSON may carry a lone surrogate or a NUL (json.loads accepts both); PostgreSQL stores neither. The engine
    counts such an object as skipped (the NUL case runs end to end above; the simulator cannot serve a surrogate)."""
    from app.backup.payloads import check_payload, payload_of
    from app.graph.client import parse_json
    from app.graph.families import FAMILIES_BY_KEY

    family = FAMILIES_BY_KEY["deviceConfigurations"]
    body = payload_of(family, parse_json(answer), {"assignments": []})
    with pytest.raises(ValueError):
        check_payload(family, body)
