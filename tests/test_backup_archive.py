"""Backup archives: a backup set downloads as a zip (one JSON file per item and a manifest), and such a zip
uploads as a new backup set of its tenant, sharing the payloads the tenant holds already. A bad archive
(not a zip, too large, unsafe names, a bad manifest, items that are not what it says, hostile JSON,
another tenant's) is a 400 with a message saying why, and nothing is stored."""
from __future__ import annotations

import dataclasses
import hashlib
import html
import io
import json
import math
import struct
import uuid
import warnings
import zipfile

import pytest
from sqlalchemy import delete, func, select

from app.backup import archive
from app.backup.schedules import prune_unreferenced
from app.extensions import db
from app.models import AuditLog, BackupItem, BackupPayload, BackupSet
from tests.conftest import csrf_token, enter, page, sign_in, tenant_url
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app  # noqa: F401

# --- building archives by hand, as the format says (not with the code under test) -----------------------


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def policy(graph_id: str, name: str, **extra) -> tuple[str, dict, bool]:
    return "deviceConfigurations", {"object": {"id": graph_id, "displayName": name,
                                               "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
                                               **extra}, "assignments": []}, False


def group(graph_id: str, name: str) -> tuple[str, dict, bool]:
    return "groups", {"object": {"id": graph_id, "displayName": name}}, True


DEFAULT_ITEMS = (policy("p-1", "Alpha baseline"), policy("p-2", "Alpha baseline"), group("g-1", "All laptops"))


