"""A backup set as a zip archive, and such an archive back as a backup set (download and upload).

The format (version 1), documented for people in docs/backups.md, "Archive format":

    manifest.json                        what the archive holds (below)
    items/<family>/<graph id>.json       one file per item: the payload body, exactly as stored
                                         ({"object": {...}, "settings": [...], "assignments": [...]},
                                         app.backup.payloads), written as canonical JSON (sorted keys,
                                         no spaces, UTF-8)

    manifest.json = {
      "format": "tenantatlas-backup", "version": 1,
      "tenant": {"id": <Entra tenant id>, "name": ..., "domain": ... | null},
      "backup": {"name": ..., "started_at": <ISO 8601> | null, "finished_at": ... | null,
                 "status": "completed" | "partial"},
      "exported_at": <ISO 8601>,
      "api_versions": {<family>: "beta" | "v1.0"},   # the Graph version each family was read from
      "counts": {<family>: <items>},
      "items": [{"path", "family", "graph_id", "display_name", "sha256", "is_reference"}, ...]
    }

An item's sha256 is the payload's content hash (app.backup.payloads.payload_hash: sha256 of its
canonical JSON). The item files are written in that canonical form, so `sha256sum` of a file
equals its manifest entry; an upload hashes the parsed JSON, so a file reformatted by an editor
still verifies and an edited one does not. A graph id that is not a plain file name
([A-Za-z0-9._-], not starting with a dot) is written as `id-<sha256 of the id>.json`: the
manifest, not the file name, says which object a file is.

An upload is checked whole before anything is stored (`read_archive`), then stored in one
transaction (`import_archive`) through the same content-addressed store as a backup, so an
uploaded payload that exists already is not stored twice. What is refused, each with a message
that says what to fix (ArchiveError), is listed in `read_archive`; the limits are ArchiveLimits.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import func, select

from app.extensions import db
from app.graph.families import FAMILIES_BY_KEY, Family
from app.graph.normalize import NormalizeError
from app.models import BackupItem, BackupPayload, BackupSet, Tenant
from app.sync.engine import usable_id, utcnow
from app.validation import parse_guid

from .engine import BACKUP_FAMILIES, GROUPS, store_items
from .payloads import canonical_json, check_payload

FORMAT = "tenantatlas-backup"
VERSION = 1
MANIFEST = "manifest.json"
ITEMS_DIR = "items"
# The families an archive may hold: those a backup holds (the groups its assignments name included).
ARCHIVE_FAMILIES: dict[str, Family] = {family.key: family for family in (*BACKUP_FAMILIES, GROUPS)}
ITEM_KEYS = ("path", "family", "graph_id", "display_name", "sha256", "is_reference")
ARCHIVED_STATUSES = ("completed", "partial")  # the sets worth downloading (BackupSet.is_usable)

MIB = 1024 * 1024
EXPORT_BATCH = 200  # payload bodies read from the database at a time while writing an archive
IMPORT_BATCH = 200  # items stored per statement while importing one

_PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_ITEM_PATH = re.compile(r"items/(?P<family>[A-Za-z0-9]{1,64})/(?P<name>[A-Za-z0-9._-]{1,160})\.json")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ArchiveLimits:
    """What an upload may be. A real backup of a large tenant (a few thousand objects) is a few
    MiB zipped and tens of MiB unzipped; the limits leave room for that and no more."""

    upload_bytes: int = 50 * MIB  # the zip as uploaded
    total_bytes: int = 200 * MIB  # all its entries, uncompressed
    entry_bytes: int = 16 * MIB  # one entry, uncompressed (the manifest of 20,000 items is a few MiB)
    max_items: int = 20_000
    max_ratio: int = 100  # uncompressed ÷ compressed, per entry: payloads deflate far less, a zip bomb ~1000×
    # JSON nesting of any entry, checked before anything recurses into it; a payload must also be one
    # the normalizer takes (app.graph.normalize: MAX_DEPTH, MAX_NODES), as a backup's must.
    max_depth: int = 100

    @property
    def max_entries(self) -> int:
        """Items, the manifest, and the directory entries a zip tool may add (items/, items/<family>/)."""
        return self.max_items + 2 + len(ARCHIVE_FAMILIES)


LIMITS = ArchiveLimits()


def describe_size(size: int) -> str:
    """A size as a message gives it: "50 MiB", "1.5 KiB", "900 bytes"."""
    for unit, scale in (("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size:,} bytes"


class ArchiveError(ValueError):
    """An archive that is refused; the message says why, for the person who uploaded it."""


@dataclass(frozen=True)
class ArchiveItem:
    path: str
    family: str
    graph_id: str
    display_name: str
    sha256: str
    is_reference: bool


@dataclass
class ArchiveContents:
    """A checked archive: its manifest, and the open zip its items are read from again when stored."""

    tenant_id: str
    tenant_name: str
    backup_name: str
    backup_status: str
    started_at: datetime | None
    finished_at: datetime | None
    exported_at: datetime
    items: list[ArchiveItem]
    zip: zipfile.ZipFile = field(repr=False)
    limits: ArchiveLimits = field(repr=False, default=LIMITS)

    def close(self) -> None:
        self.zip.close()


# --- writing ---------------------------------------------------------------------------------------------


def item_path(family: str, graph_id: str) -> str:
    name = graph_id if _PLAIN_FILE_NAME.fullmatch(graph_id) else "id-" + hashlib.sha256(graph_id.encode()).hexdigest()
    return f"{ITEMS_DIR}/{family}/{name}.json"


def write_archive(backup_set: BackupSet, fileobj: IO[bytes], *, now: datetime | None = None) -> int:
    """Write `backup_set` as a zip to `fileobj` (seekable); returns the number of items written.

    Item metadata is read in one query; payload bodies EXPORT_BATCH at a time, as plain rows
    (no ORM identity map), so memory stays flat however large the set. The manifest goes last:
    it carries every item's hash.
    """
    exported_at = now or utcnow()
    tenant = db.session.get(Tenant, backup_set.tenant_id)
    rows = db.session.execute(
        select(BackupItem.family, BackupItem.graph_id, BackupItem.display_name, BackupItem.is_reference,
               BackupItem.payload_id)
        .where(BackupItem.tenant_id == backup_set.tenant_id, BackupItem.id.in_(backup_set.item_ids or [0]))
        .order_by(BackupItem.family, func.lower(BackupItem.display_name), BackupItem.graph_id, BackupItem.id)).all()
    entries: list[dict[str, Any]] = []
    paths: set[str] = set()
    date_time = exported_at.timetuple()[:6]
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for start in range(0, len(rows), EXPORT_BATCH):
            batch = rows[start:start + EXPORT_BATCH]
            bodies = dict(db.session.execute(
                select(BackupPayload.id, BackupPayload.body)
                .where(BackupPayload.tenant_id == backup_set.tenant_id,
                       BackupPayload.id.in_({row.payload_id for row in batch}))).all())
            for row in batch:
                path = item_path(row.family, row.graph_id)
                if path in paths:  # never made by a backup (one item per object); kept apart all the same
                    path = path.removesuffix(".json") + f"~{len(paths)}.json"
                paths.add(path)
                encoded = canonical_json(bodies[row.payload_id]).encode("utf-8")
                archive.writestr(_zip_info(path, date_time), encoded)
                entries.append({"path": path, "family": row.family, "graph_id": row.graph_id,
                                "display_name": row.display_name,
                                # = payload_hash(body), from the bytes at hand rather than a second encoding
                                "sha256": hashlib.sha256(encoded).hexdigest(),
                                "is_reference": row.is_reference})
        counts = Counter(entry["family"] for entry in entries)
        manifest = {
            "format": FORMAT, "version": VERSION,
            "tenant": {"id": str(tenant.external_id), "name": tenant.name, "domain": tenant.primary_domain},
            "backup": {"name": backup_set.name, "started_at": _iso(backup_set.started_at),
                       "finished_at": _iso(backup_set.finished_at), "status": backup_set.status},
            "exported_at": _iso(exported_at),
            "api_versions": {key: FAMILIES_BY_KEY[key].api_version for key in counts},
            "counts": dict(counts),
            "items": entries,
        }
        archive.writestr(_zip_info(MANIFEST, date_time),
                         json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8"))
    return len(entries)


def _zip_info(path: str, date_time: tuple) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16  # a plain file, readable, when unzipped on Unix
    return info


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def archive_file_name(tenant: Tenant, backup_set: BackupSet) -> str:
    """A download's file name: ASCII letters, digits and dashes only, so every browser and shell takes it."""
    slug = re.sub(r"[^a-z0-9]+", "-", tenant.name.lower()).strip("-")[:40].strip("-") or "tenant"
    moment = backup_set.started_at or backup_set.created_at
    stamp = f"-{moment:%Y%m%d-%H%M}" if moment else ""
    return f"tenantatlas-{slug}{stamp}-set{backup_set.id}.zip"


