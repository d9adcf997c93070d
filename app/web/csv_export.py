"""CSV exports: streamed, one row at a time, with spreadsheet formulas neutralised.

    return csv_response("findings.csv", ["Tenant", "Severity", ...], lambda: rows_of(statement))

The rows come from a function called while the response streams, not in the view: Flask
ends the view's request context (and with it the database session and its transaction)
before the body is sent, so the query runs in the streaming context's own transaction
(row-level security applies to it as to the view). Give it a query executed with
`yield_per` (a server-side cursor, a batch at a time), so that a 100,000-row export holds
one batch in memory, not the whole result. Each cell that a spreadsheet would read as a
formula (starting with =, +, -, @, a tab or a carriage return) is prefixed with a single
quote, as OWASP's CSV injection advice says; numbers stay numbers.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from flask import Response, stream_with_context

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FLUSH_EVERY = 500
CSV_BATCH = 1000


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(header: Sequence[str], rows: Callable[[], Iterable[Sequence[Any]]]):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for number, row in enumerate(rows(), start=1):
        writer.writerow([cell(value) for value in row])
        if number % FLUSH_EVERY == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_response(filename: str, header: Sequence[str], rows: Callable[[], Iterable[Sequence[Any]]]) -> Response:
    response = Response(stream_with_context(csv_lines(header, rows)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def read_date_range(args) -> tuple[datetime | None, datetime | None]:
    """`from` and `to` (YYYY-MM-DD, both days included, UTC) of an export's query string; a bad one is a 400."""
    from datetime import timedelta, timezone

    from flask import abort

    bounds = []
    for name in ("from", "to"):
        value = args.get(name, "")[:20]
        if not value:
            bounds.append(None)
            continue
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            abort(400, f"“{name}” is a date (YYYY-MM-DD), not {value!r}.")
        bounds.append(day if name == "from" else day + timedelta(days=1))
    if bounds[0] and bounds[1] and bounds[0] >= bounds[1]:
        abort(400, "The date range ends before it starts.")
    return bounds[0], bounds[1]


AUDIT_CSV_HEADER = ("When", "Actor", "Action", "Tenant", "Target type", "Target", "Details", "IP address")


def audit_csv_row(entry, actor_name, tenant_name=None) -> tuple:
    import json

    return (entry.created_at, actor_name or "system", entry.action, tenant_name, entry.target_type,
            entry.target_name or entry.target_id, json.dumps(entry.details, ensure_ascii=False, sort_keys=True),
            str(entry.ip_address) if entry.ip_address else None)


def sorted_for_export(statement, sortable: dict, params, tiebreak):
    """A list page's statement in the page's order, all of it, read a batch at a time."""
    columns = sortable[params.sort]
    columns = columns if isinstance(columns, tuple) else (columns,)
    ordering = [c.desc().nulls_last() if params.direction == "desc" else c.asc().nulls_last() for c in columns]
    return statement.order_by(*ordering, tiebreak).execution_options(yield_per=CSV_BATCH)


FINDING_CSV_HEADER = ("Tenant", "Tenant ID", "Severity", "Status", "Kind", "Finding", "Baseline", "Setting",
                      "Expected", "Actual", "Detected at", "Resolved at", "Accepted until", "Note")


def finding_csv_row(finding, tenant_name: str, tenant_ext, baseline_name: str | None) -> tuple:
    detail = finding.detail if isinstance(finding.detail, dict) else {}
    triage = detail.get("acceptance") or detail.get("acknowledgement") or {}
    return (tenant_name, str(tenant_ext), finding.severity, finding.status, finding.kind, finding.title,
            baseline_name, detail.get("setting"), detail.get("expectedShown"), detail.get("actualShown"),
            finding.detected_at, finding.resolved_at, finding.accepted_until,
            triage.get("reason") or triage.get("note"))
