"""Management commands, registered on the app so that `flask <command>` works.

Bad input gets a clear message and exit code 1, never a traceback.
"""
from __future__ import annotations

import functools

import click
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.audit import record_audit
from app.extensions import db
from app.models import ROLES, Tenant, User, Workspace, WorkspaceMembership
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
        except ValidationError as error:
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


def _workspace_by_slug(slug: str) -> Workspace:
    workspace = db.session.scalar(select(Workspace).where(Workspace.slug == slug.strip().lower()))
    if workspace is None:
        raise click.ClickException(f"No workspace with slug {slug!r}.")
    return workspace


def register_commands(app: Flask) -> None:
    @app.cli.command("create-user", cls=StrictCommand)
    @click.argument("email")
    @click.option("--name", required=True, help="Display name.")
    @click.option("--password", help="Prompted for (hidden) when not given.")
    @database_errors_as_messages
    def create_user(email: str, name: str, password: str | None):
        """Create a user who can sign in."""
        email = validate_email(email)
        name = validate_name(name)
        if db.session.scalar(select(User.id).where(User.email == email)) is not None:
            raise click.ClickException(f"A user with email {email} already exists.")
        if password is None:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        password = validate_password(password)
        user = User(email=email, name=name, password_hash=hash_password(password))
        db.session.add(user)
        db.session.flush()
        record_audit("user.create", target_type="user", target_id=user.id, details={"email": email})
        db.session.commit()
        click.echo(f"Created user {email}.")

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
                     details={"slug": slug, "name": name})
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
                     target_type="user", target_id=user.id, details={"before": before, "after": role})
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
        if db.session.scalar(select(Tenant.id).where(Tenant.external_id == tenant_uuid)) is not None:
            raise click.ClickException("This tenant is already managed.")
        tenant = Tenant(workspace_id=workspace.id, external_id=tenant_uuid, name=name, primary_domain=domain)
        db.session.add(tenant)
        db.session.flush()
        record_audit("tenant.create", tenant=tenant, target_type="tenant", target_id=tenant.id,
                     details={"external_id": str(tenant_uuid), "name": name})
        db.session.commit()
        click.echo(f"Registered tenant {name} ({tenant_uuid}) in {workspace.slug}.")

    @app.cli.command("seed-demo", cls=StrictCommand)
    @click.option("--scale", type=click.IntRange(1, 1000), default=None,
                  help="Multiply tenants and rows for benchmarks (thousands of tenants, millions of rows).")
    @click.option("--if-empty", is_flag=True, help="Do nothing when the database already has users.")
    @database_errors_as_messages
    def seed_demo(scale: int | None, if_empty: bool):
        """Load realistic demo data (idempotent) and print the demo sign-ins."""
        from app.seed import seed_demo_data

        if if_empty and db.session.scalar(select(User.id).limit(1)) is not None:
            click.echo("The database already has users; demo data not loaded.")
            return
        seed_demo_data(scale=scale, echo=click.echo)