# --- reading ---------------------------------------------------------------------------------------------


def read_archive(fileobj: IO[bytes], tenant: Tenant, *, limits: ArchiveLimits | None = None) -> ArchiveContents:
    """Check an uploaded archive whole, before anything is stored; ArchiveError says what is wrong.

    Refused: a file larger than the upload limit; not a zip, damaged, ZIP64, encrypted, or
    compressed other than deflate; more entries than allowed, an entry or the whole larger than
    allowed uncompressed, or compressed more than `max_ratio`; an absolute, backslashed, `..`
    or duplicate entry name; a missing or malformed manifest (format, version, types, required
    keys, known families, Graph versions, counts, unique paths); another tenant's archive; an
    item listed but missing or present but unlisted; an item file that is not JSON, nested too
    deeply, holds a NUL or text that is not Unicode, is not a payload of its family, or whose
    object is not the item; a sha256 that is not its content's.

    `fileobj` must stay open while the contents are used (import_archive reads the items again).
    """
    limits = limits or LIMITS
    size = fileobj.seek(0, io.SEEK_END)
    if size > limits.upload_bytes:
        raise ArchiveError(f"The archive is {describe_size(size)}; an upload may be at most "
                           f"{describe_size(limits.upload_bytes)}.")
    _check_central_directory(fileobj, limits)
    fileobj.seek(0)
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error):
        raise ArchiveError(NOT_A_ZIP) from None
    try:
        contents = _read(archive, tenant, limits)
    except BaseException:
        archive.close()
        raise
    return contents


