"""Alembic environment for TenantAtlas.

Every revision runs in its own transaction (transaction_per_migration) with a
short lock_timeout, so a migration that meets a busy table fails fast and can be
retried instead of queueing every request behind its lock. Revisions that must
wait longer (validation, CREATE INDEX CONCURRENTLY) lift statement_timeout
themselves, locally.
"""
import logging
import os
import sys
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from flask import current_app

config = context.config
# Revisions import shared helpers as `migrations.rollout`.
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)
if config.config_file_name:
    # Keep the app's own loggers working when migrations run inside it.
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

LOCK_TIMEOUT = os.environ.get("MIGRATION_LOCK_TIMEOUT", "2s")
STATEMENT_TIMEOUT = os.environ.get("MIGRATION_STATEMENT_TIMEOUT", "60s")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_metadata():
    return current_app.extensions["migrate"].db.metadata


def run_migrations_offline():
    """Emit SQL to stdout (`flask db upgrade --sql`): what the linter reads."""
    url = get_engine().url.render_as_string(hide_password=False)
    context.configure(
        url=url,
        target_metadata=get_metadata(),
        literal_binds=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        context.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context, revision, directives):
        # `flask db migrate` with no schema change writes no empty revision.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)

    with get_engine().connect() as connection:
        # Session-level settings: they hold for every per-revision transaction.
        connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        connection.exec_driver_sql(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=get_metadata(),
            transaction_per_migration=True,
            **conf_args,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
