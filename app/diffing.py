"""Side-by-side comparison of two policy versions' settings."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class DiffRow:
    path: str
    left: str | None
    right: str | None
    status: str  # same, changed, added, removed


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [x, y]} -> {"a.b": 1, "c[0]": x, "c[1]": y}; leaves keep their JSON value."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list) and value:
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix or "(value)": value}


def _show(value: Any) -> str | None:
    if value is _MISSING:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def settings_diff(left: Any, right: Any) -> list[DiffRow]:
    flat_left, flat_right = flatten(left), flatten(right)
    rows = []
    for path in sorted(flat_left.keys() | flat_right.keys()):
        a, b = flat_left.get(path, _MISSING), flat_right.get(path, _MISSING)
        if a is _MISSING:
            status = "added"
        elif b is _MISSING:
            status = "removed"
        else:
            status = "same" if a == b else "changed"
        rows.append(DiffRow(path, _show(a), _show(b), status))
    return rows
