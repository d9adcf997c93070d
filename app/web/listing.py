"""Server-side lists: search, sort and pagination from the query string.

A list page declares its sortable columns and searchable columns; this module
reads `q`, `sort`, `dir`, `page` and `per_page` defensively (bad values fall back
to defaults, never a 500) and runs two statements: the count and the page.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from flask import abort, request
from sqlalchemy import Select, func, or_, select

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
