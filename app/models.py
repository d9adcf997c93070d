"""The data model.

Every tenant-owned row carries its tenant and its tenant's workspace
(`TenantOwned`, bound by the database and by row-level security). Child rows reference their parent together with `tenant_id`
(composite foreign keys onto `UNIQUE (id, tenant_id)`), so the database itself
refuses a child that points into another tenant.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

ROLES = ("owner", "manager", "operator", "readonly")
TENANT_STATUSES = ("active", "archived")
# What TenantAtlas knows of its Graph connection to a tenant (app/graph, app/sync).
CONNECTION_STATUSES = ("not_connected", "connected", "missing_permissions", "consent_revoked", "failing")
SYNC_RUN_STATUSES = ("queued", "running", "succeeded", "partial", "failed")
SYNC_TRIGGERS = ("user", "schedule", "command", "connect")
SEVERITIES = ("low", "medium", "high", "critical")
# accepted: a customer-specific exception (a reason, an optional expiry) that later runs respect.
FINDING_STATUSES = ("open", "acknowledged", "accepted", "resolved")
BACKUP_STATUSES = ("pending", "running", "completed", "partial", "failed")
BACKUP_TRIGGERS = ("user", "schedule", "upload", "command")
RESTORE_STATUSES = ("planning", "planned", "queued", "running", "succeeded", "partial", "failed", "cancelled")
RESTORE_ITEM_ACTIONS = ("create", "update", "skip", "conflict")
RESTORE_ITEM_STATUSES = ("planned", "writing", "created", "updated", "skipped", "failed", "not_run")
# keep: the target's assignments stay and the backup's are added; replace: the backup's only; skip: untouched.
ASSIGNMENT_MODES = ("keep", "replace", "skip")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def new_session_token() -> str:
    return secrets.token_hex(32)


def _pk() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(), primary_key=True)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated_at() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


def _tenant_id() -> Mapped[int]:
    return mapped_column(
        BigInteger, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )


class TenantOwned:
    """A row that belongs to a tenant, and through it to the tenant's workspace.

    `workspace_id` is derived from the tenant on every write (see app.isolation)
    and checked by the database: the composite key (tenant_id, workspace_id)
    references tenants(id, workspace_id), ON UPDATE CASCADE, so moving a tenant
    moves its rows and no row can disagree with its tenant.
    """

    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id"), nullable=False
    )


def workspace_binding(table: str) -> tuple:
    """The constraints and index that bind a tenant-owned table to its workspace."""
    return (
        ForeignKeyConstraint(
            ["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"], onupdate="CASCADE"
        ),
        Index(f"ix_{table}_workspace_id_tenant_id", "workspace_id", "tenant_id"),
    )


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        # Emails are stored lower-cased, so the plain unique key is case-insensitive.
        CheckConstraint("email = lower(email)", name="email_lower"),
        CheckConstraint("length(email) BETWEEN 3 AND 254", name="email_length"),
        CheckConstraint("(entra_tenant_id IS NULL) = (entra_object_id IS NULL)", name="entra_identity_whole"),
        Index("ux_users_entra_identity", "entra_tenant_id", "entra_object_id", unique=True,
              postgresql_where=text("entra_object_id IS NOT NULL")),
    )

    id: Mapped[int] = _pk()
    email: Mapped[str] = mapped_column(String(254), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_active_user: Mapped[bool] = mapped_column(
        "is_active", Boolean, nullable=False, server_default="true", default=True
    )
    last_workspace_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="SET NULL"), index=True
    )
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A platform administrator: creates workspaces, grants this flag, ends others' sessions.
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false", default=False)
    # An authenticator app (migration 0017_second_factors); the last accepted 30-second
    # step makes each code single-use.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Sign in with Microsoft (migration 0017_microsoft_identities): the ID token's tid and oid.
    entra_tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    entra_object_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # An IANA timezone name (Europe/Berlin) the user's pages show times in; None is UTC.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Was every cookie's identity (migration 0005); superseded by user_sessions
    # (0017_user_sessions) and no longer read. Dropped in a later migration.
    session_token: Mapped[str] = mapped_column(
        String(64), nullable=False, server_default=text("replace(gen_random_uuid()::text, '-', '')"),
        default=new_session_token,
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    memberships: Mapped[list[WorkspaceMembership]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    webauthn_credentials: Mapped[list[WebAuthnCredential]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="WebAuthnCredential.id"
    )

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.is_active_user

    # The UserSession this request runs in and its cookie secret (set by the user loader
    # and at sign-in; plain attributes, not columns).
    current_session = None
    current_session_secret = None

    def get_id(self) -> str:
        """What Flask-Login keeps in the cookie: the user and their session's secret (app/web/account/sessions.py)."""
        secret = getattr(self, "current_session_secret", None)
        return f"{self.id}:{secret}" if secret else f"{self.id}:"

    @property
    def has_second_factor(self) -> bool:
        return self.totp_enabled_at is not None or bool(self.webauthn_credentials)

    def __repr__(self) -> str:
        return f"<User {self.email}>"


