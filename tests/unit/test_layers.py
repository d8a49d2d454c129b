"""The core stays pure: it imports no shell, service, I/O, clock or database module."""

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
