"""Words the pages and messages share."""
from __future__ import annotations


def counted(count: int, one: str, many: str | None = None) -> str:
    """ "1 policy", "3 policies": the count with its noun in the right number (`many` defaults to one + "s")."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"