class UserSession(db.Model):
    """One signed-in browser (migration 0017_user_sessions); the cookie holds its secret, this its SHA-256."""

    __tablename__ = "user_sessions"
    __table_args__ = (
        Index("ix_user_sessions_user_id_active", "user_id", postgresql_where=text("ended_at IS NULL")),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    auth_method: Mapped[str] = mapped_column(String(40), nullable=False)
    # Proved with more than a password: a second factor, a passkey or Microsoft sign-in.
    strong: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false", default=False)
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip_address: Mapped[str | None] = mapped_column(INET)
    created_at: Mapped[datetime] = _created_at()
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(String(40))


class RecoveryCode(db.Model):
    """A one-time code for when the authenticator is lost (stored as SHA-256)."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebAuthnCredential(db.Model):
    """A passkey: what the authenticator registered (its id, public key, signature counter)."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sign_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0", default=0)
    transports: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Workspace(db.Model):
    __tablename__ = "workspaces"
    __table_args__ = (
        CheckConstraint(
            "slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 63", name="slug_url_safe"
        ),
    )

    id: Mapped[int] = _pk()
    slug: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # "Members must use MFA or Microsoft sign-in" (migration 0017_second_factors).
    require_mfa: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false", default=False)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    memberships: Mapped[list[WorkspaceMembership]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Workspace {self.slug}>"


