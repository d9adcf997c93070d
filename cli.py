"""Management commands, registered on the app so that `flask <command>` works.

Bad input gets a clear message and exit code 1, never a traceback.
"""
from __future__ import annotations

import functools
import sys

import click
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.audit import record_audit
from app.extensions import db
from app.isolation import WorkspaceMismatchError
from app.models import ROLES, AuditLog, SyncRun, Tenant, User, Workspace, WorkspaceMembership
from app.passwords import hash_password
from app.validation import (
    ValidationError,
    validate_domain,
    validate_email,
    validate_name,
    validate_password,
    validate_slug,
    parse_tenant_external_id,
)


class StrictCommand(click.Command):
    """A command whose usage errors (missing argument, unknown option) exit 1 like any bad input."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:
            error.exit_code = 1
            raise


def database_errors_as_messages(command):
    """Turn a missing schema or an unreachable database into a one-line error."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ValidationError, WorkspaceMismatchError) as error:
            db.session.rollback()
            raise click.ClickException(str(error)) from None
        except ProgrammingError as error:
            db.session.rollback()
            if "does not exist" in str(error.orig):
                raise click.ClickException(
                    "The database has no TenantAtlas schema yet. Run `flask db upgrade` first."
                ) from None
            raise
        except OperationalError as error:
            db.session.rollback()
            raise click.ClickException(f"Cannot reach the database: {error.orig}".strip()) from None

    return wrapper


def _tenant_by_external_id(external_id: str, slug: str | None, *, for_update: bool = False) -> Tenant:
    """The tenant with this Entra id, in workspace `slug` when given.

    An id may be registered (unproved) in several workspaces; without --workspace the one
    proved by admin consent is meant, or the only registration.
    """
    tenant_uuid = parse_tenant_external_id(external_id)
    statement = select(Tenant).where(Tenant.external_id == tenant_uuid)
    if slug is not None:
        statement = statement.where(Tenant.workspace_id == _workspace_by_slug(slug).id)
    if for_update:
        statement = statement.with_for_update()
    tenants = db.session.scalars(statement.order_by(Tenant.consented_at.desc().nulls_last(), Tenant.id)).all()
    if not tenants:
        raise click.ClickException(f"No tenant with id {tenant_uuid}" + (f" in {slug}." if slug else "."))
    if len(tenants) > 1 and tenants[0].consented_at is None:
        raise click.ClickException(f"Tenant id {tenant_uuid} is registered in {len(tenants)} workspaces and "
                                   "proved by consent in none; name one with --workspace SLUG.")
    return tenants[0]


def _workspace_by_slug(slug: str) -> Workspace:
    workspace = db.session.scalar(select(Workspace).where(Workspace.slug == slug.strip().lower()))
    if workspace is None:
        raise click.ClickException(f"No workspace with slug {slug!r}.")
    return workspace


