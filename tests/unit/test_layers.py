"""The core stays pure: it imports no shell, service, I/O, clock or database module. Only
the entry points (the command line) use the composition root and the command modules."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "src" / "gsomia" / "core"
FORBIDDEN = {"gsomia.service", "gsomia.shell", "gsomia.bootstrap", "os", "socket", "time",
             "sqlalchemy", "httpx", "subprocess", "random", "pathlib", "shutil", "requests"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_imports_nothing_impure() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 5
    offences = []
    for f in files:
        for name in imports_of(f):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN):
                offences.append(f"{f.relative_to(CORE)} imports {name}")
    assert offences == []


def test_the_check_catches_an_offence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom gsomia.shell import cli\n")
    assert imports_of(bad) == {"os", "gsomia.shell"}


SRC = CORE.parent


def names_imported_by(path: Path) -> set[str]:
    """Modules imported by ``path``, with ``from a import b`` also counted as ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _entry_point(path: Path) -> bool:
    rel = path.relative_to(SRC).as_posix()
    return rel.startswith("shell/commands/") or rel in ("shell/cli.py", "__main__.py",
                                                        "bootstrap.py")


def test_only_the_command_line_uses_the_composition_root_and_the_commands() -> None:
    """Issue 11: ``web.py`` imported ``commands/scenario.py``, and logic was imported from
    command modules (``run_one``, ``agreement_story``, ``app_for_node``)."""
    offences = [f"{f.relative_to(SRC)} imports {name}"
                for f in sorted(SRC.rglob("*.py")) if not _entry_point(f)
                for name in names_imported_by(f)
                if name == "gsomia.bootstrap" or name.startswith("gsomia.shell.commands")]
    assert offences == []


def test_the_service_imports_no_shell() -> None:
    offences = [f"{f.relative_to(SRC)} imports {name}"
                for f in sorted((SRC / "service").rglob("*.py"))
                for name in names_imported_by(f)
                if name.startswith(("gsomia.shell", "gsomia.bootstrap"))]
    assert offences == []