class WorkspaceMembership(db.Model):
    __tablename__ = "workspace_memberships"
    __table_args__ = (
        UniqueConstraint("workspace_id", "user_id"),
        CheckConstraint(_in("role", ROLES), name="role_known"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    workspace: Mapped[Workspace] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")


class WorkspaceInvitation(db.Model):
    """An owner's invitation of an email address to a workspace (migration 0017_workspace_invitations).

    Only the SHA-256 of the link's token is stored. Pending while not accepted, not
    revoked and not expired; accepting is a single conditional UPDATE (app/web/account/invitations.py).
    """

    __tablename__ = "workspace_invitations"
    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_lower"),
        CheckConstraint(_in("role", ROLES), name="role_known"),
        Index("ix_workspace_invitations_workspace_id_created_at", "workspace_id", "created_at"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    invited_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    accepted_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    workspace: Mapped[Workspace] = relationship()
    invited_by: Mapped[User | None] = relationship(foreign_keys=[invited_by_user_id])


class Tenant(db.Model):
    """A managed Microsoft Entra tenant; `external_id` is its Entra tenant id."""

    __tablename__ = "tenants"
    __table_args__ = (
        # Lets tenant-owned tables reference (tenant_id, workspace_id) together.
        UniqueConstraint("id", "workspace_id"),
        CheckConstraint(_in("status", TENANT_STATUSES), name="status_known"),
        CheckConstraint(_in("connection_status", CONNECTION_STATUSES), name="connection_status_known"),
        Index("ix_tenants_workspace_id_name", "workspace_id", "name"),
        Index("ix_tenants_next_sync_at", "next_sync_at", postgresql_where=text("next_sync_at IS NOT NULL")),
        Index("ux_tenants_workspace_id_external_id", "workspace_id", "external_id", unique=True),
        Index("ux_tenants_verified_external_id", "external_id", unique=True,
              postgresql_where=text("consented_at IS NOT NULL")),
        # The portfolio's sorts, each an index-ordered scan within a workspace (migration 0018).
        Index("ix_tenants_portfolio_name", "workspace_id", "name", "id"),
        Index("ix_tenants_portfolio_domain", "workspace_id", "primary_domain", "id"),
        Index("ix_tenants_portfolio_external_id", "workspace_id", "external_id", "id"),
        Index("ix_tenants_portfolio_status", "workspace_id", "status", "id"),
        Index("ix_tenants_portfolio_id", "workspace_id", "id"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="RESTRICT"), nullable=False
    )
    # Unique per workspace; across workspaces only once proved by admin consent (migration 0011).
    external_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    primary_domain: Mapped[str | None] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default="active", default="active"
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    # The Graph connection (migration 0009). Never a secret or a token: those live in memory only.
    connection_status: Mapped[str] = mapped_column(
        String(24), nullable=False, server_default="not_connected", default="not_connected"
    )
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consented_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    granted_permissions: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)
    permissions_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    connection_error: Mapped[str | None] = mapped_column(String(500))
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    sync_paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sync_status: Mapped[str | None] = mapped_column(String(16))
    next_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    groups_delta_link: Mapped[str | None] = mapped_column(Text)

    workspace: Mapped[Workspace] = relationship()

    @property
    def is_connected(self) -> bool:
        return self.connection_status in ("connected", "missing_permissions", "failing")

    @hybrid_property
    def nothing_read(self) -> bool:
        """Never connected or never synced: nothing has been read from Microsoft Graph, so its
        findings say "not checked" (the portfolio, the drift matrix), never "none"."""
        return self.connection_status == "not_connected" or self.last_sync_at is None

    @nothing_read.inplace.expression
    @classmethod
    def _nothing_read_expression(cls):
        return or_(cls.connection_status == "not_connected", cls.last_sync_at.is_(None))

    def __repr__(self) -> str:
        return f"<Tenant {self.external_id} {self.name}>"


# --- tenant-owned tables -------------------------------------------------------


class Policy(TenantOwned, db.Model):
    """An Intune policy as read from Microsoft Graph."""

    __tablename__ = "policies"
    __table_args__ = (
        *workspace_binding("policies"),
        UniqueConstraint("tenant_id", "graph_id"),
        UniqueConstraint("id", "tenant_id"),
        Index("ix_policies_tenant_id_display_name", "tenant_id", "display_name"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    graph_id: Mapped[str] = mapped_column(String(128), nullable=False)
    policy_type: Mapped[str] = mapped_column(String(64), nullable=False)
    platform: Mapped[str] = mapped_column(String(32), nullable=False)
    display_name: Mapped[str] = mapped_column(String(400), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    last_modified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The normalized content's hash (app.graph.normalize); a new version only when it changes.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # Missing from a complete listing of its family: kept, with when.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    versions: Mapped[list[PolicyVersion]] = relationship(
        back_populates="policy",
        order_by="PolicyVersion.version_number",
        passive_deletes=True,
    )


class PolicyVersion(TenantOwned, db.Model):
    __tablename__ = "policy_versions"
    __table_args__ = (
        *workspace_binding("policy_versions"),
        UniqueConstraint("policy_id", "version_number"),
        ForeignKeyConstraint(
            ["policy_id", "tenant_id"], ["policies.id", "policies.tenant_id"], ondelete="CASCADE"
        ),
        CheckConstraint("version_number > 0", name="version_number_positive"),
        UniqueConstraint("id", "tenant_id"),
        ForeignKeyConstraint(["payload_id", "tenant_id"], ["backup_payloads.id", "backup_payloads.tenant_id"]),
        Index("ix_policy_versions_payload_id", "payload_id", postgresql_where=text("payload_id IS NOT NULL")),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    policy_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    version_number: Mapped[int] = mapped_column(Integer, nullable=False)
    captured_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # The restorable JSON as read (migration 0014); versions captured before have none.
    payload_id: Mapped[int | None] = mapped_column(BigInteger)

    policy: Mapped[Policy] = relationship(back_populates="versions")


class BackupSchedule(TenantOwned, db.Model):
    """When a tenant is backed up by itself, and how long what it made is kept (app.backup.schedules)."""

    __tablename__ = "backup_schedules"
    __table_args__ = (
        *workspace_binding("backup_schedules"),
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("id", "tenant_id"),
        CheckConstraint(_in("frequency", ("hourly", "daily", "weekly", "monthly")), name="frequency_known"),
        CheckConstraint("retention_days BETWEEN 1 AND 3650", name="retention_days_range"),
        CheckConstraint("keep_last BETWEEN 0 AND 1000", name="keep_last_range"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    frequency: Mapped[str] = mapped_column(String(16), nullable=False)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    is_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true", default=True)
    retention_days: Mapped[int] = mapped_column(Integer, nullable=False, server_default="30", default=30)
    # The newest N successful backups of the schedule are kept whatever their age (migration 0014).
    keep_last: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3", default=3)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class BackupSet(TenantOwned, db.Model):
    """One backup of a tenant: its run record, and the items it holds (`item_ids`, content-addressed)."""

    __tablename__ = "backup_sets"
    __table_args__ = (
        *workspace_binding("backup_sets"),
        UniqueConstraint("id", "tenant_id"),
        ForeignKeyConstraint(
            ["schedule_id", "tenant_id"], ["backup_schedules.id", "backup_schedules.tenant_id"]
        ),
        CheckConstraint(
            _in("status", BACKUP_STATUSES), name="status_known"
        ),
        CheckConstraint(_in("triggered_by", BACKUP_TRIGGERS), name="triggered_by_known"),
        CheckConstraint("item_count >= 0", name="item_count_nonnegative"),
        Index("ix_backup_sets_tenant_id_started_at", "tenant_id", "started_at"),
        Index("ix_backup_sets_item_ids", "item_ids", postgresql_using="gin"),
        # At most one pending or running backup per tenant.
        Index("ux_backup_sets_one_active_per_tenant", "tenant_id", unique=True,
              postgresql_where=text("status IN ('pending', 'running')")),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    item_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    triggered_by: Mapped[str] = mapped_column(String(16), nullable=False)
    triggered_by_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    schedule_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = _created_at()
    # backup_items ids: a backup of an unchanged tenant lists the items the previous one made.
    item_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), nullable=False, server_default="{}", default=list)
    # family key -> {"items", "skipped", "error"}; the families asked for ([] = every backed-up family).
    families: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    requested_families: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)
    skipped_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    throttled: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    # Bytes of payloads this backup stored anew (0 when every payload existed already).
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0", default=0)

    @property
    def is_active(self) -> bool:
        return self.status in ("pending", "running")

    @property
    def is_usable(self) -> bool:
        """Holds items to restore from: completed, or partial (what could be read)."""
        return self.status in ("completed", "partial")


class BackupPayload(TenantOwned, db.Model):
    """An object's restorable JSON, stored once per tenant and content hash.

    `body` is {"object": <as Graph returns it>, "settings": [...], "assignments": [...]}
    (app.backup.payloads); backup items and policy versions point at it.
    """

    __tablename__ = "backup_payloads"
    __table_args__ = (
        *workspace_binding("backup_payloads"),
        UniqueConstraint("tenant_id", "content_hash"),
        UniqueConstraint("id", "tenant_id"),
        CheckConstraint("size_bytes >= 0", name="size_nonnegative"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    family: Mapped[str] = mapped_column(String(64), nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    size_bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _created_at()


class BackupItem(TenantOwned, db.Model):
    """An object as a backup saw it: (family, graph id, payload), once per tenant however many sets hold it.

    Keyed by graph id, never by name: two policies with one name are two items.
    """

    __tablename__ = "backup_items"
    __table_args__ = (
        *workspace_binding("backup_items"),
        UniqueConstraint("tenant_id", "family", "graph_id", "payload_id"),
        UniqueConstraint("id", "tenant_id"),
        ForeignKeyConstraint(["payload_id", "tenant_id"], ["backup_payloads.id", "backup_payloads.tenant_id"]),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    family: Mapped[str] = mapped_column(String(64), nullable=False)
    graph_id: Mapped[str] = mapped_column(String(128), nullable=False)
    display_name: Mapped[str] = mapped_column(String(400), nullable=False)
    payload_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # A group, filter or scope tag the backed-up objects refer to (read so a restore can map it).
    is_reference: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false", default=False)
    created_at: Mapped[datetime] = _created_at()


class RestoreRun(TenantOwned, db.Model):
    """A restore into `tenant_id` (the target) from a backup set or a policy version of `source_tenant_id`.

    Planned first (planning -> planned: every item's action shown, nothing written), then
    executed by a job (queued -> running -> succeeded | partial | failed), or cancelled.
    The source is a tenant of the same workspace, enforced by the database.
    """

    __tablename__ = "restore_runs"
    __table_args__ = (
        *workspace_binding("restore_runs"),
        UniqueConstraint("id", "tenant_id"),
        # A restore keeps its items' payloads, not the set: retention may delete the set it came from.
        ForeignKeyConstraint(["backup_set_id", "source_tenant_id"], ["backup_sets.id", "backup_sets.tenant_id"],
                             ondelete="SET NULL (backup_set_id)",
                             name="fk_restore_runs_backup_set_id_source_tenant_id_backup_sets"),
        ForeignKeyConstraint(["source_tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                             onupdate="CASCADE"),
        ForeignKeyConstraint(["policy_version_id", "source_tenant_id"],
                             ["policy_versions.id", "policy_versions.tenant_id"],
                             ondelete="SET NULL (policy_version_id)",
                             name="fk_restore_runs_policy_version_id_source_tenant_id"),
        CheckConstraint(_in("status", RESTORE_STATUSES), name="status_known"),
        CheckConstraint(_in("assignment_mode", ASSIGNMENT_MODES), name="assignment_mode_known"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    source_tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    backup_set_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    policy_version_id: Mapped[int | None] = mapped_column(BigInteger)
    requested_by_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    executed_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    assignment_mode: Mapped[str] = mapped_column(String(16), nullable=False, server_default="keep", default="keep")
    is_dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false", default=False)
    planned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    # Counts by action and by status, and the groups that could not be matched.
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    # Demo-era runs kept their per-item results here; planned runs have restore_items.
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)
    created_at: Mapped[datetime] = _created_at()

    @property
    def is_active(self) -> bool:
        return self.status in ("planning", "queued", "running")


class RestoreItem(TenantOwned, db.Model):
    """One selected item of a restore: its planned action, the plan's detail, and what happened."""

    __tablename__ = "restore_items"
    __table_args__ = (
        *workspace_binding("restore_items"),
        UniqueConstraint("id", "tenant_id"),
        UniqueConstraint("restore_run_id", "position"),
        ForeignKeyConstraint(["restore_run_id", "tenant_id"], ["restore_runs.id", "restore_runs.tenant_id"],
                             ondelete="CASCADE"),
        ForeignKeyConstraint(["payload_id", "source_tenant_id"], ["backup_payloads.id", "backup_payloads.tenant_id"]),
        ForeignKeyConstraint(["source_tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                             onupdate="CASCADE"),
        CheckConstraint(_in("action", RESTORE_ITEM_ACTIONS), name="action_known"),
        CheckConstraint(_in("status", RESTORE_ITEM_STATUSES), name="status_known"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    restore_run_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    source_tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    family: Mapped[str] = mapped_column(String(64), nullable=False)
    source_graph_id: Mapped[str] = mapped_column(String(128), nullable=False)
    display_name: Mapped[str] = mapped_column(String(400), nullable=False)
    payload_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    action: Mapped[str | None] = mapped_column(String(16))
    target_graph_id: Mapped[str | None] = mapped_column(String(128))
    # {"reason", "diff": [...], "assignments": {...}, "unmatched": [...]} (app.restore.planner)
    plan: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="planned", default="planned")
    error: Mapped[str | None] = mapped_column(String(1000))
    verified: Mapped[bool | None] = mapped_column(Boolean)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


class InventoryItem(TenantOwned, db.Model):
    __tablename__ = "inventory_items"
    __table_args__ = (
        *workspace_binding("inventory_items"),
        UniqueConstraint("tenant_id", "object_type", "graph_id"),
        UniqueConstraint("id", "tenant_id"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    object_type: Mapped[str] = mapped_column(String(64), nullable=False)
    graph_id: Mapped[str] = mapped_column(String(128), nullable=False)
    display_name: Mapped[str] = mapped_column(String(400), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    created_at: Mapped[datetime] = _created_at()


class InventoryLink(TenantOwned, db.Model):
    __tablename__ = "inventory_links"
    __table_args__ = (
        *workspace_binding("inventory_links"),
        UniqueConstraint("source_item_id", "target_item_id", "link_type"),
        ForeignKeyConstraint(
            ["source_item_id", "tenant_id"], ["inventory_items.id", "inventory_items.tenant_id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["target_item_id", "tenant_id"], ["inventory_items.id", "inventory_items.tenant_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("source_item_id <> target_item_id", name="not_self"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    source_item_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    target_item_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    link_type: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _created_at()


class EntraGroup(TenantOwned, db.Model):
    __tablename__ = "entra_groups"
    __table_args__ = (
        *workspace_binding("entra_groups"),
        UniqueConstraint("tenant_id", "graph_id"),
        CheckConstraint("member_count >= 0", name="member_count_nonnegative"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    graph_id: Mapped[str] = mapped_column(String(128), nullable=False)
    display_name: Mapped[str] = mapped_column(String(400), nullable=False)
    group_type: Mapped[str] = mapped_column(String(32), nullable=False)
    member_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class Finding(TenantOwned, db.Model):
    __tablename__ = "findings"
    __table_args__ = (
        *workspace_binding("findings"),
        ForeignKeyConstraint(["policy_id", "tenant_id"], ["policies.id", "policies.tenant_id"]),
        CheckConstraint(_in("severity", SEVERITIES), name="severity_known"),
        CheckConstraint(_in("status", FINDING_STATUSES), name="status_known"),
        Index("ix_findings_tenant_id_status_severity", "tenant_id", "status", "severity"),
        # A computed finding is keyed by what it is about: a re-run updates it, never duplicates it.
        Index("ux_findings_tenant_id_subject_key", "tenant_id", "subject_key", unique=True,
              postgresql_where=text("subject_key IS NOT NULL")),
        Index("ix_findings_workspace_id_status_severity", "workspace_id", "status", "severity"),
        # The drift matrix reads one baseline's findings of one page of tenants.
        Index("ix_findings_baseline_id_tenant_id_workspace_id", "baseline_id", "tenant_id", "workspace_id"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    title: Mapped[str] = mapped_column(String(400), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    policy_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="open", default="open")
    detected_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _updated_at()
    # Computed findings (app.drift): "hygiene:backup_missing", "baseline:<id>:setting:<policy>:<key>"…
    # None for a finding written by hand (older rows, tests).
    subject_key: Mapped[str | None] = mapped_column(String(600))
    baseline_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("baselines.id", ondelete="CASCADE"))
    # An acceptance's end; past it, a later run opens the finding again if it still holds.
    accepted_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What happened to it, oldest first: [{"at", "event", "by", "note"}] (capped, see app.drift.findings).
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)


class EntraRoleDefinition(TenantOwned, db.Model):
    __tablename__ = "entra_role_definitions"
    __table_args__ = (
        *workspace_binding("entra_role_definitions"),
        UniqueConstraint("tenant_id", "graph_id"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    graph_id: Mapped[str] = mapped_column(String(128), nullable=False)
    display_name: Mapped[str] = mapped_column(String(400), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    is_built_in: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true", default=True)
    permissions: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default="[]")
    created_at: Mapped[datetime] = _created_at()


class TenantPermission(TenantOwned, db.Model):
    """A Microsoft Graph permission the console needs in the tenant, and whether it is granted."""

    __tablename__ = "tenant_permissions"
    __table_args__ = (
        *workspace_binding("tenant_permissions"),
        UniqueConstraint("tenant_id", "permission_name"),
        CheckConstraint(_in("status", ("granted", "missing")), name="status_known"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    permission_name: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    checked_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class SyncRun(TenantOwned, db.Model):
    """One sync of a tenant's configuration from Graph: its trigger, progress and outcome."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        *workspace_binding("sync_runs"),
        UniqueConstraint("id", "tenant_id"),
        CheckConstraint(_in("status", SYNC_RUN_STATUSES), name="status_known"),
        CheckConstraint(_in("trigger", SYNC_TRIGGERS), name="trigger_known"),
        Index("ix_sync_runs_tenant_id_created_at", "tenant_id", "created_at"),
        # At most one queued or running sync per tenant: two triggers never run at once.
        Index("ux_sync_runs_one_active_per_tenant", "tenant_id", unique=True,
              postgresql_where=text("status IN ('queued', 'running')")),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="queued", default="queued")
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    requested_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    # family key -> {"seen", "new", "changed", "unchanged", "deleted", "error"}
    families: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    current_family: Mapped[str | None] = mapped_column(String(64))
    requests: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    throttled: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = _created_at()

    @property
    def is_active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ConsentRequest(TenantOwned, db.Model):
    """An admin-consent round trip a member started: its nonce makes the callback's state single-use."""

    __tablename__ = "consent_requests"
    __table_args__ = (*workspace_binding("consent_requests"),)

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = _tenant_id()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    nonce: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = _created_at()
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


TENANT_OWNED_MODELS = (
    Policy,
    PolicyVersion,
    BackupSet,
    BackupPayload,
    BackupItem,
    RestoreRun,
    RestoreItem,
    BackupSchedule,
    InventoryItem,
    InventoryLink,
    EntraGroup,
    Finding,
    EntraRoleDefinition,
    TenantPermission,
    SyncRun,
    ConsentRequest,
)


class AuditLog(db.Model):
    __tablename__ = "audit_logs"
    __table_args__ = (
        # An entry about a tenant always says which workspace it happened in.
        CheckConstraint("tenant_id IS NULL OR workspace_id IS NOT NULL", name="tenant_entries_have_workspace"),
        Index("ix_audit_logs_workspace_id_created_at", "workspace_id", "created_at"),
        Index("ix_audit_logs_tenant_id_created_at", "tenant_id", "created_at"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="SET NULL")
    )
    tenant_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("tenants.id", ondelete="SET NULL"))
    actor_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(128))
    # The target's name when the entry was written: it still reads after the target is deleted.
    target_name: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    ip_address: Mapped[str | None] = mapped_column(INET)
    created_at: Mapped[datetime] = _created_at()

    actor: Mapped[User | None] = relationship()


# --- the tenant switcher's memory, per user --------------------------------------------


class _UserTenantMark:
    """A user's mark on a tenant (a visit, a pin), bound to the tenant's workspace.

    The composite key (tenant_id, workspace_id) -> tenants follows the tenant when
    it moves (ON UPDATE CASCADE), so a mark never shows a tenant in a workspace it
    has left.
    """

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger, nullable=False)


class TenantVisit(_UserTenantMark, db.Model):
    """When a user last opened a tenant: the switcher's "recent" list."""

    __tablename__ = "tenant_visits"
    __table_args__ = (
        UniqueConstraint("user_id", "tenant_id"),
        ForeignKeyConstraint(
            ["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
            ondelete="CASCADE", onupdate="CASCADE",
        ),
        Index("ix_tenant_visits_user_id_workspace_id_visited_at", "user_id", "workspace_id", "visited_at"),
    )

    visited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class TenantPin(_UserTenantMark, db.Model):
    """A tenant the user pinned to the top of the switcher."""

    __tablename__ = "tenant_pins"
    __table_args__ = (
        UniqueConstraint("user_id", "tenant_id"),
        ForeignKeyConstraint(
            ["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
            ondelete="CASCADE", onupdate="CASCADE",
        ),
        Index("ix_tenant_pins_user_id_workspace_id", "user_id", "workspace_id"),
    )

    created_at: Mapped[datetime] = _created_at()


class TenantHealth(db.Model):
    """A tenant's health counters, one row per tenant, for the portfolio's columns and sorts.

    Written only by database triggers (migration 0007) on tenants, policies,
    findings, tenant_permissions and backup_sets; the app role may only read it.
    `flask refresh-tenant-health` recomputes it from the source rows.
    """

    __tablename__ = "tenant_health"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
            ondelete="CASCADE", onupdate="CASCADE",
        ),
        Index("ix_tenant_health_workspace_id", "workspace_id"),
        # The portfolio's health sorts (migration 0018).
        Index("ix_tenant_health_portfolio_policies", "workspace_id", "policy_count", "tenant_id"),
        Index("ix_tenant_health_portfolio_last_backup", "workspace_id", "last_backup_at", "tenant_id"),
        Index("ix_tenant_health_portfolio_findings", "workspace_id", "open_critical", "open_high", "open_medium",
              "open_low", "tenant_id"),
        Index("ix_tenant_health_portfolio_missing_permissions", "workspace_id", "missing_permissions", "tenant_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    workspace_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    policy_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    open_critical: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    open_high: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    open_medium: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    open_low: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    missing_permissions: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    last_backup_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_backup_status: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class WorkspaceTenantTotal(db.Model):
    """How many tenants a workspace has with a status, for the portfolio's total.

    Written only by database triggers on tenants (migration 0018); the app role may only read it.
    """

    __tablename__ = "workspace_tenant_totals"

    workspace_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"),
                                              primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenants: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


# Tags, baselines, bulk runs and alerts live in their own module; imported here so that
# the metadata (migrations, the schema test) always holds them.
from . import operations_models  # noqa: E402,F401
