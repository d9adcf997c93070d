"""Server-side lists: search, sort and pagination from the query string.

A list page declares its sortable columns and searchable columns; this module
reads `q`, `sort`, `dir`, `page` and `per_page` defensively (bad values fall back
to defaults, never a 500) and runs two statements: the count and the page.
`keyset_page` pages by seeking instead, for lists that grow large (the portfolio).
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import abort, current_app, request
from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import Select, func, literal, or_, select, tuple_

from app.extensions import db

PAGE_SIZES = (25, 50, 100)
MAX_SEARCH_LENGTH = 200


@dataclass
class ListParams:
    q: str = ""
    sort: str = ""
    direction: str = "asc"
    page: int = 1
    per_page: int = PAGE_SIZES[0]
    filters: dict[str, str] = field(default_factory=dict)

    def url_args(self, **changes) -> dict[str, Any]:
        """Query-string arguments for a link that changes some of these parameters."""
        args = {"q": self.q or None, "sort": self.sort, "dir": self.direction, "page": self.page,
                "per_page": self.per_page, **{k: v or None for k, v in self.filters.items()}}
        args.update(changes)
        return {k: v for k, v in args.items() if v not in (None, "")}


def read_list_params(sortable: dict, default_sort: str, *, default_direction: str = "asc",
                     filters: dict[str, tuple[str, ...]] | None = None,
                     filter_defaults: dict[str, str] | None = None) -> ListParams:
    args = request.args
    sort = args.get("sort", default_sort)
    if sort not in sortable:
        sort = default_sort
    direction = args.get("dir", default_direction)
    if direction not in ("asc", "desc"):
        direction = default_direction
    try:
        page = max(1, min(int(args.get("page", 1)), 1_000_000))
    except ValueError:
        page = 1
    try:
        per_page = int(args.get("per_page", PAGE_SIZES[0]))
    except ValueError:
        per_page = PAGE_SIZES[0]
    if per_page not in PAGE_SIZES:
        per_page = PAGE_SIZES[0]
    chosen = {}
    for name, allowed in (filters or {}).items():
        value = args.get(name, (filter_defaults or {}).get(name, ""))
        chosen[name] = value if value in allowed else (filter_defaults or {}).get(name, "")
    q = read_search_term()
    return ListParams(q=q, sort=sort, direction=direction, page=page, per_page=per_page, filters=chosen)


def read_search_term() -> str:
    """The `q` of the query string, whitespace collapsed; longer than MAX_SEARCH_LENGTH is a 400 that says so."""
    term = " ".join(request.args.get("q", "").split())
    if len(term) > MAX_SEARCH_LENGTH:
        abort(400, f"A search can be at most {MAX_SEARCH_LENGTH} characters; this one has {len(term):,}. "
                   "Shorten it and search again.")
    return term


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_clause(columns, term: str):
    pattern = f"%{escape_like(term)}%"
    return or_(*(column.ilike(pattern, escape="\\") for column in columns))


@dataclass
class Page:
    items: list
    total: int
    params: ListParams

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.params.per_page))

    @property
    def first_index(self) -> int:
        return 0 if self.total == 0 else (self.params.page - 1) * self.params.per_page + 1

    @property
    def last_index(self) -> int:
        return min(self.total, self.params.page * self.params.per_page)


def paginate(statement: Select, params: ListParams, sortable: dict, *, tiebreak, scalars: bool = True,
             count_statement: Select | None = None) -> Page:
    """Count, then fetch one sorted page. `sortable[params.sort]` is a column or expression,
    or a tuple of them (sorted lexicographically, all in the chosen direction).

    count_statement, when the page's statement computes per-row columns (counts, latest
    rows), selects the same rows without them, so counting does not compute them all.
    """
    counted = count_statement if count_statement is not None else statement
    total = db.session.scalar(select(func.count()).select_from(counted.order_by(None).subquery()))
    page = min(params.page, max(1, math.ceil(total / params.per_page)))
    params.page = page
    sort_columns = sortable[params.sort]
    if not isinstance(sort_columns, tuple):
        sort_columns = (sort_columns,)
    ordering = [column.desc().nulls_last() if params.direction == "desc" else column.asc().nulls_last()
                for column in sort_columns]
    statement = statement.order_by(*ordering, tiebreak).limit(params.per_page).offset((page - 1) * params.per_page)
    result = db.session.execute(statement)
    items = list(result.scalars().unique()) if scalars else list(result.all())
    return Page(items=items, total=total, params=params)


# --- keyset ("seek") pages: a page costs the same whatever the list's length ------------------
#
# A page is read from where the last one ended: `?after=<cursor>` (next) or `?before=<cursor>`
# (previous), `?last=1` the end of the list. The cursor is the sort key and id of a row, signed
# with the app's secret, so it is opaque and cannot be edited; a cursor that does not verify, or
# belongs to another sort, direction or scope (the workspace), gives the first page and a
# notice saying so. Nothing in a cursor is trusted beyond that: values are checked against
# their column's type and every query keeps the caller's scope.
#
# Order: the rows whose sort key is not NULL, by (key..., id), then (for a nullable key) the
# rows whose key is NULL, by id; all in the chosen direction, so NULLs come last both ways,
# as paginate() and sorted_for_export() order them. Each part is read by its own query (a
# range of one index), the second only when the first runs out.

CURSOR_SALT = "listing.keyset"
KEYED, NULL_KEY = 0, 1  # the two parts of the order


@dataclass(frozen=True)
class KeysetSort:
    """A sort of a keyset list: its key columns (compared as one row value, all in the chosen
    direction) and whether the key can be NULL (the columns of a tuple key are NULL together:
    one outer-joined row).

    tiebreak: the id column to order the keyed rows by, when not the list's own (the id of the
    joined table whose index holds the key, equal to it in those rows, so that the key and
    the id are one index's order). null_rows: a function giving the condition of the NULL-key
    rows, called only when they are read (it may read the database), instead of "key IS NULL".
    """

    columns: tuple
    nullable: bool = False
    tiebreak: Any = None
    null_rows: Any = None


@dataclass
class KeysetPage:
    items: list
    params: ListParams
    total: int  # exact, or `cap` when there are more
    total_capped: bool
    next_cursor: str | None = None
    prev_cursor: str | None = None
    at_end: bool = False  # the page shows the last rows (no Next, no Last)
    at_start: bool = True  # the page shows the first rows (no Previous, no First)
    notice: str | None = None  # why the page is not the one asked for

    def link_args(self, **cursor) -> dict[str, Any]:
        """Query-string arguments of a link to another page of this list (page numbers are dropped)."""
        return self.params.url_args(page=None, **cursor)


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt=CURSOR_SALT)


def _encode_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _decode_value(column, value):
    """The cursor's value of one key column, as that column's Python type; ValueError if it is not one."""
    kind = column.type.python_type
    if kind is datetime:
        if not isinstance(value, str):
            raise ValueError
        decoded = datetime.fromisoformat(value)
        if decoded.tzinfo is None:
            raise ValueError
        return decoded
    if kind is uuid.UUID:
        if not isinstance(value, str):
            raise ValueError
        return uuid.UUID(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ValueError
        return value
    raise ValueError


def encode_cursor(scope, params: ListParams, part: int, key: tuple, row_id: int) -> str:
    payload = [scope, params.sort, params.direction, part, [_encode_value(v) for v in key], row_id]
    return _serializer().dumps(payload)


def decode_cursor(token: str, scope, params: ListParams, sort: KeysetSort):
    """(part, key values, id) of a cursor this list issued for this sort, direction and scope; None otherwise."""
    if not token or len(token) > 2000:
        return None
    try:
        payload = _serializer().loads(token)
    except BadData:
        return None
    try:
        cursor_scope, sort_name, direction, part, key, row_id = payload
        if (cursor_scope, sort_name, direction) != (scope, params.sort, params.direction):
            return None
        if part not in (KEYED, NULL_KEY) or (part == NULL_KEY and not sort.nullable):
            return None
        if isinstance(row_id, bool) or not isinstance(row_id, int):
            return None
        if part == KEYED:
            if not isinstance(key, list) or len(key) != len(sort.columns):
                return None
            key = tuple(_decode_value(column, value) for column, value in zip(sort.columns, key))
        else:
            key = ()
    except (TypeError, ValueError):
        return None
    return part, key, row_id


def _part_statement(statement: Select, sort: KeysetSort, tiebreak, part: int, direction: str, forward: bool,
                    cursor, limit: int) -> Select:
    """One part of the order, read from the cursor (exclusive) forward or backward, at most `limit` rows."""
    ascending = (direction == "asc") == forward
    first = sort.columns[0]
    if part == KEYED:
        columns = (*sort.columns, sort.tiebreak if sort.tiebreak is not None else tiebreak)
        statement = statement.where(first.is_not(None))
        if cursor is not None:
            key, row_id = cursor
            here = tuple_(*columns)
            there = tuple_(*(literal(value, column.type) for column, value in zip(columns, (*key, row_id))))
            statement = statement.where(here > there if ascending else here < there)
    else:
        columns = (tiebreak,)
        statement = statement.where(sort.null_rows() if sort.null_rows is not None else first.is_(None))
        if cursor is not None:
            statement = statement.where(tiebreak > cursor[1] if ascending else tiebreak < cursor[1])
    ordering = [column.asc() if ascending else column.desc() for column in columns]
    return statement.order_by(*ordering).limit(limit)


def keyset_page(statement: Select, params: ListParams, sorts: dict[str, KeysetSort], *, tiebreak, scope,
                total: Select, cap: int | None = None) -> KeysetPage:
    """One page of `statement` by seeking (see above); rows as tuples of its selected columns.

    `total` is a scalar select: the number of rows, or (with `cap`) the number up to cap + 1,
    read in the page's first statement (one statement fewer); `scope` is what a cursor is bound
    to (the workspace id). `tiebreak` is the id column, unique among the rows.
    """
    sort = sorts[params.sort]
    width = len(statement.column_descriptions)  # an ORM entity is one column of a row
    size = params.per_page
    args = request.args
    notice = None
    if args.get("after") or args.get("before"):
        token = args.get("after") or args.get("before")
        cursor = decode_cursor(token, scope, params, sort)
        forward = bool(args.get("after"))
        if cursor is None:
            notice = ("That page link is not valid for this list (it was changed, or belongs to another sort); "
                      "this is the first page.")
            forward, cursor = True, None
    elif args.get("last"):
        forward, cursor = False, None
    else:
        forward, cursor = True, None

    counted: list = []
    if args.get("last") and not (args.get("after") or args.get("before")):
        # Last is the remainder (26-30 of 30, not 6-30), so paging back from it meets the first
        # page's boundaries; that needs the number of rows first, known unless it is capped.
        count = int(db.session.scalar(total) or 0)  # a sum of per-status totals is a numeric
        counted.append(count)
        if count and (cap is None or count <= cap):
            size = count % params.per_page or params.per_page

    def read(forward: bool, cursor) -> tuple[list, bool]:
        """Up to `size` rows from the cursor on (or from the start/end), in page order, and whether there are more."""
        parts = (KEYED, NULL_KEY) if sort.nullable else (KEYED,)
        if not forward:
            parts = tuple(reversed(parts))
        if cursor is not None:
            parts = parts[parts.index(cursor[0]):]
        rows: list = []
        for index, part in enumerate(parts):
            here = (cursor[1], cursor[2]) if cursor is not None and index == 0 else None
            query = _part_statement(statement, sort, tiebreak, part, params.direction, forward, here,
                                    size + 1 - len(rows))
            query = query.add_columns(*(column.label(f"_key{n}") for n, column in enumerate(sort.columns)),
                                      tiebreak.label("_key_id"))
            if not counted:
                query = query.add_columns(total.scalar_subquery().label("_total"))
            result = db.session.execute(query).all()
            if result and not counted:
                counted.append(result[0]._total)
            rows += [(part, row) for row in result]
            if len(rows) > size:
                break
        more = len(rows) > size
        rows = rows[:size]
        return (rows if forward else rows[::-1]), more

    rows, more = read(forward, cursor)
    if forward:
        at_start, at_end = cursor is None, not more
        if cursor is not None and not rows:
            # Past the end (the rows after it were deleted or left the filter): the last page.
            rows, more = read(False, None)
            at_start, at_end = not more, True
    else:
        at_start, at_end = not more, cursor is None
        # Back at the start the page may be short: filling it from the next rows would show
        # them twice to someone paging back. Nothing before the cursor at all: the first page.
        if cursor is not None and not rows:
            rows, more = read(True, None)
            at_start, at_end = True, not more
    if not counted:
        counted.append(db.session.scalar(total))
    count = counted[0] or 0
    capped = cap is not None and count > cap

    def cursor_of(part_row) -> str:
        part, row = part_row
        key = tuple(row[width + n] for n in range(len(sort.columns))) if part == KEYED else ()
        return encode_cursor(scope, params, part, key, row[width + len(sort.columns)])

    params.page = 1
    return KeysetPage(
        items=[tuple(row[:width]) for _part, row in rows], params=params,
        total=cap if capped else count, total_capped=capped,
        next_cursor=cursor_of(rows[-1]) if rows and not at_end else None,
        prev_cursor=cursor_of(rows[0]) if rows and not at_start else None,
        at_end=at_end, at_start=at_start, notice=notice)


def capped_count(rows: Select, cap: int) -> Select:
    """The number of `rows`, counting no further than cap + 1 (a scalar select)."""
    return select(func.count()).select_from(rows.order_by(None).limit(cap + 1).subquery())
