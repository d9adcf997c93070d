"""/admin/t/<tenant_ext>/backups/<id>/download and /backups/upload: a backup set as a zip, and back.

Routes of the tenant blueprint (app.web.tenant.tenant_pages), under its guard: a set of another tenant or
workspace is the same 404 as one that does not exist. The format and its checks are
app.backup.archive; these views only move the file and say what happened.
"""
from __future__ import annotations

import tempfile

from flask import abort, flash, g, redirect, request, send_file, url_for
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from app.access import require_role
from app.audit import record_audit
from app.backup import archive
from app.web.errors import render_error
from app.extensions import db
from app.web.forms import ActionForm
from app.models import BackupSet
from app.web.tenant.tenant_backups import backups
from app.web.tenant.tenant_pages import _one_or_404, _tenant, bp

UPLOAD_ENDPOINT = "tenant.backup_upload"
# Room for the multipart envelope and the CSRF field around the archive itself.
FORM_OVERHEAD_BYTES = 64 * 1024
# An archive is built in memory up to this size, then in a temporary file.
SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024


@bp.url_value_preprocessor
def allow_archive_uploads(endpoint, values):
    """The upload's own size limit instead of the app's 1 MiB, set before anything reads the form.

    The app's CSRF check and NUL check read the form in before_request hooks, which run after
    the URL value preprocessors; a signed-out visitor keeps the app's limit (and is sent to sign in).
    """
    if endpoint == UPLOAD_ENDPOINT and current_user.is_authenticated:
        request.max_content_length = archive.LIMITS.upload_bytes + FORM_OVERHEAD_BYTES


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(error):
    if request.endpoint == UPLOAD_ENDPOINT:
        db.session.rollback()
        return render_error(413, f"The archive is larger than {archive.describe_size(archive.LIMITS.upload_bytes)}, "
                                 "the most an upload may be. Nothing was stored.")
    return render_error(413)


@bp.get("/backups/<int:backup_set_id>/download")
def backup_download(backup_set_id: int):
    backup_set = _one_or_404(BackupSet, backup_set_id)
    # Operator and up, not every member: a backup is the tenant's whole configuration (scripts,
    # Wi-Fi and VPN profiles, who is assigned what), and a download leaves the console's access
    # control and audit for good. Reading one item on its page stays open to read-only members.
    require_role("operator", "download a backup")
    if not backup_set.is_usable:
        abort(409, f"This backup is {backup_set.status}: only a completed or partial backup can be downloaded.")
    tenant = _tenant()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)
    try:
        items = archive.write_archive(backup_set, spool)
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    file_name = archive.archive_file_name(tenant, backup_set)
    record_audit("backup.download", actor=current_user, tenant=tenant, target_type="backup_set",
                 target_id=backup_set.id, target_name=backup_set.name,
                 details={"file": file_name, "items": items, "bytes": size})
    db.session.commit()
    response = send_file(spool, mimetype="application/zip", as_attachment=True, download_name=file_name,
                         etag=False, conditional=False, max_age=0)
    response.content_length = size
    return response


@bp.post("/backups/upload")
def backup_upload():
    require_role("operator", "upload a backup")
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    tenant = _tenant()
    upload = request.files.get("archive")
    if upload is None or not upload.filename:
        return _refused("Choose a backup archive (.zip) to upload.")
    # As the browser sent it: shown, named and audited only once made printable and short.
    file_name = " ".join("".join(ch if ch.isprintable() else " " for ch in upload.filename).split())[:200]
    try:
        contents = archive.read_archive(upload.stream, tenant)
        try:
            backup_set = archive.import_archive(tenant, contents, current_user, file_name=file_name)
        finally:
            contents.close()
    except archive.ArchiveError as error:
        db.session.rollback()
        return _refused(str(error))
    record_audit("backup.upload", actor=current_user, tenant=tenant, target_type="backup_set",
                 target_id=backup_set.id, target_name=backup_set.name,
                 details={"before": None, "after": {"file": file_name, "items": backup_set.item_count,
                                                    "bytes_stored": backup_set.size_bytes,
                                                    "status": backup_set.status}})
    db.session.commit()
    flash(f"Uploaded {backup_set.name}: {backup_set.item_count:,} items, "
          f"{backup_set.size_bytes:,} bytes stored anew.", "success")
    return redirect(url_for(".backup_set_detail", backup_set_id=backup_set.id))


def _refused(message: str):
    """The backups page again, the upload form open with why the file was refused; nothing was stored."""
    g.upload_refused = message
    flash(f"The archive was not uploaded: {message}", "danger")
    return backups(), 400


@bp.context_processor
def archive_upload_limits():
    return {"archive_upload_limit_mib": archive.LIMITS.upload_bytes // archive.MIB,
            "archive_max_items": archive.LIMITS.max_items}
