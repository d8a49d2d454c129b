"""Issue 11, "a shell that only carries": the store is the only module of the shell that
speaks SQL. The rest reads and writes through the ports (``Repository``, ``AuditReader``,
``UnitOfWork``, ``ObjectStore``), so a query has one home, a name in the domain's words, and
one place to look when it is slow or wrong."""

from __future__ import annotations

import ast
from pathlib import Path

SHELL = Path(__file__).resolve().parents[2] / "src" / "gsomia" / "shell"
# The store: the node's tables (the store/ package) and the TAXII objects' view of them
# (taxii_store.py),
# plus the migrations that make the schema.
STORE = {"store", "taxii_store.py"}
DATABASE_LIBRARIES = ("sqlalchemy", "sqlite3", "psycopg")
# Calls that run SQL on a connection or cursor, whatever its library.
RUNS_SQL = {"execute", "executemany", "executescript", "exec_driver_sql"}


class _SqlFinder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.scope: list[str] = []
        self.found: list[tuple[int, str]] = []

    def _at(self, node: ast.AST, what: str) -> None:
        self.found.append((getattr(node, "lineno", 0),
                           f"{'.'.join(self.scope) or '<module>'}: {what}"))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in DATABASE_LIBRARIES:
                self._at(node, f"import {alias.name.split('.')[0]}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.level == 0 and node.module.split(".")[0] in DATABASE_LIBRARIES:
            self._at(node, f"import {node.module.split('.')[0]}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in RUNS_SQL:
                self._at(node, "execute")
            # ``….engine.connect()`` / ``….engine.begin()``: a connection of its own
            elif func.attr in ("connect", "begin") and isinstance(func.value, ast.Attribute) \
                    and func.value.attr == "engine":
                self._at(node, "engine connection")
        self.generic_visit(node)


def sql_spoken(path: Path) -> list[tuple[int, str]]:
    finder = _SqlFinder()
    finder.visit(ast.parse(path.read_text("utf-8")))
    return finder.found


def shell_modules() -> list[Path]:
    return [f for f in sorted(SHELL.rglob("*.py"))
            if f.relative_to(SHELL).parts[0] != "migrations"
            and f.relative_to(SHELL).parts[0] not in STORE]


def test_only_the_store_speaks_sql() -> None:
    files = shell_modules()
    assert len(files) >= 30 and SHELL / "web.py" in files
    assert SHELL / "store" / "__init__.py" not in files
    offences = [f"{f.relative_to(SHELL).as_posix()}:{line}: {what}"
                for f in files for line, what in sql_spoken(f)]
    assert offences == [], "move these queries behind the ports (service/ports.py), " \
                           "implemented in shell/store/"


def test_the_check_catches_sql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sqlalchemy as sa\n"
                   "def rows(node):\n"
                   "    import sqlite3\n"
                   "    from psycopg import sql\n"
                   "    with node.store.engine.connect() as conn:\n"
                   "        return conn.execute(sa.text('SELECT 1'))\n"
                   "class Probe:\n"
                   "    def look(self, db):\n"
                   "        db.executescript('PRAGMA x')\n"
                   "        self.sock.connect(('h', 1))\n"  # a socket: no SQL
                   "        self.node.store.repository()\n")
    assert sql_spoken(bad) == [(1, "<module>: import sqlalchemy"), (3, "rows: import sqlite3"),
                               (4, "rows: import psycopg"), (5, "rows: engine connection"),
                               (6, "rows: execute"), (9, "Probe.look: execute")]
