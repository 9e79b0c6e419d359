"""docs/architecture.md is the newcomer's map: every module of the package is on it, and every
module it names exists, so the tour never sends a reader to a file that is gone or hides one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"
DOC = ROOT / "docs" / "architecture.md"

pytestmark = pytest.mark.artefact


def _modules() -> list[str]:
    """Every module of the package as `dir/name.py` relative to exporter/ (package inits aside)."""
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    )


def _rows() -> list[str]:
    return [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]


def _listed(module: str, rows: list[str]) -> bool:
    """A module is listed by its path, by its name in its package's table, or (a package shown
    as one row, such as `decode/`) by its stem in that package's row."""
    name, parent = Path(module).name, str(Path(module).parent)
    for row in rows:
        first = row.split("|")[1]
        if f"`{module}`" in first or f"`{name}`" in first:
            return True
        if parent != "." and f"`{parent}/`" in first and f"`{Path(module).stem}`" in row:
            return True
    return False


def test_every_module_is_on_the_map() -> None:
    rows = _rows()
    missing = [module for module in _modules() if not _listed(module, rows)]
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def test_every_module_on_the_map_exists() -> None:
    names = {Path(m).name for m in _modules()} | set(_modules())
    dirs = {str(Path(m).parent) + "/" for m in _modules()}
    named = set()
    for row in _rows():
        named.update(re.findall(r"`([\w/]+\.py|[\w]+/)`", row.split("|")[1]))
    gone = sorted(n for n in named if n not in names and n not in dirs and n != "templates/")
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


# Scheduler-side modules outside exporter/kit/: the demo's jobs run inside the app's scheduler.
SCHEDULER_SIDE = {"demo_jobs.py", "kit_seam.py"}


def _imports(path: Path) -> set[str]:
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _is_kit(module: str) -> bool:
    return module == "exporter.kit" or module.startswith("exporter.kit.")


def test_the_sidecar_reaches_the_kit_only_through_the_seam() -> None:
    """The sidecar never imports the kit; the commands that run kit code go through kit_seam."""
    crossing = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "kit" not in path.relative_to(PACKAGE).parts
        and path.name not in SCHEDULER_SIDE
        and path.relative_to(PACKAGE) != Path("__init__.py")  # lazy re-export of the kit's API
        and any(
            name == "exporter.kit" or name.startswith("exporter.kit.") for name in _imports(path)
        )
    )
    assert not crossing, f"sidecar modules importing exporter.kit directly: {crossing}"