NOT_A_ZIP = "This file is not a zip archive, or it is damaged. Upload a backup downloaded from TenantAtlas."

# The zip end record (PKWARE APPNOTE 4.3.16) says how large the central directory is, which
# zipfile reads whole, entry by entry, before it can be asked anything: it is checked first, so
# that a small upload of a million empty entries costs nothing. A ZIP64 end (locator, 4.3.15) is
# only needed beyond these limits, and would let the directory's size be restated: refused.
_END_RECORD = struct.Struct("<4s4H2LH")
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_MAX_DIRECTORY_RECORD = 46 + 256 + 128  # fixed part, an entry name (at most 256 bytes here), extra fields


def _check_central_directory(fileobj: IO[bytes], limits: ArchiveLimits) -> None:
    size = fileobj.seek(0, io.SEEK_END)
    tail_start = max(0, size - _END_RECORD.size - 0xFFFF)  # the end record, and a comment of at most 64 KiB
    fileobj.seek(tail_start)
    tail = fileobj.read()
    at = tail.rfind(_END_SIGNATURE)
    if at < 0 or len(tail) - at < _END_RECORD.size:
        raise ArchiveError(NOT_A_ZIP)
    _, _, _, _, entries, directory_size, _, _ = _END_RECORD.unpack_from(tail, at)
    if at >= _ZIP64_LOCATOR_SIZE and tail[at - _ZIP64_LOCATOR_SIZE:].startswith(_ZIP64_LOCATOR_SIGNATURE):
        raise ArchiveError("This archive uses ZIP64, which only archives far beyond the upload limits need. "
                           "Upload the zip as TenantAtlas made it.")
    if entries > limits.max_entries or directory_size > limits.max_entries * _MAX_DIRECTORY_RECORD:
        raise ArchiveError(f"The archive holds too many files: at most {limits.max_items:,} items are accepted.")