def register_commands(app: Flask) -> None:
    register_rollout_commands(app)
    register_graph_commands(app)

    @app.cli.command("create-user", cls=StrictCommand)
    @click.argument("email")
    @click.option("--name", required=True, help="Display name.")
    @click.option("--password", help="Prompted for (hidden) when not given.")
    @click.option("--admin", is_flag=True, help="A platform administrator (may create workspaces).")
    @database_errors_as_messages
    def create_user(email: str, name: str, password: str | None, admin: bool):
        """Create a user who can sign in."""
        email = validate_email(email)
        name = validate_name(name)
        if db.session.scalar(select(User.id).where(User.email == email)) is not None:
            raise click.ClickException(f"A user with email {email} already exists.")
        if password is None:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        password = validate_password(password)
        user = User(email=email, name=name, password_hash=hash_password(password), is_admin=admin)
        db.session.add(user)
        db.session.flush()
        record_audit("user.create", target_type="user", target_id=user.id, target_name=user.name,
                     details={"email": email, "is_admin": admin})
        db.session.commit()
        click.echo(f"Created {'administrator' if admin else 'user'} {email}.")

    @app.cli.command("set-admin", cls=StrictCommand)
    @click.argument("email")
    @click.option("--revoke", is_flag=True, help="Take the administrator flag away instead.")
    @database_errors_as_messages
    def set_admin(email: str, revoke: bool):
        """Make an existing user a platform administrator (or, with --revoke, no longer one)."""
        user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise click.ClickException(f"No user with email {email.strip()!r}.")
        if user.is_admin == (not revoke):
            click.echo(f"{user.email} {'is not' if revoke else 'is already'} an administrator; nothing changed.")
            return
        user.is_admin = not revoke
        record_audit("user.admin_revoke" if revoke else "user.admin_grant", target_type="user", target_id=user.id,
                     target_name=user.name, details={"before": {"is_admin": revoke}, "after": {"is_admin": not revoke}})
        db.session.commit()
        click.echo(f"{user.email} is {'no longer' if revoke else 'now'} an administrator.")

    @app.cli.command("create-workspace", cls=StrictCommand)
    @click.argument("slug")
    @click.option("--name", required=True, help="Display name.")
    @database_errors_as_messages
    def create_workspace(slug: str, name: str):
        """Create a workspace (an MSP portfolio)."""
        slug = validate_slug(slug)
        name = validate_name(name)
        if db.session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
            raise click.ClickException(f"A workspace with slug {slug!r} already exists.")
        workspace = Workspace(slug=slug, name=name)
        db.session.add(workspace)
        db.session.flush()
        record_audit("workspace.create", workspace=workspace, target_type="workspace", target_id=workspace.id,
                     target_name=workspace.name, details={"before": None, "after": {"slug": slug, "name": name}})
        db.session.commit()
        click.echo(f"Created workspace {slug}.")

    @app.cli.command("add-member", cls=StrictCommand)
    @click.argument("slug")
    @click.argument("email")
    @click.option("--role", required=True, help=f"One of: {', '.join(ROLES)}.")
    @database_errors_as_messages
    def add_member(slug: str, email: str, role: str):
        """Add a user to a workspace with a role (or change their role)."""
        role = role.strip().lower()
        if role not in ROLES:
            raise click.ClickException(f"Unknown role {role!r}. Choose one of: {', '.join(ROLES)}.")
        workspace = _workspace_by_slug(slug)
        user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise click.ClickException(f"No user with email {email.strip()!r}. Create it with `flask create-user`.")
        membership = db.session.scalar(
            select(WorkspaceMembership).where(
                WorkspaceMembership.workspace_id == workspace.id, WorkspaceMembership.user_id == user.id
            )
        )
        if membership is not None and membership.role == role:
            click.echo(f"{user.email} is already {role} of {workspace.slug}.")
            return
        if membership is None:
            db.session.add(WorkspaceMembership(workspace_id=workspace.id, user_id=user.id, role=role))
            before = None
        else:
            before, membership.role = membership.role, role
        record_audit("membership.add" if before is None else "membership.role_change", workspace=workspace,
                     target_type="user", target_id=user.id, target_name=user.name,
                     details={"before": {"role": before} if before else None, "after": {"role": role}})
        db.session.commit()
        click.echo(f"{user.email} is now {role} of {workspace.slug}.")

    @app.cli.command("create-tenant", cls=StrictCommand)
    @click.argument("slug")
    @click.argument("external_id")
    @click.option("--name", required=True, help="Display name of the customer tenant.")
    @click.option("--domain", help="Primary domain, e.g. contoso.onmicrosoft.com.")
    @database_errors_as_messages
    def create_tenant(slug: str, external_id: str, name: str, domain: str | None):
        """Register a managed Entra tenant (EXTERNAL_ID is its tenant id, a GUID) in a workspace."""
        tenant_uuid = parse_tenant_external_id(external_id)
        name = validate_name(name)
        domain = validate_domain(domain) if domain else None
        workspace = _workspace_by_slug(slug)
        # Unique per workspace; across workspaces only once admin consent proves it (migration 0011).
        if db.session.scalar(select(Tenant.id).where(Tenant.external_id == tenant_uuid,
                                                     Tenant.workspace_id == workspace.id)) is not None:
            raise click.ClickException(f"This tenant is registered in {workspace.slug} already.")
        tenant = Tenant(workspace_id=workspace.id, external_id=tenant_uuid, name=name, primary_domain=domain)
        db.session.add(tenant)
        db.session.flush()
        record_audit("tenant.create", tenant=tenant, target_type="tenant", target_id=tenant.id, target_name=name,
                     details={"before": None, "after": {"external_id": str(tenant_uuid), "name": name,
                                                        "primary_domain": domain}})
        db.session.commit()
        click.echo(f"Registered tenant {name} ({tenant_uuid}) in {workspace.slug}.")

    @app.cli.command("seed-demo", cls=StrictCommand)
    @click.option("--scale", type=click.IntRange(1, 1000), default=None,
                  help="Multiply tenants and rows for benchmarks (thousands of tenants, millions of rows).")
    @click.option("--policies-per-tenant", type=click.IntRange(1, 2000), default=None,
                  help="Policies for each newly created tenant (default: 24-48, varying).")
    @click.option("--if-empty", is_flag=True, help="Do nothing when the database already has users.")
    @database_errors_as_messages
    def seed_demo(scale: int | None, policies_per_tenant: int | None, if_empty: bool):
        """Load realistic demo data (idempotent) and print the demo sign-ins."""
        from app.demo.seed import DEMO_EMAIL_DOMAIN, echo_demo_sign_ins, seed_demo_data

        if if_empty and db.session.scalar(select(User.id).limit(1)) is not None:
            click.echo("The database already has users; demo data not loaded.")
            if db.session.scalar(select(User.id).where(User.email.endswith("@" + DEMO_EMAIL_DOMAIN)).limit(1)):
                echo_demo_sign_ins(click.echo)
            return
        seed_demo_data(scale=scale, echo=click.echo, policies_per_tenant=policies_per_tenant)



