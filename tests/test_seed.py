"""`flask seed-demo`: realistic demo data, idempotent, from one set-based generator."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from app.models import (
    ROLES,
    SEVERITIES,
    TENANT_OWNED_MODELS,
    AuditLog,
    Finding,
    Policy,
    Tenant,
    TenantPermission,
    User,
    Workspace,
    WorkspaceMembership,
)
from app.passwords import verify_password
from app.demo.seed import (
    DEMO_EMAIL_DOMAIN,
    DEMO_PASSWORD,
    DEMO_USERS,
    DEMO_WORKSPACES,
    MAX_VERSIONS_PER_POLICY,
    POLICY_TEMPLATES,
    TENANTS_PER_SCALE,
    seed_demo_data,
    tenant_external_id,
)

# What a sync or a connection writes (0009) is not seeded: demo tenants start unconnected,
# and their sync runs and consent requests come from really connecting them to the simulator.
# Made by the product's own jobs and flows, never seeded: a seeded restore would claim writes
# to a tenant that never happened.
NOT_SEEDED_MODELS = {"sync_runs", "consent_requests", "restore_runs", "restore_items"}
SEEDED_MODELS = tuple(model for model in TENANT_OWNED_MODELS if model.__tablename__ not in NOT_SEEDED_MODELS)
SEEDED_TABLES = (
    "users", "workspaces", "workspace_memberships", "tenants", "audit_logs",
    *(model.__tablename__ for model in SEEDED_MODELS),
)
DEMO_EMAILS = [email for email, _, _ in DEMO_USERS]
DEMO_SLUGS = [slug for slug, _ in DEMO_WORKSPACES]


def row_counts(session) -> dict[str, int]:
    return {table: session.scalar(text(f"SELECT count(*) FROM {table}")) for table in SEEDED_TABLES}


def demo_tenant_ids(session, scale: int = 1) -> list[int]:
    """Ids of the demo tenants for keys 1..scale*60 (found by their deterministic external ids)."""
    external_ids = [tenant_external_id(key) for key in range(1, scale * TENANTS_PER_SCALE + 1)]
    return list(session.scalars(select(Tenant.id).where(Tenant.external_id.in_(external_ids))))


def seed(**options) -> list[str]:
    lines: list[str] = []
    seed_demo_data(echo=lines.append, **options)
    return lines


# --- the catalog (no database) ------------------------------------------------------------


def test_each_policy_version_changes_a_few_settings():
    for template in POLICY_TEMPLATES:
        assert template["platform"] in ("windows10", "iOS", "android", "macOS")
        assert len(template["changes"]) == MAX_VERSIONS_PER_POLICY - 1, template["display_name"]
        settings = dict(template["settings"])
        for change in template["changes"]:
            changed = {key for key, value in change.items() if settings.get(key, object()) != value}
            assert 1 <= len(changed) <= 3, (template["display_name"], change)
            settings.update(change)


# --- the demo -------------------------------------------------------------------------------


def test_seed_demo_command_prints_the_sign_ins(cli_runner, db_session):
    result = cli_runner.invoke(args=["seed-demo"])

    assert result.exit_code == 0, result.output
    for email in DEMO_EMAILS:
        assert email in result.output
    assert DEMO_PASSWORD in result.output
    assert "Atlas Managed Services (owner), Blue Harbor IT (manager)" in result.output
    assert len(demo_tenant_ids(db_session)) == TENANTS_PER_SCALE


def test_seed_demo_refuses_a_policy_count_out_of_range(cli_runner, db_session):
    tenants_before = db_session.scalar(select(func.count()).select_from(Tenant))

    result = cli_runner.invoke(args=["seed-demo", "--policies-per-tenant", "0"])

    assert result.exit_code == 1
    assert "--policies-per-tenant" in result.output
    assert db_session.scalar(select(func.count()).select_from(Tenant)) == tenants_before


def test_demo_has_workspaces_people_and_tenants(db_session):
    seed()

    workspaces = {w.slug: w for w in db_session.scalars(select(Workspace).where(Workspace.slug.in_(DEMO_SLUGS)))}
    assert set(workspaces) == set(DEMO_SLUGS)
    tenant_ids = demo_tenant_ids(db_session)
    tenants = db_session.scalars(select(Tenant).where(Tenant.id.in_(tenant_ids))).all()
    assert len(tenants) == TENANTS_PER_SCALE
    per_workspace = Counter(t.workspace_id for t in tenants)
    assert per_workspace[workspaces[DEMO_SLUGS[0]].id] == TENANTS_PER_SCALE // 2
    assert all(per_workspace[w.id] > 0 for w in workspaces.values())
    assert 2 <= sum(t.status == "archived" for t in tenants) <= 3
    assert len({t.name for t in tenants}) == TENANTS_PER_SCALE
    contoso = next(t for t in tenants if t.name == "Contoso Pharma")
    assert contoso.primary_domain == "contosopharma.onmicrosoft.com"

    memberships = db_session.execute(
        select(User.email, Workspace.slug, WorkspaceMembership.role)
        .join(WorkspaceMembership.user).join(WorkspaceMembership.workspace)
        .where(User.email.in_(DEMO_EMAILS))
    ).all()
    assert {(email, slug, role) for email, slug, role in memberships} == {
        (email, slug, role) for email, _, roles in DEMO_USERS for slug, role in roles.items()
    }
    workspaces_per_user = Counter(email for email, _, _ in memberships)
    assert set(workspaces_per_user.values()) == {1, 2}
    assert {role for _, _, role in memberships} == set(ROLES)


def test_every_tenant_gets_rows_in_every_table(db_session):
    seed()
    tenant_ids = demo_tenant_ids(db_session)

    assert all(count > 0 for count in row_counts(db_session).values()), row_counts(db_session)
    for model in SEEDED_MODELS:
        if model.__tablename__ == "findings":
            continue  # computed: a tenant that is fine (a golden one, an archived one) has none
        tenants_with_rows = db_session.scalar(
            select(func.count(func.distinct(model.tenant_id))).where(model.tenant_id.in_(tenant_ids))
        )
        assert tenants_with_rows == len(tenant_ids), model.__tablename__

    versions_per_policy = db_session.execute(text("""
        SELECT min(policy_count), min(min_versions), max(max_versions)
        FROM (SELECT p.tenant_id, count(*) AS policy_count,
                     min(v.versions) AS min_versions, max(v.versions) AS max_versions
              FROM policies AS p
              JOIN LATERAL (SELECT count(*) AS versions FROM policy_versions WHERE policy_id = p.id) AS v ON true
              WHERE p.tenant_id = ANY(:tenant_ids)
              GROUP BY p.tenant_id) AS per_tenant
    """), {"tenant_ids": tenant_ids}).one()
    fewest_policies, fewest_versions, most_versions = versions_per_policy
    assert fewest_policies >= 24  # dozens per tenant
    assert (fewest_versions, most_versions) == (2, 5)


def test_policy_versions_hash_their_snapshots_and_differ_in_a_few_settings(db_session):
    seed()

    mismatched_hashes = db_session.scalar(text("""
        SELECT count(*) FROM policy_versions
        WHERE content_hash <> encode(sha256(convert_to(snapshot::text, 'UTF8')), 'hex')
    """))
    assert mismatched_hashes == 0

    # Settings that changed from each version to the next, ignoring the Graph metadata.
    changed_settings = db_session.execute(text("""
        SELECT newer.id,
               (SELECT count(*) FROM jsonb_each(newer.snapshot) AS n(key, value)
                WHERE n.key NOT IN ('version', 'lastModifiedDateTime')
                  AND n.value IS DISTINCT FROM older.snapshot -> n.key)
        FROM policy_versions AS newer
        JOIN policy_versions AS older
          ON older.policy_id = newer.policy_id AND older.version_number = newer.version_number - 1
    """)).all()
    assert changed_settings
    assert all(1 <= changed <= 3 for _, changed in changed_settings)

    policy_settings_match_latest_version = db_session.scalar(text("""
        SELECT bool_and(p.settings <@ latest.snapshot)
        FROM policies AS p
        JOIN LATERAL (SELECT snapshot FROM policy_versions WHERE policy_id = p.id
                      ORDER BY version_number DESC LIMIT 1) AS latest ON true
    """))
    assert policy_settings_match_latest_version


def test_findings_are_computed_from_the_demo_rows_and_triaged_by_its_people(db_session):
    seed()

    states = set(db_session.execute(select(Finding.kind, Finding.severity, Finding.status)).all())
    # Demo tenants are not connected: what they grant is unknown, so no permission finding (the
    # portfolio shows a dash there too); backups and drift are known from their rows.
    assert {kind for kind, _, _ in states} == {"backup", "drift"}
    assert {"medium", "high"} <= {severity for _, severity, _ in states}
    # Resolved findings come from real changes (a later sync, a new backup), never from the seed.
    assert {status for _, _, status in states} == {"open", "acknowledged", "accepted"}
    assert db_session.scalar(select(func.count()).where(Finding.subject_key.is_(None))) == 0
    assert db_session.scalar(select(func.count()).where(Finding.policy_id.is_not(None))) > 0
    # Each finding has the history of how it came to be (detected, then any triage by a member).
    assert db_session.scalar(text("SELECT count(*) FROM findings WHERE history -> 0 ->> 'event' <> 'detected'")) == 0
    accepted = db_session.scalars(select(Finding).where(Finding.status == "accepted")).all()
    assert all(f.detail["acceptance"]["reason"] and f.accepted_until is not None for f in accepted)

    permission_states = Counter(db_session.scalars(select(TenantPermission.status)))
    assert permission_states["missing"] > 0 and permission_states["granted"] > permission_states["missing"]

    backup_states = set(db_session.scalars(text("SELECT DISTINCT status FROM backup_sets")))
    assert backup_states == {"completed", "partial", "failed"}  # nothing pending without a job behind it
    # Backups share payloads: far fewer payloads than the items the sets list.
    listed, payloads = db_session.execute(text(
        "SELECT (SELECT sum(cardinality(item_ids)) FROM backup_sets), (SELECT count(*) FROM backup_payloads)")).one()
    assert payloads * 2 < listed
    assert db_session.scalar(text("SELECT count(*) FROM backup_sets WHERE cardinality(item_ids) <> item_count")) == 0
    assert db_session.scalar(text("SELECT count(*) FROM backup_schedules WHERE NOT is_enabled")) > 0
    assert db_session.scalar(text("SELECT count(*) FROM inventory_links WHERE source_item_id = target_item_id")) == 0


def test_tenant_rows_and_audit_entries_carry_the_tenant_workspace(db_session):
    seed()

    for model in TENANT_OWNED_MODELS:
        table = model.__tablename__
        mismatched = db_session.scalar(text(
            f"SELECT count(*) FROM {table} AS row JOIN tenants ON tenants.id = row.tenant_id"
            f" WHERE row.workspace_id IS DISTINCT FROM tenants.workspace_id"
        ))
        assert mismatched == 0, table

    tenant_entries = db_session.execute(
        select(AuditLog.workspace_id, Tenant.workspace_id).join(Tenant, Tenant.id == AuditLog.tenant_id)
    ).all()
    assert tenant_entries
    assert all(entry_workspace == tenant_workspace for entry_workspace, tenant_workspace in tenant_entries)


# --- idempotency and scale ---------------------------------------------------------------


def test_seeding_twice_changes_nothing_and_scale_adds_only_new_tenants(db_session):
    seed()
    once = row_counts(db_session)
    output = seed()
    assert row_counts(db_session) == once
    assert any("0 new tenants" in line for line in output)

    seed(scale=2)
    doubled = row_counts(db_session)
    assert len(demo_tenant_ids(db_session, scale=2)) == 2 * TENANTS_PER_SCALE
    assert doubled["tenants"] == once["tenants"] + TENANTS_PER_SCALE
    assert 1.7 < doubled["policies"] / once["policies"] < 2.3
    for table in ("users", "workspaces", "workspace_memberships"):
        assert doubled[table] == once[table]

    seed(scale=2)
    assert row_counts(db_session) == doubled


def test_policies_per_tenant_sets_the_count_for_new_tenants(db_session):
    seed(policies_per_tenant=3)

    tenant_ids = demo_tenant_ids(db_session)
    policy_counts = set(db_session.scalars(
        select(func.count()).select_from(Policy).where(Policy.tenant_id.in_(tenant_ids)).group_by(Policy.tenant_id)
    ))
    assert policy_counts == {3}


# --- demo sign-ins ---------------------------------------------------------------------------


def test_demo_users_sign_in_with_the_shared_password(db_session):
    seed()

    users = db_session.scalars(select(User).where(User.email.in_(DEMO_EMAILS))).all()
    assert {user.email for user in users} == set(DEMO_EMAILS)
    assert len({user.password_hash for user in users}) == 1  # hashed once, shared
    assert verify_password(users[0].password_hash, DEMO_PASSWORD) == (True, False)
    assert all(user.email.endswith(f"@{DEMO_EMAIL_DOMAIN}") for user in users)


def test_an_existing_demo_user_keeps_their_password(db_session, make_user):
    existing = make_user(DEMO_EMAILS[0], name="Olivia Chen")
    original_hash = existing.password_hash

    seed()

    db_session.refresh(existing)
    assert existing.password_hash == original_hash
    assert not verify_password(existing.password_hash, DEMO_PASSWORD)[0]
    assert db_session.scalar(
        select(func.count()).select_from(WorkspaceMembership).where(WorkspaceMembership.user_id == existing.id)
    ) == len(DEMO_USERS[0][2])


@pytest.mark.parametrize("bad_options", [{"scale": 0}, {"policies_per_tenant": 0}])
def test_seed_rejects_nonsense_sizes(db_session, bad_options):
    with pytest.raises(ValueError):
        seed_demo_data(echo=lambda line: None, **bad_options)


# --- the demo does not contradict itself -------------------------------------------------------

WINDOWS_APP_TYPES = ("#microsoft.graph.win32LobApp", "#microsoft.graph.winGetApp", "#microsoft.graph.officeSuiteApp")


def test_no_backup_finding_sits_beside_a_successful_backup_of_the_last_7_days(db_session):
    seed()

    rows = db_session.execute(text("""
        SELECT tenant.id, finding.status,
               (finding.detail ->> 'lastSuccessfulBackupDaysAgo')::int AS days_ago,
               (SELECT max(finished_at) FROM backup_sets AS backup
                 WHERE backup.tenant_id = tenant.id AND backup.status IN ('completed', 'partial')) AS last_success
        FROM tenants AS tenant
        LEFT JOIN findings AS finding ON finding.tenant_id = tenant.id AND finding.kind = 'backup'
        WHERE tenant.status = 'active'""")).all()
    now = db_session.scalar(text("SELECT now()"))
    with_finding = [row for row in rows if row.status is not None]
    assert with_finding, "the demo should still show this finding where it is true"
    for tenant_id, status, days_ago, last_success in rows:
        stale = last_success is None or now - last_success > timedelta(days=7)
        assert (status is not None) == stale, tenant_id  # a finding exactly where it is true
        if status is not None:
            assert days_ago == (None if last_success is None else (now - last_success).days), tenant_id


def test_no_windows_app_is_installed_on_an_iphone_or_android_device(db_session):
    seed()

    installs = db_session.execute(text("""
        SELECT device.data ->> 'operatingSystem' AS os, app.data ->> '@odata.type' AS app_type, app.display_name,
               device.id AS device_id
        FROM inventory_links AS link
        JOIN inventory_items AS app ON app.id = link.source_item_id AND app.object_type = 'app'
        JOIN inventory_items AS device ON device.id = link.target_item_id AND device.object_type = 'device'
        WHERE link.link_type = 'installedOn'""")).all()
    assert {os for os, _, _, _ in installs} == {"Windows", "macOS", "iOS", "Android"}
    wrong = [(device, app) for os, app_type, app, device in installs
             if os in ("iOS", "Android") and app_type in WINDOWS_APP_TYPES]
    assert wrong == []
    # Each app is made for the platform of the device it is on; every device has three.
    platform_of_type = {"ios": "iOS", "android": "Android", "macos": "macOS"}
    for os, app_type, app, device in installs:
        kind = app_type.removeprefix("#microsoft.graph.").lower()
        expected = next((platform for prefix, platform in platform_of_type.items() if kind.startswith(prefix)),
                        "Windows")
        assert expected == os, (device, app, app_type)
    assert set(Counter(device_id for _, _, _, device_id in installs).values()) == {3}


def test_no_policy_name_repeats_its_variant_as_in_pilot_pilot(db_session):
    from simulator.demo import variant_name

    seed()

    names = set(db_session.scalars(select(Policy.display_name)))
    assert any(name.startswith("WIN - Update Ring - Pilot - ") for name in names)  # its variants are there
    for name in names:
        parts = name.split(" - ")
        assert parts[-1].rstrip("0123456789 ") != parts[-2], name
    # The simulator names a demo tenant's policies as the seed does.
    for template in POLICY_TEMPLATES:
        for pass_no in range(1, 3):
            simulated = variant_name(template["display_name"], pass_no)
            assert simulated.split(" - ")[-1] != template["display_name"].split(" - ")[-1]
    pilot = next(t for t in POLICY_TEMPLATES if t["display_name"] == "WIN - Update Ring - Pilot")
    assert variant_name(pilot["display_name"], 1) == "WIN - Update Ring - Pilot - Finance"
    assert "WIN - Update Ring - Pilot - Finance" in names


def test_the_demo_has_one_platform_administrator(cli_runner, db_session):
    from app.models import User
    from app.demo.seed import DEMO_ADMIN_EMAIL

    result = cli_runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    admins = db_session.scalars(select(User.email).where(User.is_admin.is_(True))).all()
    assert admins == [DEMO_ADMIN_EMAIL]
    assert "platform administrator" in result.output


def test_the_demo_administrator_signs_in_with_microsoft_at_the_simulators_staff_tenant(tmp_path, cli_runner,
                                                                                       db_session):
    """The seed links the administrator by the (tid, oid) the simulator gives its staff tenant's sign-in user."""
    from simulator import Simulator
    from simulator.staff_demo import add_staff_tenant

    from app.demo import DEMO_STAFF_TENANT_ID
    from app.models import User
    from app.demo.seed import DEMO_ADMIN_EMAIL

    assert cli_runner.invoke(args=["seed-demo"]).exit_code == 0
    admin = db_session.scalar(select(User).where(User.email == DEMO_ADMIN_EMAIL))
    with Simulator.start(tmp_path) as sim:
        add_staff_tenant(sim)
        person = sim.signin_user(DEMO_STAFF_TENANT_ID)
    assert person["username"] == DEMO_ADMIN_EMAIL
    assert (str(admin.entra_tenant_id), str(admin.entra_object_id)) == (DEMO_STAFF_TENANT_ID, person["object_id"])