def _read(archive: zipfile.ZipFile, tenant: Tenant, limits: ArchiveLimits) -> ArchiveContents:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(f"The archive holds {len(infos):,} files: at most {limits.max_items:,} items are accepted.")
    total = 0
    files: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        _check_entry_name(name)
        if name in files:
            raise ArchiveError(f"The archive holds {_shown(name)} twice.")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{_shown(name)} is encrypted; upload the archive as TenantAtlas made it.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveError(f"{_shown(name)} is compressed with a method other than deflate; "
                               "upload the archive as TenantAtlas made it.")
        if info.file_size > limits.entry_bytes:
            raise ArchiveError(f"{_shown(name)} is {describe_size(info.file_size)} uncompressed; "
                               f"a file in an archive may be at most {describe_size(limits.entry_bytes)}.")
        if info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveError(f"{_shown(name)} is compressed {info.file_size // max(info.compress_size, 1):,} to 1, "
                               f"more than any backup (at most {limits.max_ratio} to 1): refused as a zip bomb.")
        total += info.file_size
        if total > limits.total_bytes:
            raise ArchiveError(f"The archive is more than {describe_size(limits.total_bytes)} uncompressed, "
                               "more than an upload may hold.")
        files[name] = info
    if MANIFEST not in files:
        raise ArchiveError(f"The archive has no {MANIFEST}: it is not a TenantAtlas backup archive.")
    manifest, _ = _json_entry(archive, files.pop(MANIFEST), limits)
    contents = _parse_manifest(manifest, archive, limits)
    if contents.tenant_id != str(tenant.external_id):
        raise ArchiveError(f"This archive is a backup of another tenant ({_shown(contents.tenant_name, 80)}, "
                           f"{contents.tenant_id}); upload it on that tenant's page.")
    directories = {f"{ITEMS_DIR}/", *(f"{ITEMS_DIR}/{key}/" for key in ARCHIVE_FAMILIES)}
    for name, info in list(files.items()):
        if name in directories and info.file_size == 0:
            del files[name]
    listed = {item.path for item in contents.items}
    unlisted = sorted(set(files) - listed)
    if unlisted:
        raise ArchiveError(f"The archive holds {_shown(unlisted[0])}, which its manifest does not list"
                           + (f" (and {len(unlisted) - 1:,} more files)." if len(unlisted) > 1 else "."))
    for item in contents.items:
        if item.path not in files:
            raise ArchiveError(f"The manifest lists {_shown(item.path)}, which the archive does not hold.")
        load_item(contents, item)
    return contents


def _check_entry_name(name: str) -> None:
    """Names are never used as paths here (nothing is extracted), but one that would escape a folder
    when unzipped is no backup's, so it is refused, as are names longer than any item's."""
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or ":" in name or "\x00" in name or ".." in parts or "." in parts
            or "" in parts[:-1]):
        raise ArchiveError(f"The archive holds a file with an unsafe name ({_shown(name)}): "
                           "absolute paths, backslashes, drive letters and '..' are refused.")
    if len(name.encode("utf-8", "surrogateescape")) > 256:
        raise ArchiveError(f"The archive holds a file whose name is longer than any item's ({_shown(name)}).")