def build_archive(tenant, items=DEFAULT_ITEMS, *, manifest=None, files=None, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A valid archive of `tenant` holding `items`; `manifest(m)` and `files(f)` may then change it.

    `files` is a list of (entry name, bytes), in zip order: entries may be added, dropped or repeated.
    """
    entries, listed = [], []
    for family, body, is_reference in items:
        data = canonical(body)
        path = f"items/{family}/{body['object']['id']}.json"
        entries.append((path, data))
        listed.append({"path": path, "family": family, "graph_id": body["object"]["id"],
                       "display_name": body["object"]["displayName"], "sha256": hashlib.sha256(data).hexdigest(),
                       "is_reference": is_reference})
    counts = {}
    for entry in listed:
        counts[entry["family"]] = counts.get(entry["family"], 0) + 1
    content = {
        "format": "tenantatlas-backup", "version": 1,
        "tenant": {"id": str(tenant.external_id), "name": tenant.name, "domain": None},
        "backup": {"name": "Nightly 2025-01-31", "started_at": "2025-01-31T02:00:00+00:00",
                   "finished_at": "2025-01-31T02:03:00+00:00", "status": "completed"},
        "exported_at": "2025-02-01T09:00:00+00:00",
        "api_versions": {family: ("v1.0" if family == "groups" else "beta") for family in counts},
        "counts": counts,
        "items": listed,
    }
    if manifest:
        manifest(content)
    entries.append(("manifest.json", json.dumps(content).encode("utf-8")))
    if files:
        files(entries)
    return zip_of(entries, compression)


def zip_of(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name", wanted by one test
        with zipfile.ZipFile(buffer, "w", compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buffer.getvalue()


def entry(entries, name) -> int:
    return next(i for i, (n, _) in enumerate(entries) if n == name)


def replace_item(path: str, data: bytes):
    def change(entries):
        entries[entry(entries, path)] = (path, data)
    return change


def item_of(manifest, graph_id) -> dict:
    return next(i for i in manifest["items"] if i["graph_id"] == graph_id)


def nested(depth: int):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --- over HTTP -----------------------------------------------------------------------------------------------


def upload(client, tenant, data: bytes, file_name: str = "backup.zip"):
    return client.post(tenant_url(tenant, "/backups/upload"),
                       data={"csrf_token": csrf_token(client), "archive": (io.BytesIO(data), file_name)},
                       content_type="multipart/form-data")


def stored_rows() -> tuple[int, int, int]:
    return tuple(db.session.scalar(select(func.count()).select_from(model))
                 for model in (BackupSet, BackupItem, BackupPayload))


def assert_refused(client, tenant, data: bytes, message: str, status: int = 400):
    before = stored_rows()
    response = upload(client, tenant, data)
    body = html.unescape(response.get_data(as_text=True))
    assert response.status_code == status, body[:2000]
    assert message in body, body[body.find("alert"):][:300]
    assert stored_rows() == before


def latest_set(tenant) -> BackupSet:
    return db.session.scalar(select(BackupSet).where(BackupSet.tenant_id == tenant.id).order_by(BackupSet.id.desc()))


def items_of(backup_set) -> list[BackupItem]:
    return list(db.session.scalars(select(BackupItem).where(BackupItem.tenant_id == backup_set.tenant_id,
                                                            BackupItem.id.in_(backup_set.item_ids))))


@pytest.fixture
def small_limits(monkeypatch):
    def apply(**limits):
        monkeypatch.setattr(archive, "LIMITS", dataclasses.replace(archive.LIMITS, **limits))
    return apply


@pytest.fixture
def operator(client, make_user, make_workspace, add_member):
    """A client signed in as an operator of a new workspace (current), and that workspace."""
    workspace = make_workspace()
    user = make_user(name="Olga Operator")
    add_member(workspace, user, "operator")
    sign_in(client, user.email)
    enter(client, workspace)
    client.workspace = workspace
    return client


# --- download and upload of a real backup ---------------------------------------------------------------


def download(client, tenant, backup_set) -> bytes:
    response = client.get(tenant_url(tenant, f"/backups/{backup_set.id}/download"))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data()


def test_a_backup_downloads_as_one_canonical_json_file_per_item_and_a_manifest(operator, connected_tenant):
    tenant = connected_tenant(operator.workspace)
    backup_set = backup_now(tenant)
    response = operator.get(tenant_url(tenant, f"/backups/{backup_set.id}/download"))
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=tenantatlas-sync-") and disposition.endswith(
        f"-set{backup_set.id}.zip")
    zf = zipfile.ZipFile(io.BytesIO(response.get_data()))
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "tenantatlas-backup" and manifest["version"] == 1
    assert manifest["tenant"]["id"] == str(tenant.external_id)
    assert manifest["backup"]["name"] == backup_set.name and manifest["backup"]["status"] == "completed"
    items = {item.id: item for item in items_of(backup_set)}
    assert len(manifest["items"]) == len(items) == backup_set.item_count
    assert sorted(zf.namelist()) == sorted(["manifest.json", *(entry["path"] for entry in manifest["items"])])
    by_key = {(item.family, item.graph_id): item for item in items.values()}
    for listed in manifest["items"]:
        item = by_key[(listed["family"], listed["graph_id"])]
        data = zf.read(listed["path"])
        payload = db.session.get(BackupPayload, item.payload_id)
        assert data == canonical(payload.body)  # the payload exactly, in canonical form
        assert hashlib.sha256(data).hexdigest() == listed["sha256"] == item.content_hash
        assert (listed["display_name"], listed["is_reference"]) == (item.display_name, item.is_reference)
    assert manifest["counts"] == {family: sum(1 for i in items.values() if i.family == family)
                                  for family in {i.family for i in items.values()}}
    assert manifest["api_versions"]["settingsCatalog"] == "beta" and manifest["api_versions"]["groups"] == "v1.0"
    audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "backup.download"))
    assert audit.target_id == str(backup_set.id) and audit.details["items"] == len(items)


def test_an_uploaded_download_is_a_new_set_of_the_very_same_items_and_payloads(operator, connected_tenant):
    tenant = connected_tenant(operator.workspace)
    original = backup_now(tenant)
    data = download(operator, tenant, original)
    before = stored_rows()
    response = upload(operator, tenant, data, "contoso.zip")
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))[:1000]
    uploaded = latest_set(tenant)
    assert response.headers["Location"].endswith(f"/backups/{uploaded.id}")
    assert uploaded.id != original.id
    assert (uploaded.triggered_by, uploaded.status, uploaded.name) == ("upload", "completed", original.name)
    assert uploaded.item_ids == original.item_ids  # the same item rows, so the same payload rows
    assert stored_rows() == (before[0] + 1, before[1], before[2])
    assert uploaded.size_bytes == 0 and uploaded.item_count == original.item_count
    assert uploaded.started_at == original.started_at
    audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "backup.upload"))
    assert audit.target_id == str(uploaded.id) and audit.details["after"]["items"] == original.item_count


def test_an_upload_brings_back_a_backup_whose_rows_were_pruned(operator, connected_tenant):
    tenant = connected_tenant(operator.workspace)
    original = backup_now(tenant)
    kept = {(item.family, item.graph_id): (item.content_hash, item.display_name, item.is_reference,
                                           db.session.get(BackupPayload, item.payload_id).body)
            for item in items_of(original)}
    data = download(operator, tenant, original)
    db.session.execute(delete(BackupSet).where(BackupSet.tenant_id == tenant.id))
    prune_unreferenced(tenant.id)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(BackupPayload)
                             .where(BackupPayload.tenant_id == tenant.id)) == 0
    assert upload(operator, tenant, data).status_code == 302
    uploaded = latest_set(tenant)
    assert {(item.family, item.graph_id): (item.content_hash, item.display_name, item.is_reference,
                                           db.session.get(BackupPayload, item.payload_id).body)
            for item in items_of(uploaded)} == kept
    assert uploaded.size_bytes > 0


def test_another_tenants_archive_is_refused_and_names_that_tenant(operator, connected_tenant):
    source = connected_tenant(operator.workspace)
    other = connected_tenant(operator.workspace)
    data = download(operator, source, backup_now(source))
    assert_refused(operator, other, data, f"This archive is a backup of another tenant ('{source.name}', "
                                          f"{source.external_id}); upload it on that tenant's page.")


def test_writing_an_archive_reads_payloads_a_batch_at_a_time(operator, connected_tenant, monkeypatch,
                                                             count_statements):
    tenant = connected_tenant(operator.workspace)
    backup_set = backup_now(tenant)
    monkeypatch.setattr(archive, "EXPORT_BATCH", 7)
    with count_statements() as counter:
        download(operator, tenant, backup_set)
    payload_reads = [s for s in counter.statements if "FROM backup_payloads" in s]
    assert len(payload_reads) == math.ceil(backup_set.item_count / 7) > 1


# --- access ---------------------------------------------------------------------------------------------------


def test_another_workspaces_backup_set_is_a_404_on_download(ada, world):
    assert ada.get(tenant_url(world.tenant_a, f"/backups/{world.ids_b['backup_set_id']}/download")).status_code == 404
    assert ada.get(tenant_url(world.tenant_a, f"/backups/{world.ids_a['backup_set_id']}/download")).status_code == 200


def test_a_readonly_member_can_neither_download_nor_upload(client, world, make_user, add_member):
    reader = make_user(name="Rita Readonly")
    add_member(world.a, reader, "readonly")
    sign_in(client, reader.email)
    enter(client, world.a)
    response = client.get(tenant_url(world.tenant_a, f"/backups/{world.ids_a['backup_set_id']}/download"))
    assert response.status_code == 403
    assert "Only an operator or higher can download a backup" in html.unescape(response.get_data(as_text=True))
    assert_refused(client, world.tenant_a, build_archive(world.tenant_a),
                   "Only an operator or higher can upload a backup", status=403)
    assert 'id="backup-upload-form"' not in page(client, tenant_url(world.tenant_a, "/backups"))
    # No Download button that would only answer 403.
    assert "/download" not in page(client, tenant_url(world.tenant_a, f"/backups/{world.ids_a['backup_set_id']}"))


def test_an_operator_sees_the_upload_form_and_a_failed_backup_cannot_be_downloaded(ada, world):
    assert 'id="backup-upload-form"' in page(ada, tenant_url(world.tenant_a, "/backups"))
    backup_set = db.session.get(BackupSet, world.ids_a["backup_set_id"])
    backup_set.status, backup_set.item_ids = "failed", []
    db.session.commit()
    response = ada.get(tenant_url(world.tenant_a, f"/backups/{backup_set.id}/download"))
    assert response.status_code == 409
    assert "only a completed or partial backup can be downloaded" in response.get_data(as_text=True)


# --- uploads of hand-made archives ---------------------------------------------------------------------------


def test_a_hand_made_archive_in_the_documented_format_uploads(ada, world):
    """The archive every refusal below starts from: valid, so each refusal is its one change's doing."""
    tenant = world.tenant_a
    before = stored_rows()
    response = upload(ada, tenant, build_archive(tenant))
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))[:1500]
    uploaded = latest_set(tenant)
    assert (uploaded.name, uploaded.triggered_by, uploaded.item_count) == ("Nightly 2025-01-31", "upload", 3)
    assert stored_rows() == (before[0] + 1, before[1] + 3, before[2] + 3)
    items = sorted(items_of(uploaded), key=lambda item: item.graph_id)
    assert [(i.family, i.graph_id, i.display_name, i.is_reference) for i in items] == [
        ("groups", "g-1", "All laptops", True), ("deviceConfigurations", "p-1", "Alpha baseline", False),
        ("deviceConfigurations", "p-2", "Alpha baseline", False)]
    assert uploaded.families["deviceConfigurations"]["items"] == 2