# --- workspace-isolation rollout and operations ---------------------------------------------


def _print_table(rows: list[tuple], headers: tuple) -> None:
    widths = [max(len(str(value)) for value in column) for column in zip(headers, *rows)]
    # First column left-aligned (names), the others right-aligned (counts).
    line = "  ".join(("{:<%d}" if i == 0 else "{:>%d}") % width for i, width in enumerate(widths))
    click.echo(line.format(*headers))
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo(line.format(*row))


def register_rollout_commands(app: Flask) -> None:
    from app import rollout

    @app.cli.command("backfill-workspace-ids", cls=StrictCommand)
    @click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
    @click.option("--table", "tables", multiple=True, metavar="TABLE",
                  help="Only this table (repeatable). Default: all tenant-owned tables and audit_logs.")
    @click.option("--batch-size", type=click.IntRange(rollout.MIN_BATCH_SIZE, 1_000_000),
                  default=rollout.DEFAULT_BATCH_SIZE, show_default=True, help="Rows per batch transaction.")
    @click.option("--sleep", type=click.FloatRange(0, 60), default=0.0, show_default=True,
                  help="Seconds to pause between batches, to leave the database room on a busy day.")
    @database_errors_as_messages
    def backfill_workspace_ids(dry_run: bool, tables: tuple[str, ...], batch_size: int, sleep: float):
        """Bind every tenant-owned row to its tenant's workspace (rollout phase 2).

        Idempotent and resumable: stop it at any time (Ctrl-C stops after the current
        batch) and run it again. Exits 0 when every row is bound, 1 when rows whose
        tenant is gone, or mismatched rows, remain (they are listed, never changed).
        """
        unknown = sorted(set(tables) - set(rollout.ALL_TABLES))
        if unknown:
            raise click.ClickException(
                f"Unknown table {', '.join(unknown)}. Choose from: {', '.join(rollout.ALL_TABLES)}.")
        chosen = [t for t in rollout.ALL_TABLES if not tables or t in tables]
        engine = db.engine
        if dry_run:
            with engine.connect() as connection:
                reports = rollout.isolation_report(connection, chosen)
            click.echo("Dry run: nothing was written.")
            _print_table([(r.table, r.unbound, r.bindable, r.unbindable, r.mismatched) for r in reports],
                         ("table", "unbound", "would bind", "tenant gone", "mismatched"))
            return

        interactive = sys.stdout.isatty()
        bars: dict = {}

        def progress(report, done, total):
            if interactive:
                bar = bars.get(report.table)
                if bar is None:
                    bar = bars[report.table] = click.progressbar(
                        length=max(total, 1), label=f"{report.table:<24}", show_pos=True, show_eta=True,
                        item_show_func=lambda _: None)
                    bar.__enter__()
                bar.update(done - bar.pos)
            elif done == total or done // batch_size % 20 == 0:
                click.echo(f"{report.table}: {done}/{total} rows scanned, {report.bound_now} bound")

        def retry(table, size, reason):
            click.echo(f"{table}: batch hit {reason}; retrying with {size} rows", err=True)

        reports = []
        with rollout.StopRequested() as stop:
            run = rollout.BackfillRun(engine, batch_size=batch_size, sleep=sleep, on_progress=progress,
                                      on_retry=retry, stop=stop)
            for table in chosen:
                report = run.backfill_table(table)
                if table in bars:
                    bars.pop(table).__exit__(None, None, None)
                reports.append(report)
                rate = report.bound_now / report.seconds if report.seconds else 0
                click.echo(f"{table}: bound {report.bound_now} rows in {report.seconds:.1f}s "
                           f"({rate:,.0f} rows/s, {report.batches} batches, longest batch "
                           f"{report.longest_batch * 1000:.0f} ms, {report.slow_batches} over "
                           f"{rollout.SLOW_BATCH_SECONDS * 1000:.0f} ms)")
                if stop.requested:
                    break
        click.echo("")
        _print_table([(r.table, r.bound_now, r.unbound, r.unbindable, r.mismatched, r.retries) for r in reports],
                     ("table", "bound now", "still unbound", "tenant gone", "mismatched", "retries"))
        with engine.connect() as connection:
            for report in reports:
                if report.unbindable:
                    samples = rollout.unbindable_samples(connection, report.table)
                    click.echo(f"{report.table}: {report.unbindable} rows whose tenant is gone, e.g. (id, tenant_id) "
                               f"{samples}")
        rollout.record_rollout_audit(db.session.connection(), "rollout.backfill_workspace_ids", {
            "interrupted": stop.requested, "batch_size": batch_size,
            "tables": {r.table: {"bound": r.bound_now, "unbound": r.unbound, "unbindable": r.unbindable,
                                 "mismatched": r.mismatched} for r in reports}})
        db.session.commit()
        if stop.requested:
            click.echo("Stopped after the current batch. Run the command again to resume.", err=True)
            raise SystemExit(1)
        if not all(r.clean for r in reports):
            click.echo("Some rows could not be bound (listed above). See docs/rollout.md.", err=True)
            raise SystemExit(1)
        click.echo("Every row is bound to its tenant's workspace.")

    @app.cli.command("verify-workspace-isolation", cls=StrictCommand)
    @database_errors_as_messages
    def verify_workspace_isolation():
        """Run the rollout's validation queries; exit 0 only when every count is zero."""
        with db.engine.connect() as connection:
            reports = rollout.isolation_report(connection)
        _print_table([(r.table, r.unbound, r.mismatched) for r in reports],
                     ("table", "unbound", "mismatched"))
        if all(r.clean for r in reports):
            click.echo("Workspace isolation verified: every row is bound to its tenant's workspace.")
            return
        raise click.ClickException("Workspace isolation is not complete (see the counts above).")

    @app.cli.command("refresh-tenant-health", cls=StrictCommand)
    @database_errors_as_messages
    def refresh_tenant_health():
        """Recompute every tenant's health counters from its rows; report the ones that were wrong.

        Safe on a live database (one tenant per transaction). Exit 0 either way: a
        corrected row is fixed, and listed so that its cause can be looked into.
        """
        from app.tenant_health import ATTEMPTS, refresh_all

        interactive = sys.stdout.isatty()
        bar = None

        def progress(done, total):
            nonlocal bar
            if interactive:
                if bar is None:
                    bar = click.progressbar(length=total, label="tenants", show_pos=True, show_eta=True)
                    bar.__enter__()
                bar.update(done - bar.pos)

        report = refresh_all(db.engine, on_progress=progress)
        if bar is not None:
            bar.__exit__(None, None, None)
        if report.corrected:
            shown = ", ".join(str(t) for t in report.corrected[:20])
            more = f" and {len(report.corrected) - 20} more" if len(report.corrected) > 20 else ""
            click.echo(f"Corrected the health row of {len(report.corrected)} of {report.checked} tenants "
                       f"(tenant ids {shown}{more}).")
        elif not report.failed:
            click.echo(f"Checked {report.checked} tenants: every health row was exact.")
        if report.totals_corrected:
            click.echo(f"Corrected {report.totals_corrected} of the workspaces' tenant totals (per status).")
        if report.older_transactions_open:
            click.echo("Transactions older than the rows it had to create were still open: run the command "
                       "again once they have ended.", err=True)
        if report.totals_failed:
            click.echo("The workspaces' tenant totals were not recounted: tenant writers held their lock "
                       f"through {ATTEMPTS} attempts; run the command again.", err=True)
        if report.failed or report.totals_failed:
            raise click.ClickException(
                f"{len(report.failed)} tenants stayed locked by their writers after {ATTEMPTS} attempts "
                f"(tenant ids {', '.join(str(t) for t in report.failed[:20])}); run the command again."
                if report.failed else "Run the command again once the tenant writers have finished.")

    @app.cli.command("move-tenant", cls=StrictCommand)
    @click.argument("external_id")
    @click.argument("target_slug")
    @click.option("--workspace", "source_slug", help="The workspace it is in, when several registered the id.")
    @database_errors_as_messages
    def move_tenant(external_id: str, target_slug: str, source_slug: str | None):
        """Move a tenant and all its rows to another workspace, in one transaction."""
        target = _workspace_by_slug(target_slug)
        tenant = _tenant_by_external_id(external_id, source_slug, for_update=True)
        tenant_uuid, tenant_name = tenant.external_id, tenant.name
        source = db.session.get(Workspace, tenant.workspace_id)
        active = db.session.scalar(select(SyncRun).where(SyncRun.tenant_id == tenant.id,
                                                         SyncRun.status.in_(("queued", "running"))))
        if active is not None:
            # Its job carries the old workspace: it would find nothing and hold the tenant's one active slot.
            raise click.ClickException(f"A sync of {tenant.name} is {active.status} (run {active.id}); move the "
                                       "tenant when it has finished.")
        if source.id == target.id:
            raise click.ClickException(f"{tenant.name} is already in {target.slug}.")
        moved = rollout.move_tenant(db.session.connection(), tenant.id, target.id)
        db.session.expire(tenant)
        details = {"before": {"workspace": source.slug}, "after": {"workspace": target.slug}, "rows": moved}
        # One entry in each workspace; only the target's names the tenant, which now belongs there.
        for workspace, tenant_id in ((source, None), (target, tenant.id)):
            db.session.add(AuditLog(action="tenant.move", workspace_id=workspace.id, tenant_id=tenant_id,
                                    target_type="tenant", target_id=str(tenant.id), target_name=tenant_name,
                                    details=details))
        db.session.commit()
        click.echo(f"Moved {tenant.name} ({tenant_uuid}) from {source.slug} to {target.slug}: "
                   f"{sum(moved.values())} rows.")


