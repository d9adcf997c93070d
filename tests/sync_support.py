"""Fixtures for sync tests: the app pointed at the Graph simulator, tenants connected to it."""
from __future__ import annotations

import uuid

import pytest

from app.extensions import db
from app.models import Tenant
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401  (fixtures)


_graph_app = None  # the app of the running test's graph_app fixture, for sync_now


@pytest.fixture
def graph_app(app, graph_settings):  # noqa: F811
    """The test app using the simulator; a fresh token provider per test."""
    global _graph_app
    before = app.extensions["graph_settings"]
    app.extensions["graph_settings"] = graph_settings
    app.extensions.pop("graph_token_provider", None)
    _graph_app = app
    yield app
    _graph_app = None
    provider = app.extensions.pop("graph_token_provider", None)
    if provider is not None:
        provider.forget_all()
    app.extensions["graph_settings"] = before


@pytest.fixture
def connected_tenant(db_session, graph_app, graph_simulator, make_workspace):  # noqa: F811
    """make(**add_tenant kwargs) -> a Tenant of a new workspace, connected, known to the simulator."""

    def make(workspace=None, *, status: str = "connected", **kwargs) -> Tenant:
        external_id = uuid.uuid4()
        graph_simulator.add_tenant(str(external_id), name=kwargs.pop("name", "Contoso Sync"), **kwargs)
        tenant = Tenant(workspace_id=(workspace or make_workspace()).id, external_id=external_id,
                        name=f"Sync {str(external_id)[:8]}", connection_status=status)
        db_session.add(tenant)
        db_session.commit()
        return tenant

    return make


def sync_now(tenant: Tenant, trigger: str = "command"):
    """Create a run and carry it out in the foreground, as `flask sync-tenant` does. Returns the run."""
    from app.models import SyncRun
    from app.row_security import working_in_workspace
    from app.sync.engine import create_run
    from app.sync.runner import carry_out_sync_run

    assert _graph_app is not None, "sync_now needs the graph_app fixture"
    with _graph_app.app_context(), working_in_workspace(tenant.workspace_id):
        run = create_run(tenant, trigger)
        db.session.commit()
        carry_out_sync_run(run.id)
        return db.session.get(SyncRun, run.id)


def backup_now(tenant: Tenant, trigger: str = "command", **kwargs):
    """Create a backup set and carry it out in the foreground, as the worker would. Returns the set."""
    from app.backup.engine import create_backup
    from app.backup.runner import carry_out_backup
    from app.models import BackupSet
    from app.row_security import working_in_workspace

    assert _graph_app is not None, "backup_now needs the graph_app fixture"
    with _graph_app.app_context(), working_in_workspace(tenant.workspace_id):
        backup_set = create_backup(db.session.get(Tenant, tenant.id), trigger, **kwargs)
        db.session.commit()
        carry_out_backup(backup_set.id)
        return db.session.get(BackupSet, backup_set.id)


def restore_step(run_id: int, workspace_id: int, step: str) -> str:
    """Carry out a restore step ("plan_restore" or "execute_restore") in the foreground, as the worker would."""
    from app.restore.runner import carry_out_restore_step
    from app.row_security import working_in_workspace

    assert _graph_app is not None, "restore_step needs the graph_app fixture"
    with _graph_app.app_context(), working_in_workspace(workspace_id):
        return carry_out_restore_step(step, run_id)
