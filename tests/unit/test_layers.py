"""The core stays pure: it imports no shell, service, I/O, clock or database module. Only
the entry points (the command line) use the composition root and the command modules."""

from __future__ import annotations

import ast
import re
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


# ---- the shell carries bytes; the service decides and records -------------------------------

SHELL = CORE.parent / "shell"
# A release decision (``policy.decide``) or an audit event written anywhere but in a handler
# would be a second path through the node, with its own idea of what is on record.
DECIDES_OR_RECORDS = re.compile(r"\bdecide\(|\baudit\.append\(|\.append\(\s*AuditKind\.")


def decisions_and_records(path: Path) -> list[str]:
    text = path.read_text("utf-8")
    return [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for m in DECIDES_OR_RECORDS.finditer(text)]


def test_the_shell_neither_decides_releases_nor_appends_to_the_audit_log() -> None:
    files = sorted(SHELL.rglob("*.py"))
    assert len(files) >= 10
    offences = [hit for f in files for hit in decisions_and_records(f)]
    assert offences == []


def test_grep_finds_no_decide_in_the_shell() -> None:
    """Issue 11: ``grep -r 'decide(' src/gsomia/shell/`` answers nothing, so that a reviewer's
    grep for decisions in the shell needs no list of names that only look like one."""
    hits = [f"{f.name}:{n}" for f in sorted(SHELL.rglob("*.py"))
            for n, line in enumerate(f.read_text("utf-8").splitlines(), 1) if "decide(" in line]
    assert hits == []


def test_the_sensor_player_reads_the_store_through_its_repository() -> None:
    """The replay's newest seq and the centre's warnings come from the repository port, not
    from SQL of its own against the store's tables."""
    text = (SHELL / "sensor_player.py").read_text("utf-8")
    assert "sqlalchemy" not in text and "shell.store import" not in text


def test_the_shell_check_catches_an_offence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("d = decide(r, cat)\nuow.audit.append(k, now, 'node')\n"
                   "log.append(AuditKind.RECEIPT, now)\nanswer_consent(node, 'x')\n")
    assert [h.split(": ", 1)[1] for h in decisions_and_records(bad)] == [
        "decide(", "audit.append(", ".append(AuditKind."]


# ---- who may read what is asked of the service, never decided in the shell ------------------

def core_decisions() -> set[str]:
    """The core's decision functions (``policy.decide_access``, ``roles.decide_action``, …)."""
    return {node.name for f in CORE.rglob("*.py")
            for node in ast.parse(f.read_text("utf-8")).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("decide")}


def decisions_named(path: Path, decisions: set[str]) -> list[str]:
    """Where ``path`` names one of ``decisions``, imported or called through its module."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Name):
            names = [node.id]
        else:
            continue
        hits += [f"{path.name}:{node.lineno}: {n}" for n in names if n in decisions]
    return hits


def test_the_shell_asks_the_service_who_may_read_and_act() -> None:
    """Issue 11: the dashboard and the desk called ``decide_access`` and ``decide_action``
    themselves, a second place deciding Art. 7 beside the TAXII service and the handlers;
    they ask :mod:`gsomia.service.access`, as those do."""
    decisions = core_decisions()
    assert {"decide", "decide_access", "decide_action"} <= decisions
    offences = [hit for f in sorted(SHELL.rglob("*.py")) for hit in decisions_named(f, decisions)]
    assert offences == []


def test_the_decision_check_catches_an_offence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from gsomia.core.policy import decide_access\nfrom gsomia.core import roles\n"
                   "ok = roles.decide_action(user.role, 'publish')\ndecide_request(node, 'x')\n")
    assert decisions_named(bad, core_decisions()) == ["bad.py:1: decide_access",
                                                      "bad.py:3: decide_action"]