def _shown(text: str, length: int = 120) -> str:
    """Text from an archive as quoted in a message: printable, and short."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text if len(text) <= length else text[:length] + "…")


def _json_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits) -> tuple[Any, bytes]:
    """An entry's JSON value, checked for what PostgreSQL and the pages can take, and its canonical bytes."""
    try:
        # zipfile stops at the size the entry declares (checked against the limits in _read), and
        # checks the CRC there: an entry holding more than it declares is damaged, never larger.
        with archive.open(info) as entry:
            data = entry.read()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as error:
        raise ArchiveError(f"{_shown(info.filename)} cannot be read: the archive is damaged ({error}).") from None
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise ArchiveError(f"{_shown(info.filename)} is not UTF-8 text.") from None
    except RecursionError:  # deeper than Python's parser goes: deeper than max_depth too
        raise ArchiveError(f"{_shown(info.filename)} is nested deeper than {limits.max_depth} levels.") from None
    except ValueError as error:
        raise ArchiveError(f"{_shown(info.filename)} is not valid JSON ({str(error)[:120]}).") from None
    _check_depth(value, info.filename, limits)
    text = canonical_json(value)
    # The plain search first: it is much faster than the expression, and almost never finds anything.
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ArchiveError(f"{_shown(info.filename)} holds a NUL character, which no backup holds.")
    try:
        return value, text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"), which JSON can spell and UTF-8 cannot
        raise ArchiveError(f"{_shown(info.filename)} holds text that is not valid Unicode.") from None