def test_a_partial_backup_uploads_as_partial_and_an_unnamed_one_is_named_after_its_file(ada, world):
    def unnamed_partial(manifest):
        manifest["backup"].update(name="", status="partial")
    assert upload(ada, world.tenant_a, build_archive(world.tenant_a, manifest=unnamed_partial),
                  "contoso\x01 march.zip").status_code == 302
    uploaded = latest_set(world.tenant_a)
    assert (uploaded.name, uploaded.status) == ("Upload of contoso march.zip", "partial")
    assert "partial" in uploaded.error


def zip64(tenant) -> bytes:
    """A valid archive whose end record defers to a ZIP64 one (as zipfile writes beyond 65,535 entries)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
        return build_archive(tenant)


def with_flag(data: bytes, name: bytes, bit: int) -> bytes:
    """`data` with a general-purpose flag bit set on entry `name` in its local and central headers."""
    data = bytearray(data)
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = -1
        while True:
            at = data.find(signature, at + 1)
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                break
        flags = struct.unpack_from("<H", data, at + flags_at)[0]
        struct.pack_into("<H", data, at + flags_at, flags | bit)
    return bytes(data)


def with_entry_count(data: bytes, count: int) -> bytes:
    """`data` with its end record claiming `count` entries."""
    data = bytearray(data)
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, count, count)
    return bytes(data)


def damaged(tenant) -> bytes:
    data = build_archive(tenant, compression=zipfile.ZIP_STORED)
    return data.replace(b'"displayName":"Alpha baseline"', b'"displayName":"Alpha baseliNe"', 1)


@pytest.mark.parametrize("make, message", [
    (lambda t: b"PK\x03\x04 not really a zip", archive.NOT_A_ZIP),
    (lambda t: build_archive(t)[:-30], archive.NOT_A_ZIP),
    (damaged, "cannot be read: the archive is damaged (Bad CRC-32"),
    (lambda t: with_flag(build_archive(t), b"items/deviceConfigurations/p-1.json", 0x1),
     "'items/deviceConfigurations/p-1.json' is encrypted"),
    (lambda t: build_archive(t, compression=zipfile.ZIP_BZIP2), "is compressed with a method other than deflate"),
    (zip64, "This archive uses ZIP64"),
], ids=["not a zip", "truncated", "damaged entry", "encrypted entry", "bzip2", "zip64"])
def test_a_file_that_is_not_an_intact_plain_zip_is_refused(ada, world, make, message):
    assert_refused(ada, world.tenant_a, make(world.tenant_a), message)


def many_policies(n):
    return [policy(f"p-{i}", f"Policy {i}") for i in range(n)]


@pytest.mark.parametrize("limits, make, message", [
    ({"upload_bytes": 1000}, lambda t: build_archive(t), "KiB; an upload may be at most 1,000 bytes."),
    ({"max_items": 2}, lambda t: build_archive(t, many_policies(20)),
     "The archive holds too many files: at most 2 items"),
    ({"max_items": 2}, lambda t: with_entry_count(build_archive(t, many_policies(20)), 3),
     "The archive holds 21 files: at most 2 items"),
    ({"max_items": 2}, lambda t: build_archive(t, many_policies(5)), "The archive lists 5 items; at most 2"),
    ({"entry_bytes": 1000}, lambda t: build_archive(t, [policy("p-1", "Big", notes=uuid.uuid4().hex * 40)]),
     "'items/deviceConfigurations/p-1.json' is 1.4 KiB uncompressed; a file in an archive may be at most 1,000 bytes."),
    ({"total_bytes": 1500}, lambda t: build_archive(t, many_policies(8)),
     "The archive is more than 1.5 KiB uncompressed"),
    ({}, lambda t: build_archive(t, [policy("p-1", "Bomb", notes="A" * 300_000)]),
     "'items/deviceConfigurations/p-1.json' is compressed"),
], ids=["upload", "entries in the end record", "entries in the directory", "items in the manifest", "one entry",
        "uncompressed total", "compression ratio"])
def test_an_archive_beyond_the_limits_is_refused(ada, world, small_limits, limits, make, message):
    small_limits(**limits)
    assert_refused(ada, world.tenant_a, make(world.tenant_a), message)


def test_an_archive_larger_than_the_apps_form_limit_uploads(ada, world, app):
    notes = "".join(uuid.uuid4().hex for _ in range(80_000))  # 2.6 MB that deflate cannot shrink much
    data = build_archive(world.tenant_a, [policy("p-1", "Large", notes=notes)])
    assert len(data) > app.config["MAX_CONTENT_LENGTH"]
    response = upload(ada, world.tenant_a, data)
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))[:1500]


def test_an_upload_beyond_the_request_limit_is_refused_before_it_is_read(ada, world, small_limits):
    small_limits(upload_bytes=1024)
    too_large = build_archive(world.tenant_a, [policy("p-1", "Huge", notes=uuid.uuid4().hex * 5000)],
                              compression=zipfile.ZIP_STORED)
    assert len(too_large) > 1024 + 64 * 1024
    assert_refused(ada, world.tenant_a, too_large,
                   "The archive is larger than 1 KiB, the most an upload may be. Nothing was stored.", status=413)


def add_entry(name, data=b"{}"):
    return lambda entries: entries.append((name, data))


@pytest.mark.parametrize("name", ["../escape.json", "/etc/tenantatlas.json", "items\\deviceConfigurations\\x.json",
                                  "C:/Windows/x.json", "items//x.json", "items/./x.json"])
def test_an_entry_name_that_would_escape_the_folder_is_refused(ada, world, name):
    data = build_archive(world.tenant_a, files=add_entry(name))
    assert_refused(ada, world.tenant_a, data, "The archive holds a file with an unsafe name")


def test_an_entry_name_longer_than_any_items_is_refused(ada, world):
    data = build_archive(world.tenant_a, files=add_entry("items/deviceConfigurations/" + "a" * 240 + ".json"))
    assert_refused(ada, world.tenant_a, data, "The archive holds a file whose name is longer than any item's")


def test_an_entry_twice_in_the_zip_is_refused(ada, world):
    def repeat(entries):
        entries.append(entries[0])
    assert_refused(ada, world.tenant_a, build_archive(world.tenant_a, files=repeat),
                   "The archive holds 'items/deviceConfigurations/p-1.json' twice.")


def without(key, where=None):
    def change(manifest):
        del (manifest[where] if where else manifest)[key]
    return change


def setting(path, value):
    def change(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def on_item(which, **values):
    def change(manifest):
        item_of(manifest, which).update(values)
    return change


NOT_A_MANIFEST = "manifest.json is not a TenantAtlas backup manifest: "


@pytest.mark.parametrize("manifest, files, message", [
    (None, lambda e: e.pop(entry(e, "manifest.json")), "The archive has no manifest.json"),
    (None, replace_item("manifest.json", b'{"format": '), "'manifest.json' is not valid JSON"),
    (None, replace_item("manifest.json", b"[]"), NOT_A_MANIFEST + "it is not a JSON object"),
    (setting(["format"], "intunecd"), None, NOT_A_MANIFEST + '"format" must be "tenantatlas-backup"'),
    (setting(["version"], 2), None, "manifest.json is version 2 of the format; this console reads version 1"),
    (setting(["version"], True), None, "manifest.json is version true of the format"),
    (without("tenant"), None, NOT_A_MANIFEST + '"tenant" must be an object'),
    (setting(["tenant", "id"], "contoso.onmicrosoft.com"), None, NOT_A_MANIFEST + '"tenant.id" must be an Entra'),
    (setting(["tenant", "domain"], ["contoso.com"]), None, NOT_A_MANIFEST + '"tenant.domain" must be text'),
    (setting(["backup"], "Nightly"), None, NOT_A_MANIFEST + '"backup" must be an object'),
    (setting(["backup", "status"], "failed"), None, NOT_A_MANIFEST + '"backup.status" must be one of'),
    (setting(["backup", "started_at"], "yesterday"), None, NOT_A_MANIFEST + '"backup.started_at" must be a time'),
    (setting(["exported_at"], "2025-02-01T09:00:00"), None, NOT_A_MANIFEST + '"exported_at" must be a time'),
    (setting(["items"], {}), None, NOT_A_MANIFEST + '"items" must be a list'),
    (setting(["items"], []), None, "The archive holds no items"),
    (lambda m: item_of(m, "p-1").pop("sha256"), None, NOT_A_MANIFEST + "item 1 must be an object with exactly"),
    (on_item("p-1", family="roleDefinitions"), None, "item 1 is of family 'roleDefinitions', which a backup does not"),
    (on_item("p-1", graph_id="p-1\n"), None, "item 1 has no usable graph_id"),
    (on_item("p-1", graph_id="x" * 129), None, "item 1 has no usable graph_id"),
    (on_item("p-1", sha256="A" * 64), None, "item 1's sha256 must be 64 lower-case hex digits"),
    (on_item("p-1", is_reference="no"), None, "item 1's is_reference must be true or false"),
    (on_item("g-1", path="items/deviceConfigurations/g-1.json"), None,
     "item 3's path must be items/groups/<file name>.json"),
    (on_item("p-2", path="items/deviceConfigurations/p-1.json"), None,
     "'items/deviceConfigurations/p-1.json' is listed twice"),
    (on_item("p-2", graph_id="p-1"), None, "the Device configurations object 'p-1' is listed twice"),
    (setting(["counts", "deviceConfigurations"], 3), None, '"counts" must give the number of items listed'),
    (without("groups", "api_versions"), None, '"api_versions" must name the Graph version of each family'),
    (setting(["api_versions", "deviceConfigurations"], "v1.0"), None,
     "The archive's Device configurations were read from Graph 'v1.0'; this console reads them from beta"),
], ids=["missing", "not JSON", "not an object", "format", "version", "version as a boolean", "no tenant",
        "tenant id", "tenant domain", "backup not an object", "backup status", "start time", "time without offset",
        "items not a list", "no items", "item key missing", "unknown family", "graph id with a newline",
        "graph id too long", "sha256 format", "is_reference type", "path of another family", "path listed twice",
        "object listed twice", "counts", "api versions missing", "api version differs"])
def test_a_missing_or_malformed_manifest_is_refused(ada, world, manifest, files, message):
    assert_refused(ada, world.tenant_a, build_archive(world.tenant_a, manifest=manifest, files=files), message)


def test_a_listed_file_must_be_present_and_a_present_file_listed(ada, world):
    tenant = world.tenant_a
    missing = build_archive(tenant, files=lambda e: e.pop(entry(e, "items/groups/g-1.json")))
    assert_refused(ada, tenant, missing, "The manifest lists 'items/groups/g-1.json', which the archive does not hold.")
    _, body, _ = policy("p-9", "Smuggled")
    unlisted = build_archive(tenant, files=add_entry("items/deviceConfigurations/p-9.json", canonical(body)))
    assert_refused(ada, tenant, unlisted, "The archive holds 'items/deviceConfigurations/p-9.json', "
                                          "which its manifest does not list.")


def test_directory_entries_a_zip_tool_adds_are_not_files(ada, world):
    def directories(entries):
        entries[:0] = [("items/", b""), ("items/deviceConfigurations/", b""), ("items/groups/", b"")]
    response = upload(ada, world.tenant_a, build_archive(world.tenant_a, files=directories))
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))[:1500]


P1 = "items/deviceConfigurations/p-1.json"


def same_hash(body: dict):
    """The manifest's sha256 of p-1 made the given body's, so only the body's other faults remain."""
    return on_item("p-1", sha256=hashlib.sha256(canonical(body)).hexdigest())


