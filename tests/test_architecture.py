"""docs/architecture.md is the newcomer's map: every module of the package is on it, and every
module it names exists, so the tour never sends a reader to a file that is gone or hides one."""

from __future__ import annotations

import re
import subprocess
import sys
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


def _named(row: str) -> list[str]:
    """The modules and folders a row's first column names, in backticks."""
    return re.findall(r"`([\w/]+\.py|[\w/]+/)`", row.split("|")[1])


def _names(module: str, named: str) -> bool:
    """``named`` (a path relative to some folder of the package) is ``module``."""
    return module == named or module.endswith("/" + named)


def _listed(module: str, rows: list[str]) -> bool:
    """A module is listed by its path (from any folder down), or (a package shown as one row,
    such as `decode/`) by its stem in that package's row."""
    parent, stem = str(Path(module).parent) + "/", Path(module).stem
    for row in rows:
        for named in _named(row):
            if named.endswith(".py") and _names(module, named):
                return True
            if named.endswith("/") and _names(parent, named) and f"`{stem}`" in row:
                return True
    return False


def test_every_module_is_on_the_map() -> None:
    rows = _rows()
    missing = [module for module in _modules() if not _listed(module, rows)]
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def test_every_module_on_the_map_exists() -> None:
    modules = _modules()
    folders = {
        str(parent) + "/" for m in modules for parent in Path(m).parents if str(parent) != "."
    }
    gone = sorted(
        named
        for row in _rows()
        for named in _named(row)
        if named != "templates/" and not any(_names(m, named) for m in (*modules, *folders))
    )
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


# Scheduler-side modules outside exporter/kit/: the demo's jobs run inside the app's scheduler,
# and the seam is where the command line reaches the kit.
SCHEDULER_SIDE = {Path("cli/demo_jobs.py"), Path("cli/kit_seam.py")}


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


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _crossing(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """Modules under ``exporter/<folder>`` that import any of the ``forbidden`` packages."""
    return sorted(
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / folder).rglob("*.py")
        for name in _imports(path)
        if any(_in(name, package) for package in forbidden)
    )


def test_the_shared_schema_imports_neither_half() -> None:
    """exporter/shared/ is what both halves use: it imports nothing else of the package."""
    outside = sorted(
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / "shared").rglob("*.py")
        for name in _imports(path)
        if _in(name, "exporter") and not _in(name, "exporter.shared")
    )
    assert not outside, f"shared modules importing other parts of exporter: {outside}"


def test_the_sidecar_never_imports_the_command_line() -> None:
    crossing = _crossing("sidecar", ("exporter.cli",))
    assert not crossing, f"sidecar modules importing the CLI: {crossing}"


def test_the_kit_never_imports_the_sidecar_or_the_command_line() -> None:
    crossing = _crossing("kit", ("exporter.sidecar", "exporter.cli"))
    assert not crossing, f"kit modules importing the sidecar or the CLI: {crossing}"


def test_the_sidecar_reaches_the_kit_only_through_the_seam() -> None:
    """Nothing outside the kit imports it but the package root (the lazy re-export of the kit's
    API), the demo's jobs and the seam the backup and demo commands go through."""
    crossing = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "kit" not in path.relative_to(PACKAGE).parts
        and path.relative_to(PACKAGE) not in SCHEDULER_SIDE
        and path.relative_to(PACKAGE) != Path("__init__.py")
        and any(_in(name, "exporter.kit") for name in _imports(path))
    )
    assert not crossing, f"modules importing exporter.kit directly: {crossing}"


def test_serve_leaves_out_what_only_other_commands_or_options_use() -> None:
    """A module, once imported, stays resident for the life of the process (``serve`` runs for
    weeks; at 10k jobs its budget is 100 MiB, bench/). Rich (tables and consoles of the other
    commands), PyYAML (a YAML config file), bcrypt (the web config's users), Jinja2 (the pages),
    SQLAlchemy's MySQL dialect (a MySQL URL) and APScheduler's schedulers (the demo) are imported
    only by what needs them."""
    code = (
        "import sys, exporter.cli.app, exporter.sidecar.serving.server\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.split()
    )
    assert "exporter.sidecar.serving.server" in loaded  # the check itself ran
    lazy = (
        "rich",
        "yaml",
        "bcrypt",
        "jinja2",
        "sqlalchemy.dialects.mysql",
        "apscheduler.schedulers",
    )
    eager = sorted(name for name in loaded if any(_in(name, package) for package in lazy))
    assert not eager, f"imported by serve without being needed: {eager}"