def register_graph_commands(app: Flask) -> None:
    """The worker and the foreground sync (app.jobs, app.sync)."""

    @app.cli.command("worker", cls=StrictCommand)
    @click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
                  help="Jobs run at once by this process (syncs wait on Graph, not on the CPU).")
    @click.option("--queue", "queues", multiple=True, help="Only these queues (default: all).")
    def worker(concurrency: int, queues: tuple[str, ...]):
        """Run queued jobs (syncs) and the periodic scheduler, as the web app's database role."""
        from app.jobs import connected_queue, set_worker_app

        set_worker_app(app)
        click.echo(f"TenantAtlas worker: concurrency {concurrency}, queues {', '.join(queues) or 'all'}", err=True)
        with connected_queue(app) as queue:
            queue.run_worker(queues=list(queues) or None, concurrency=concurrency, install_signal_handlers=True)

    @app.cli.command("sync-tenant", cls=StrictCommand)
    @click.argument("external_id")
    @click.option("--workspace", "slug", help="The tenant's workspace, when several registered the id.")
    @database_errors_as_messages
    def sync_tenant(external_id: str, slug: str | None):
        """Sync a connected tenant now, in the foreground, with progress and a summary.

        Exit code: 0 succeeded, 1 failed (or cannot start), 3 partial.
        """
        from app.graph.families import FAMILIES
        from app.row_security import working_in_workspace
        from app.sync.engine import SyncAlreadyActive, create_run
        from app.sync.runner import carry_out_sync_run

        if not app.extensions["graph_settings"].configured:
            raise click.ClickException("Microsoft Graph is not configured: set GRAPH_CLIENT_ID and a certificate or "
                                       "secret (with `make run`'s simulator: `set -a; . instance/simulator/graph.env`).")
        tenant = _tenant_by_external_id(external_id, slug)
        if not tenant.is_connected:
            raise click.ClickException(f"{tenant.name} is not connected ({tenant.connection_status}); connect it in "
                                       f"the console first.")
        with working_in_workspace(tenant.workspace_id):
            try:
                run = create_run(tenant, "command")
            except SyncAlreadyActive as active:
                raise click.ClickException(f"A sync of {tenant.name} is already {active.run.status} "
                                           f"(run {active.run.id}).") from None
            db.session.commit()
            run_id, name = run.id, tenant.name
            with click.progressbar(length=len(FAMILIES), label=f"Syncing {name}", file=sys.stderr) as bar:
                status = carry_out_sync_run(run_id, progress=lambda key, outcome: bar.update(1))
            run = db.session.get(SyncRun, run_id)
            for key, counts in ((f.key, run.families[f.key]) for f in FAMILIES if f.key in run.families):
                detail = f"  error: {counts['error']}" if counts.get("error") else ""
                click.echo(f"{key:22} seen {counts['seen']:5}  new {counts['new']:4}  changed {counts['changed']:4}  "
                           f"unchanged {counts['unchanged']:5}  deleted {counts['deleted']:4}{detail}")
            click.echo(f"{status}: {run.requests} requests, {run.throttled} throttled"
                       + (f"; {run.error}" if run.error else ""))
        sys.exit({"succeeded": 0, "partial": 3}.get(status, 1))

    @app.cli.command("backup-tenant", cls=StrictCommand)
    @click.argument("external_id")
    @click.option("--workspace", "slug", help="The tenant's workspace, when several registered the id.")
    @click.option("--family", "families", multiple=True, help="Only these families (default: every backed-up one).")
    @database_errors_as_messages
    def backup_tenant(external_id: str, slug: str | None, families: tuple[str, ...]):
        """Back up a connected tenant now, in the foreground, with progress and a summary.

        Exit code: 0 completed, 1 failed (or cannot start), 3 partial.
        """
        from app.backup.engine import BACKUP_FAMILIES, BackupAlreadyActive, backup_families, create_backup
        from app.backup.runner import carry_out_backup
        from app.models import BackupSet
        from app.row_security import working_in_workspace

        if not app.extensions["graph_settings"].configured:
            raise click.ClickException("Microsoft Graph is not configured: set GRAPH_CLIENT_ID and a certificate or "
                                       "secret (with `make run`'s simulator: `set -a; . instance/simulator/graph.env`).")
        unknown = sorted(set(families) - {f.key for f in BACKUP_FAMILIES})
        if unknown:
            raise click.ClickException(f"Unknown families: {', '.join(unknown)}; known: "
                                       f"{', '.join(f.key for f in BACKUP_FAMILIES)}.")
        tenant = _tenant_by_external_id(external_id, slug)
        if tenant.status != "active" or not tenant.is_connected:
            raise click.ClickException(f"{tenant.name} is {tenant.status} and {tenant.connection_status}; only an "
                                       f"active, connected tenant can be backed up.")
        with working_in_workspace(tenant.workspace_id):
            try:
                backup_set = create_backup(tenant, "command", families=list(families) or None)
            except BackupAlreadyActive as active:
                raise click.ClickException(f"A backup of {tenant.name} is already {active.backup_set.status} "
                                           f"(set {active.backup_set.id}).") from None
            db.session.commit()
            set_id, name = backup_set.id, tenant.name
            chosen = backup_families(list(families) or None)
            with click.progressbar(length=len(chosen), label=f"Backing up {name}", file=sys.stderr) as bar:
                status = carry_out_backup(set_id, progress=lambda key, outcome: bar.update(1))
            backup_set = db.session.get(BackupSet, set_id)
            for key, counts in backup_set.families.items():
                detail = f"  error: {counts['error']}" if counts.get("error") else ""
                click.echo(f"{key:22} items {counts['items']:5}  skipped {counts['skipped']:4}{detail}")
            click.echo(f"{status}: {backup_set.item_count} items, {backup_set.size_bytes:,} bytes stored anew, "
                       f"{backup_set.requests} requests" + (f"; {backup_set.error}" if backup_set.error else ""))
        sys.exit({"completed": 0, "partial": 3}.get(status, 1))