CHANGED = {"object": {"id": "p-1", "displayName": "Alpha baseline (edited)"}, "assignments": []}
SOMEONE_ELSE = {"object": {"id": "p-7", "displayName": "Alpha baseline"}, "assignments": []}


@pytest.mark.parametrize("manifest, data, message", [
    (None, b"{not json", f"'{P1}' is not valid JSON"),
    (None, "{}".encode("utf-16"), f"'{P1}' is not UTF-8 text"),
    (same_hash(["object"]), canonical(["object"]), f"'{P1}' is not a backup payload"),
    (same_hash({"object": "p-1"}), canonical({"object": "p-1"}), f"'{P1}' is not a backup payload"),
    (None, canonical({"object": {"id": "p-1"}, "settings": []}),
     f"'{P1}' is not a Device configurations payload: it holds 'settings'"),
    (None, canonical({"object": {"id": "p-1"}, "assignments": {}}), '"assignments" must be a list of objects'),
    (same_hash(SOMEONE_ELSE), canonical(SOMEONE_ELSE), f"'{P1}' holds the object 'p-7', not 'p-1'"),
    (None, canonical(CHANGED), f"'{P1}' does not match its sha256 in the manifest"),
], ids=["not JSON", "not UTF-8", "a list", "object not an object", "relation of another family",
        "relation not a list", "another object", "edited"])
