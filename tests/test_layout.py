"""The layering app/web/__init__.py states: requests walk web → engines → graph and models, never back.

Derived from the source tree, so a module added later is checked without anyone remembering to.
"""
from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
ENGINES = ("graph", "sync", "backup", "restore", "drift", "alerts", "jobs")


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved), at any depth."""
    package = ["app", *path.relative_to(APP).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def modules_outside_web() -> list[Path]:
    return [path for path in APP.rglob("*.py") if "web" not in path.relative_to(APP).parts[:1]
            and path != APP / "__init__.py"]  # create_app wires the web layer in


def test_nothing_outside_the_web_layer_imports_from_it():
    offenders = {str(path.relative_to(APP)): sorted(name for name in imported_modules(path)
                                                     if name == "app.web" or name.startswith("app.web."))
                 for path in modules_outside_web()}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_graph_client_imports_no_engine():
    """app/graph is the bottom layer: the engines call it, it calls none of them."""
    offenders = {}
    for path in (APP / "graph").rglob("*.py"):
        names = sorted(name for name in imported_modules(path)
                       if any(name == f"app.{engine}" or name.startswith(f"app.{engine}.")
                              for engine in ENGINES if engine != "graph"))
        if names:
            offenders[str(path.relative_to(APP))] = names
    assert offenders == {}


def test_the_check_sees_relative_and_nested_imports_of_the_web_layer():
    """The walker resolves `from ..web import x` and imports inside functions, so the rules above
    cannot pass vacuously."""
    probe = APP / "drift" / "probe.py"
    source = "def later():\n    from ..web import forms\n    import app.web.listing\n"
    assert {"app.web.forms", "app.web.listing"} <= imported_modules(probe, source)