# PostgreSQL text cannot hold NUL. JSON spells it \u0000 (canonical_json always escapes it); a
# backslash before it would make it the text "\u0000", so only an odd number of backslashes counts.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _refuse_constant(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _check_depth(value: Any, name: str, limits: ArchiveLimits) -> None:
    """JSON nesting at most max_depth (code that reads payloads recurses), walked level by level."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > limits.max_depth:
            raise ArchiveError(f"{_shown(name)} is nested deeper than {limits.max_depth} levels.")
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]


def _parse_manifest(manifest: Any, archive: zipfile.ZipFile, limits: ArchiveLimits) -> ArchiveContents:
    def refuse(problem: str) -> ArchiveError:
        return ArchiveError(f"{MANIFEST} is not a TenantAtlas backup manifest: {problem}.")

    if not isinstance(manifest, dict):
        raise refuse("it is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise refuse(f'"format" must be "{FORMAT}"')
    if manifest.get("version") != VERSION or isinstance(manifest.get("version"), bool):
        raise ArchiveError(f"{MANIFEST} is version {json.dumps(manifest.get('version'))[:20]} of the format; "
                           f"this console reads version {VERSION}.")
    tenant = _object(manifest, "tenant", refuse)
    backup = _object(manifest, "backup", refuse)
    external_id = parse_guid(_text(tenant, "tenant.id", "id", 64, refuse))
    if external_id is None:
        raise refuse('"tenant.id" must be an Entra tenant id (a GUID)')
    tenant_name = _text(tenant, "tenant.name", "name", 200, refuse)
    if tenant.get("domain") is not None:
        _text(tenant, "tenant.domain", "domain", 253, refuse)
    status = backup.get("status")
    if status not in ARCHIVED_STATUSES:
        raise refuse(f'"backup.status" must be one of {", ".join(ARCHIVED_STATUSES)}')
    items_value = manifest.get("items")
    if not isinstance(items_value, list):
        raise refuse('"items" must be a list')
    if not items_value:
        raise ArchiveError("The archive holds no items: there is nothing to upload.")
    if len(items_value) > limits.max_items:
        raise ArchiveError(f"The archive lists {len(items_value):,} items; at most {limits.max_items:,} are accepted.")
    items = [_item(position, value, refuse) for position, value in enumerate(items_value, 1)]
    paths = Counter(item.path for item in items)
    repeated = next((path for path, n in paths.items() if n > 1), None)
    if repeated:
        raise refuse(f"{_shown(repeated)} is listed twice")
    objects = Counter((item.family, item.graph_id) for item in items)
    repeated_object = next((key for key, n in objects.items() if n > 1), None)
    # A backup holds each object once (keyed by graph id).
    if repeated_object:
        family, graph_id = repeated_object
        raise refuse(f"the {ARCHIVE_FAMILIES[family].label} object {_shown(graph_id, 80)} is listed twice")
    counts = Counter(item.family for item in items)
    if manifest.get("counts") != dict(counts):
        raise refuse('"counts" must give the number of items listed of each family')
    api_versions = manifest.get("api_versions")
    if not isinstance(api_versions, dict) or set(api_versions) != set(counts):
        raise refuse('"api_versions" must name the Graph version of each family listed')
    for key in counts:
        if api_versions[key] != ARCHIVE_FAMILIES[key].api_version:
            raise ArchiveError(f"The archive's {ARCHIVE_FAMILIES[key].label} were read from Graph "
                               f"{_shown(str(api_versions[key]), 20)}; this console reads them from "
                               f"{ARCHIVE_FAMILIES[key].api_version}, and their payloads differ.")
    return ArchiveContents(
        tenant_id=str(external_id), tenant_name=tenant_name,
        backup_name=" ".join(_text(backup, "backup.name", "name", 200, refuse).split()),
        backup_status=status,
        started_at=_moment(backup, "backup.started_at", "started_at", refuse, optional=True),
        finished_at=_moment(backup, "backup.finished_at", "finished_at", refuse, optional=True),
        exported_at=_moment(manifest, "exported_at", "exported_at", refuse), items=items, zip=archive, limits=limits)


def _object(parent: dict, key: str, refuse) -> dict:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise refuse(f'"{key}" must be an object')
    return value


def _text(parent: dict, label: str, key: str, length: int, refuse) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or len(value) > length or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise refuse(f'"{label}" must be text of at most {length} characters, without control characters')
    return value


def _moment(parent: dict, label: str, key: str, refuse, *, optional: bool = False) -> datetime | None:
    value = parent.get(key)
    if value is None and optional:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 40 else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise refuse(f'"{label}" must be a time in ISO 8601 with its UTC offset')
    return moment


def _item(position: int, value: Any, refuse) -> ArchiveItem:
    where = f"item {position:,}"
    if not isinstance(value, dict) or set(value) != set(ITEM_KEYS):
        raise refuse(f"{where} must be an object with exactly {', '.join(ITEM_KEYS)}")
    family = value["family"]
    if family not in ARCHIVE_FAMILIES:
        raise refuse(f"{where} is of family {_shown(str(family), 40)}, which a backup does not hold "
                     f"(known: {', '.join(ARCHIVE_FAMILIES)})")
    if not usable_id(value["graph_id"]):
        raise refuse(f"{where} has no usable graph_id (text of 1 to 128 characters, without control characters)")
    display_name = _text(value, f"{where}.display_name", "display_name", 400, refuse)
    if not isinstance(value["sha256"], str) or not _SHA256.fullmatch(value["sha256"]):
        raise refuse(f"{where}'s sha256 must be 64 lower-case hex digits")
    if not isinstance(value["is_reference"], bool):
        raise refuse(f"{where}'s is_reference must be true or false")
    path = value["path"]
    match = _ITEM_PATH.fullmatch(path) if isinstance(path, str) else None
    if match is None or match["family"] != family:
        raise refuse(f"{where}'s path must be {ITEMS_DIR}/{family}/<file name>.json")
    return ArchiveItem(path=path, family=family, graph_id=value["graph_id"], display_name=display_name,
                       sha256=value["sha256"], is_reference=value["is_reference"])


def load_item(contents: ArchiveContents, item: ArchiveItem) -> dict:
    """An item's payload body from the archive, checked (JSON, text, shape, hash) against its manifest entry.

    read_archive loads every item once to check the archive whole; import_archive loads them again,
    a batch at a time, so that the archive is never in memory at once.
    """
    body, canonical = _json_entry(contents.zip, contents.zip.getinfo(item.path), contents.limits)
    _check_payload_shape(body, item)
    # The payload's content hash (payload_hash: sha256 of its canonical JSON), from the bytes at hand.
    if hashlib.sha256(canonical).hexdigest() != item.sha256:
        raise ArchiveError(f"{_shown(item.path)} does not match its sha256 in the manifest: "
                           "the file was changed or damaged.")
    return body


def _check_payload_shape(body: Any, item: ArchiveItem) -> None:
    family, name = ARCHIVE_FAMILIES[item.family], _shown(item.path)
    if not isinstance(body, dict) or not isinstance(body.get("object"), dict):
        raise ArchiveError(f'{name} is not a backup payload: it must be a JSON object with an "object" object.')
    extra = set(body) - {"object", *family.per_object}
    if extra:
        allowed = " and ".join(f'"{key}"' for key in ("object", *family.per_object))
        raise ArchiveError(f"{name} is not a {family.label} payload: it holds {_shown(sorted(extra)[0], 40)}; "
                           f"one holds only {allowed}.")
    for relation in family.per_object:
        if relation in body and not (isinstance(body[relation], list)
                                     and all(isinstance(entry, dict) for entry in body[relation])):
            raise ArchiveError(f'{name} is not a {family.label} payload: its "{relation}" must be a list of objects.')
    if body["object"].get("id") != item.graph_id:
        raise ArchiveError(f"{name} holds the object {_shown(str(body['object'].get('id')), 80)}, "
                           f"not {_shown(item.graph_id, 80)} as its manifest entry says.")
    try:  # what a backup checks before it keeps a payload, so an upload keeps nothing a backup would not
        check_payload(family, body)
    except (NormalizeError, ValueError) as error:
        raise ArchiveError(f"{name} is not a payload TenantAtlas keeps: {str(error)[:200]}.") from None


# --- storing ---------------------------------------------------------------------------------------------


def import_archive(tenant: Tenant, contents: ArchiveContents, user, *, file_name: str = "") -> BackupSet:
    """Store a checked archive as a new backup set of `tenant`, in the caller's transaction.

    Named as the archive's backup was, else after `file_name` (printable text, as shown to people).

    Payloads and items go through the backup engine's store (store_items), so whatever the tenant
    holds already is pointed at, not stored again. The set is what the archive's backup was
    (completed, or partial with the reason), triggered by "upload".
    """
    if contents.tenant_id != str(tenant.external_id):  # read_archive refused it; never stored by mistake
        raise ArchiveError("This archive is a backup of another tenant.")
    item_ids: list[int] = []
    stored = 0
    per_family = Counter()
    for (family_key, is_reference), items in _groups(contents.items).items():
        family = ARCHIVE_FAMILIES[family_key]
        for start in range(0, len(items), IMPORT_BATCH):
            batch = items[start:start + IMPORT_BATCH]
            objects = [(item.graph_id, item.display_name, load_item(contents, item)) for item in batch]
            ids, size = store_items(tenant, family, objects, is_reference=is_reference)
            item_ids += ids
            stored += size
            per_family[family_key] += len(batch)
    name = contents.backup_name or (f"Upload of {file_name}" if file_name else "Uploaded backup")
    partial = contents.backup_status == "partial"
    backup_set = BackupSet(
        tenant_id=tenant.id, workspace_id=tenant.workspace_id, name=name[:200],
        status=contents.backup_status, triggered_by="upload", triggered_by_user_id=getattr(user, "id", None),
        started_at=contents.started_at or utcnow(), finished_at=contents.finished_at or utcnow(),
        item_ids=sorted(set(item_ids)), item_count=len(set(item_ids)), size_bytes=stored,
        families={key: {"items": n, "skipped": 0, "error": None} for key, n in per_family.items()},
        error=("The backup in this archive was partial: some objects could not be read when it was taken."
               if partial else None))
    db.session.add(backup_set)
    db.session.flush()
    return backup_set


def _groups(items: list[ArchiveItem]) -> dict[tuple[str, bool], list[ArchiveItem]]:
    """Items by (family, is_reference), in the archive's order: store_items takes one of each at a time."""
    grouped: dict[tuple[str, bool], list[ArchiveItem]] = {}
    for item in items:
        grouped.setdefault((item.family, item.is_reference), []).append(item)
    return grouped