def test_an_item_file_that_is_not_the_payload_its_manifest_says_is_refused(ada, world, manifest, data, message):
    archive_data = build_archive(world.tenant_a, manifest=manifest, files=replace_item(P1, data))
    assert_refused(ada, world.tenant_a, archive_data, message)


def hostile_item(raw: bytes):
    """p-1's file replaced by `raw`, its manifest hash made the hash of what `raw` parses to (when it parses)."""
    def manifest(content):
        try:
            item_of(content, "p-1")["sha256"] = hashlib.sha256(canonical(json.loads(raw))).hexdigest()
        except (ValueError, RecursionError, UnicodeEncodeError):
            pass
    return {"manifest": manifest, "files": replace_item(P1, raw)}


@pytest.mark.parametrize("make, message", [
    (lambda t: build_archive(t, [policy("p-1", "Deep", nested=nested(150))]), f"'{P1}' is nested deeper than 100"),
    (lambda t: build_archive(t, compression=zipfile.ZIP_STORED,  # deflated, it would be refused as a zip bomb
                             **hostile_item(b'{"object":{"id":"p-1","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}}")),
     f"'{P1}' is nested deeper than 100"),
    (lambda t: build_archive(t, [policy("p-1", "Deep", nested=nested(80))]),
     f"'{P1}' is not a payload TenantAtlas keeps: nested deeper than 64 levels"),
    (lambda t: build_archive(t, manifest=setting(["comment"], nested(150))),
     "'manifest.json' is nested deeper than 100"),
    (lambda t: build_archive(t, [policy("p-1", "Alpha", notes="before\x00after")]), f"'{P1}' holds a NUL character"),
    (lambda t: build_archive(t, **hostile_item(b'{"object":{"id":"p-1","k\\u0000":1},"assignments":[]}')),
     f"'{P1}' holds a NUL character"),
    (lambda t: build_archive(t, **hostile_item(b'{"object":{"id":"p-1","x":"\\ud800"},"assignments":[]}')),
     f"'{P1}' holds text that is not valid Unicode"),
    (lambda t: build_archive(t, **hostile_item(b'{"object":{"id":"p-1","x":NaN},"assignments":[]}')),
     f"'{P1}' is not valid JSON (NaN is not a JSON number"),
    (lambda t: build_archive(t, **hostile_item(b'{"object":{"id":"p-1","x":1e400},"assignments":[]}')),
     f"'{P1}' is not valid JSON (1e400 is out of range"),
    (lambda t: build_archive(t, manifest=on_item("p-1", display_name="A" * 10_000)),
     "item 1.display_name\" must be text of at most 400 characters"),
    (lambda t: build_archive(t, manifest=on_item("p-1", display_name="Alpha\x00")),
     "'manifest.json' holds a NUL character"),
    (lambda t: build_archive(t, manifest=on_item("p-1", display_name="Alpha\x07")),
     "item 1.display_name\" must be text of at most 400 characters, without control characters"),
    (lambda t: build_archive(t, manifest=setting(["tenant", "name"], "".join(uuid.uuid4().hex for _ in range(3000)))),
     '"tenant.name" must be text of at most 200 characters'),
], ids=["deep payload", "deeper than the parser goes", "deeper than the normalizer takes", "deep manifest",
        "NUL in a value", "NUL in a key", "lone surrogate", "NaN", "infinite number", "huge display name",
        "NUL in the manifest", "control character in a display name", "huge tenant name"])
def test_hostile_json_is_refused(ada, world, make, message):
    assert_refused(ada, world.tenant_a, make(world.tenant_a), message)


def test_text_that_spells_a_nul_escape_is_not_a_nul(ada, world):
    script = policy("p-1", "Script", script='Write-Output "\\u0000 ends a C string"')
    assert "\\u0000" in canonical(script[1]).decode()
    response = upload(ada, world.tenant_a, build_archive(world.tenant_a, [script]))
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))[:1500]


def test_a_hand_made_archive_of_another_tenant_is_refused(ada, world):
    assert_refused(ada, world.tenant_a, build_archive(world.tenant_a2),
                   f"This archive is a backup of another tenant ('Alpha Customer Two', {world.tenant_a2.external_id})")
