"""Split one module that does too much into a package of private modules by role (issue 11:
private modules behind a small public surface, re-exported by ``__init__.py``). Three splits are
known (``SPLITS``): ``store`` (``src/gsomia/shell/store.py``; tools/split_store.py runs it),
``handlers`` (``src/gsomia/service/handlers.py``) and ``exchange``
(``src/gsomia/shell/exchange.py``).

The split is made by this script rather than by hand because other branches edit the module
while it waits to merge: re-run on main once they have merged, and it makes the same split
of whatever the module then holds. Code moves verbatim; what moves where is decided by the
section markers (``# ---- repository ----``) and, for the few statements filed under a
section other than their role, by name (``moved``). Run from the repository's root, e.g.
for the handlers (PKG = src/gsomia/service/handlers; the store's is src/gsomia/shell/store,
the exchange's src/gsomia/shell/exchange; the second ruff pass sorts the imports the script
rewrote in the module's users, src/gsomia/shell/notices.py for the exchange):

    /work/main/.venv/bin/python tools/split_module.py handlers
    /work/main/.venv/bin/ruff check --fix --select F401,I001 \
        --config lint.isort.split-on-trailing-comma=false PKG
    /work/main/.venv/bin/ruff check --fix --select I001 src tests bench
    /work/main/.venv/bin/ruff check src tests bench tools && /work/main/.venv/bin/mypy

It refuses to run if the package exists already (or the module is gone), and fails, changing
nothing, when it meets what it was not written for: a section marker it does not know, a
statement it cannot place, modules that would import each other, or a test patching a
function by the module's name that no one private module looks up (the patch must then go
by hand where the function is used). A patch of a name that exactly one private module
looks up (``monkeypatch.setattr(handlers, "_publish_one_leaf", …)``) is rewritten to patch
that module (``handlers._publishing``).

Each module receives the module's whole import block, which ruff prunes (F401) and sorts
(I001; told to ignore trailing commas, or a name left alone in an import that had to be
wrapped would stay in parentheses); then imports of its siblings' names, computed from the
names it uses: a name used only in annotations is imported for the type checker alone, so
annotations never make a cycle. ``__init__.py`` re-exports what the rest of gsomia, the
tests, the benchmarks and the tools import from the module (its ``__all__``); the few
private names they reach for (``_HeadCopier``…) are rewritten to the private module that now
holds them (tests/unit/test_package_surfaces.py checks both).
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

SCANNED = ("src", "tests", "bench", "tools")
WIDTH = 100  # ruff's line length


@dataclass(frozen=True)
class Split:
    """One module's split: where it is, and what goes where.

    ``sections`` maps a section marker's title to the private module that receives what it
    holds (statements before the first marker go to ``first``); ``moved`` files a statement
    under another module than its section's, by the name it defines (each also keeps a later
    section's name out of an earlier module, or the modules would import each other);
    ``edits`` are texts naming the module's place that must follow the move, (file, old,
    new), each old text found exactly once or the script stops (someone changed it: look
    again)."""

    package: str
    first: str
    sections: dict[str, str]
    docstrings: dict[str, str]
    moved: dict[str, str]
    edits: list[tuple[str, str, str]]
    made_by: str  # the command, as the package's docstring names it
    # (file, name) -> module: a patch of a name that several modules look up, sent to the
    # one the test means (the others keep the real function)
    patches: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return Path("src", *self.package.split(".")[:-1], f"{self.leaf}.py")

    @property
    def target(self) -> Path:
        return Path("src", *self.package.split("."))

    @property
    def parent(self) -> str:
        return self.package.rpartition(".")[0]

    @property
    def leaf(self) -> str:
        return self.package.rpartition(".")[2]

    @property
    def file(self) -> str:
        return f"{self.leaf}.py"


STORE = Split(
    package="gsomia.shell.store",
    first="_tables",
    sections={
        "engine and migrations": "_engine",
        "commit signal": "_signal",
        "mapping rows <-> records": "_mapping",
        "repository": "_repository",
        "audit log": "_audit_log",
        "unit of work": "_unit_of_work",
        "read side": "_reader",
        "the store": "_store",
    },
    docstrings={
        "_tables": "The node's tables (SQLAlchemy Core) and what ``audit verify`` checks of "
                   "each.",
        "_engine": "The engine (durability and locking settings) and the schema's migrations.",
        "_signal": "The commit signal: how a commit wakes whoever waits for one, in any "
                   "process.",
        "_mapping": "Mapping rows to the core's records and back, and bulk writes and lookups.",
        "_repository": "The ``Repository`` and ``Outbox`` ports over the unit of work's "
                       "connection.",
        "_audit_log": "The ``AuditLog`` port: events queued, then written with a signed tree "
                      "head.",
        "_unit_of_work": "The ``UnitOfWork`` port: one write transaction, committed with its "
                         "log.",
        "_reader": "The read side: the ``AuditReader`` port over a snapshot, and its checks.",
        "_store": "The store: units of work, snapshots, and the tree head's copy beside it.",
    },
    # The engine's begin hooks sat under the commit signal, and ``make_engine`` uses them.
    moved={
        "MIGRATIONS": "_engine",
        "_begin_deferred": "_engine",
        "_begin_immediate": "_engine",
        "WriterBusy": "_engine",
        "_REVISION": "_engine",
        "_DOWN": "_engine",
        "script_head": "_engine",
        "current_revision": "_engine",
        "migrate": "_engine",
        "_SCANNER": "_reader",
        "HEAD_FILE": "_store",
    },
    edits=[
        # The migrations stay in gsomia/shell/migrations, one folder up from the package.
        ("src/gsomia/shell/store/_engine.py",
         'MIGRATIONS = Path(__file__).resolve().parent / "migrations"',
         'MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"'),
        ("tests/unit/test_only_the_store_speaks_sql.py",
         '# The store: the node\'s tables (store.py) and the TAXII objects\' view of them '
         '(taxii_store.py),',
         '# The store: the node\'s tables (the store/ package) and the TAXII objects\' view of '
         'them\n# (taxii_store.py),'),
        ("tests/unit/test_only_the_store_speaks_sql.py",
         'STORE = {"store.py", "taxii_store.py"}',
         'STORE = {"store", "taxii_store.py"}'),
        ("tests/unit/test_only_the_store_speaks_sql.py",
         'and f.relative_to(SHELL).as_posix() not in STORE]',
         'and f.relative_to(SHELL).parts[0] not in STORE]'),
        ("tests/unit/test_only_the_store_speaks_sql.py",
         'assert len(files) >= 30 and SHELL / "web.py" in files and SHELL / "store.py" not in '
         'files',
         'assert len(files) >= 30 and SHELL / "web.py" in files\n'
         '    assert SHELL / "store" / "__init__.py" not in files'),
        ("tests/unit/test_only_the_store_speaks_sql.py",
         '"implemented in shell/store.py"',
         '"implemented in shell/store/"'),
        ("README.md",
         "is `TABLE_COVERAGE` in `src/gsomia/shell/store.py`)",
         "is `TABLE_COVERAGE` in `src/gsomia/shell/store/_tables.py`)"),
        ("SECURITY.md",
         "(`TABLE_COVERAGE` in `shell/store.py`;",
         "(`TABLE_COVERAGE` in `shell/store/_tables.py`;"),
    ],
    made_by="tools/split_store.py",
)

HANDLERS = Split(
    package="gsomia.service.handlers",
    first="_node",
    sections={
        "node": "_node",
        "publishing": "_publishing",
        "receiving": "_receiving",
        "people and access": "_people",
        "consents, classification changes, incidents, receipts": "_custody",
        "verifying the log": "_verifying",
        "proofs": "_proofs",
    },
    docstrings={
        "_node": "Opening a node's log with its identity as event 0.",
        "_publishing": "Publishing: an item (or a batch) labelled, stored and logged, with "
                       "its custody.",
        "_receiving": "Receiving: an item from a partner checked, stored or refused on record.",
        "_people": "People and access: users added and revoked, failed sign-ins on record, "
                   "an item read under policy.",
        "_custody": "Consents, classification changes, incidents and receipts, each on "
                    "record; a release checked.",
        "_verifying": "Verifying the log against its signed tree heads, and the operator "
                      "accepting a head.",
        "_proofs": "Proofs of an item's place in the log: made from the store, and checked.",
    },
    # The statements before the first marker, each with the one role that uses it; the
    # operator's acceptance of a tree head, filed with the consents, goes with the log's check.
    moved={
        "accept_head": "_verifying",
        "PROOF_VERSION": "_proofs",
        "_STORING": "_verifying",
        "_PURPOSE": "_people",
    },
    edits=[
        # The service's exports are defined in a package's modules now (``LabelRequest`` in
        # handlers/_publishing.py): the check looks there too.
        ("tests/unit/test_exported_members.py",
         '               for m in _modules(package, pending=True)]',
         '               for m in _modules(package, pending=True, roles=True)]'),
        ("tests/unit/test_exported_members.py",
         'def _modules(package: object, *, pending: bool = False) -> list[object]:\n'
         '    path = getattr(package, "__path__")  # noqa: B009\n'
         '    prefix = getattr(package, "__name__") + "."  # noqa: B009\n'
         '    return [importlib.import_module(info.name)\n'
         '            for info in pkgutil.iter_modules(path, prefix)',
         'def _modules(package: object, *, pending: bool = False, roles: bool = False) '
         '-> list[object]:\n'
         '    """The package\'s modules; with ``roles``, also those of its packages split by '
         'role\n'
         '    (``service/handlers/_publishing.py``), where what the package exports is '
         'defined."""\n'
         '    path = getattr(package, "__path__")  # noqa: B009\n'
         '    prefix = getattr(package, "__name__") + "."  # noqa: B009\n'
         '    walk = pkgutil.walk_packages if roles else pkgutil.iter_modules\n'
         '    return [importlib.import_module(info.name)\n'
         '            for info in walk(path, prefix)'),
    ],
    made_by="tools/split_module.py handlers",
    # The dashboard's test stores a malformed item by ``publish`` as a node did before the
    # check (publishing and receiving both make it).
    patches={("tests/e2e/test_dashboard_defences.py", "check_extension_properties"):
             "_publishing"},
)

EXCHANGE = Split(
    package="gsomia.shell.exchange",
    first="_node",
    sections={
        "partners": "_partners",
        "the outbox": "_outbox",
        "the sender": "_sender",
        "wake-ups": "_wake",
        "the sender's loop": "_sender",
        "the couriers": "_couriers",
        "receiving": "_receiving",
        "consents over the peer API": "_consents",
    },
    docstrings={
        "_node": "What the transport needs of a node (``NodePort``), and the clock it reads.",
        "_partners": "Partners: ``partners.json`` read (again only when it changed) and "
                     "written, and the mutual-TLS clients towards each party's node, pinned "
                     "to its CA.",
        "_outbox": "The outbox: crash recovery's scan, a federation node's publish, what is "
                   "queued, and a caller's wait for it.",
        "_wake": "Wake-ups: the in-process event that wakes a node's couriers, and the "
                 "commit signals read.",
        "_sender": "The sender: one partner link's loop, sealing batches of envelopes, "
                   "posting them and the notices, and settling the answers, with backoff.",
        "_couriers": "The couriers: one sender per partner link, each on a thread of its "
                     "own, woken at the commits that concern it; the shape of a node's "
                     "background loops.",
        "_receiving": "Receiving: a partner's batch of envelopes handed to the handlers "
                      "over the replay register read, in one commit.",
        "_consents": "Consent requests over the peer API: ids proposed and checked, "
                     "requests kept, listed and decided.",
    },
    # Before the first marker: the partners file's name and the parties with the partners,
    # the outbox rows' states with the outbox, a partner's answers and the notices' paths
    # with the sender that posts them. The connections towards partners, filed with the
    # sender, serve the notices, consents and the federation's checks too; the caller's wait
    # (``wait_until``), filed last, waits mostly for the outbox.
    moved={
        "PARTNERS_FILE": "_partners",
        "PARTIES": "_partners",
        "PENDING": "_outbox",
        "NOTICE_PATHS": "_sender",
        "_CLOSE": "_sender",
        "Refused": "_sender",
        "NotNow": "_sender",
        "client_tls": "_partners",
        "peer_client": "_partners",
        "wait_until": "_outbox",
    },
    edits=[
        ("tests/unit/test_errors.py",
         '                   ("shell/exchange.py", "Refused"), ("shell/exchange.py", "NotNow"),',
         '                   ("shell/exchange/_sender.py", "Refused"),\n'
         '                   ("shell/exchange/_sender.py", "NotNow"),'),
        ("tests/unit/test_package_surfaces.py",
         '"""Issue 11 item 5: the node\'s store (once one module of 2,888 lines) and its use '
         'cases (once\nservice/handlers.py, 1,786 lines) are packages of private modules by '
         'role, made by\n``tools/split_module.py``, behind the names the rest of gsomia uses, '
         'as httpx keeps its own:\neach package re-exports exactly those, in ``__all__``."""',
         '"""Issue 11 item 5: the node\'s store (once one module of 2,888 lines), its use '
         'cases (once\nservice/handlers.py, 1,786 lines) and its transport (shell/exchange.py, '
         'some 1,300 lines)\nare packages of private modules by role, made by '
         '``tools/split_module.py``, behind the names\nthe rest of gsomia uses, as httpx keeps '
         'its own: each package re-exports exactly those, in\n``__all__``."""'),
        ("tests/unit/test_package_surfaces.py",
         '# (the package\'s parent, its name): gsomia.shell.store, gsomia.service.handlers.\n'
         'PACKAGES = [("gsomia.shell", "store"), ("gsomia.service", "handlers")]',
         '# (the package\'s parent, its name): gsomia.shell.store, gsomia.service.handlers,\n'
         '# gsomia.shell.exchange.\n'
         'PACKAGES = [("gsomia.shell", "store"), ("gsomia.service", "handlers"),\n'
         '            ("gsomia.shell", "exchange")]'),
        ("tests/unit/test_package_surfaces.py",
         '    assert not handlers.search("from gsomia.service import outbox as '
         'outbox_handlers")\n',
         '    assert not handlers.search("from gsomia.service import outbox as '
         'outbox_handlers")\n'
         '    exchange = naming(*PACKAGES[2])\n'
         '    assert exchange.search("from gsomia.shell import consents, exchange, notices")\n'
         '    assert not exchange.search("from gsomia.service import exchange as '
         'exchange_handlers")\n'),
        ("README.md",
         "Both packages were cut from one file\neach by `tools/split_module.py`, statement "
         "for statement. `keys`, `node`, `exchange` (outbox and sender), `notices`",
         "`keys`, `node`,\n"
         "`exchange/` (the transport, a package by role: `_node` (`NodePort`), `_partners`\n"
         "(partners.json, mutual-TLS clients pinned to each party's CA), `_outbox`, `_wake`\n"
         "(wake-ups), `_sender` (one link's loop: batches sealed, posted, settled),\n"
         "`_couriers` (a sender per link, woken by commit signals), `_receiving`, `_consents`;\n"
         "its surface checked by the same test). The three packages were cut from one file\n"
         "each by `tools/split_module.py`, statement for statement. `notices`"),
    ],
    made_by="tools/split_module.py exchange",
)

SPLITS = {"store": STORE, "handlers": HANDLERS, "exchange": EXCHANGE}

MARKER = re.compile(r"^# ---- (.+?) -+$")


class Refused(Exception):
    """The split cannot be made as this script knows how: nothing was written."""


@dataclass
class Chunk:
    """One top-level statement of store.py with the comments and blank lines before it."""

    text: str
    names: list[str]  # the names it defines
    node: ast.stmt
    module: str = ""


@dataclass
class Module:
    name: str
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def defines(self) -> set[str]:
        return {n for c in self.chunks for n in c.names}


def defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
        and isinstance(node.value.value, str)


def start_line(node: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def lines_of(text: str) -> list[str]:
    """The lines as ``ast`` counts them: ``str.splitlines`` also splits at form feeds and
    Unicode line separators, which may sit inside a string."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


@dataclass
class Source:
    """The module as read: its docstring, its import block's lines, the imports it makes for
    the type checker alone (``if TYPE_CHECKING:`` after the block), the names its
    ``__all__`` lists (None: it has none), and its other statements."""

    doc: str
    import_lines: list[str]
    type_imports: list[ast.Import | ast.ImportFrom]
    all_names: list[str] | None
    chunks: list[Chunk]


def is_type_checking_block(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
        and node.test.id == "TYPE_CHECKING" and not node.orelse \
        and all(isinstance(s, ast.Import | ast.ImportFrom) for s in node.body)


def all_names(split: Split, node: ast.stmt) -> list[str]:
    value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
    if not isinstance(value, ast.List | ast.Tuple) or not all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts):
        raise Refused(f"{split.file}:{node.lineno}: an __all__ that is not a list of names")
    return [str(e.value) for e in value.elts if isinstance(e, ast.Constant)]


def read_source(split: Split, text: str) -> Source:
    """The module's docstring, its imports, and its other statements, each with the section
    it sits under (``module``, before any move by name). Its ``__all__`` is not one of them:
    the package's ``__init__`` says what it exports (the names used from it), and the
    imported names the ``__all__`` lists are re-exported as ``X as X`` ones are."""
    tree = ast.parse(text)
    lines = lines_of(text)
    body = list(tree.body)
    doc = ast.get_docstring(tree, clean=False)
    if doc is None:
        raise Refused(f"{split.file} has no docstring")
    body.pop(0)
    imports: list[ast.stmt] = []
    while body and isinstance(body[0], ast.Import | ast.ImportFrom):
        imports.append(body.pop(0))
    if not imports:
        raise Refused(f"{split.file} has no import block")
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            raise Refused(f"{split.file}:{node.lineno}: an import after the import block")
    import_lines = lines[start_line(imports[0]) - 1:imports[-1].end_lineno or 0]
    after = imports[-1].end_lineno or 0
    type_imports: list[ast.Import | ast.ImportFrom] = []
    if body and is_type_checking_block(body[0]):
        block = body.pop(0)
        type_imports = [s for s in getattr(block, "body", [])
                        if isinstance(s, ast.Import | ast.ImportFrom)]
        if "#" in "".join(lines[after:block.end_lineno]):
            raise Refused(f"{split.file}:{block.lineno}: a comment in the TYPE_CHECKING "
                          "imports, which would be lost")
        after = block.end_lineno or after
    exports: list[str] | None = None
    chunks: list[Chunk] = []
    section = split.first
    for node in body:
        names = defined_names(node)
        if is_docstring(node) and chunks and chunks[-1].node.end_lineno == node.lineno - 1:
            # a name's docstring, on the line after its assignment: it goes with it
            chunks[-1].text += "".join(lines[after:node.end_lineno])
            after = node.end_lineno or after
            continue
        if not names:
            raise Refused(f"{split.file}:{node.lineno}: a statement that defines no name "
                          f"({type(node).__name__}); place it by hand in moved's terms")
        piece = lines[after:node.end_lineno]
        kept: list[str] = []
        for line in piece:
            found = MARKER.match(line.rstrip("\n"))
            if found:
                title = found.group(1).strip()
                if title not in split.sections:
                    raise Refused(f"unknown section marker {title!r}: add it to sections")
                section = split.sections[title]
            else:
                kept.append(line)
        if names == ["__all__"]:
            exports = all_names(split, node)
            before = kept[:len(kept) - (node.end_lineno or 0) + start_line(node) - 1]
            if "".join(before).strip():
                raise Refused(f"{split.file}:{node.lineno}: a comment before __all__, which "
                              "would be lost")
        else:
            chunks.append(Chunk("".join(kept), names, node, section))
        after = node.end_lineno or after
    return Source(doc, import_lines, type_imports, exports, chunks)


def place(split: Split, chunks: list[Chunk]) -> dict[str, Module]:
    modules = {name: Module(name) for name in [split.first, *split.sections.values()]}
    defined = {n for c in chunks for n in c.names}
    for name in sorted(set(split.moved) - defined):
        print(f"note: moved names {name}, which {split.file} no longer defines",
              file=sys.stderr)
    for chunk in chunks:
        targets = {split.moved[n] for n in chunk.names if n in split.moved}
        if len(targets) > 1:
            raise Refused(f"{chunk.names}: moved to several modules {sorted(targets)}")
        if targets:
            chunk.module = targets.pop()
        modules[chunk.module].chunks.append(chunk)
    seen: dict[str, str] = {}
    for module in modules.values():
        for name in module.defines:
            if seen.setdefault(name, module.name) != module.name:
                raise Refused(f"{name} is defined in both {seen[name]} and {module.name}")
    return {name: m for name, m in modules.items() if m.chunks}


class _Uses(ast.NodeVisitor):
    """The names a module's statements use: at run time, and in annotations only."""

    def __init__(self) -> None:
        self.runtime: set[str] = set()
        self.annotations: set[str] = set()
        self._in_annotation = 0

    def visit_Name(self, node: ast.Name) -> None:
        (self.annotations if self._in_annotation else self.runtime).add(node.id)

    def _annotation(self, node: ast.AST | None) -> None:
        if node is None:
            return
        self._in_annotation += 1
        self.visit(node)
        for sub in ast.walk(node):  # quoted annotations ("Store")
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                with suppress(SyntaxError):
                    self.visit(ast.parse(sub.value, mode="eval"))
        self._in_annotation -= 1

    def visit_arg(self, node: ast.arg) -> None:
        self._annotation(node.annotation)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for d in node.decorator_list:
            self.visit(d)
        self.visit(node.args)
        self._annotation(node.returns)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_Call(self, node: ast.Call) -> None:
        # cast("list[Any]", …): a type, quoted
        if isinstance(node.func, ast.Name) and node.func.id == "cast" and node.args:
            self._annotation(node.args[0])
            for arg in node.args[1:]:
                self.visit(arg)
            for kw in node.keywords:
                self.visit(kw)
            self.visit(node.func)
        else:
            self.generic_visit(node)


def sibling_imports(modules: dict[str, Module]) -> tuple[dict[str, dict[str, set[str]]],
                                                          dict[str, dict[str, set[str]]]]:
    """For each module, the names it takes from each sibling: (at run time, typing only)."""
    home = {n: m.name for m in modules.values() for n in m.defines}
    runtime: dict[str, dict[str, set[str]]] = {}
    typing: dict[str, dict[str, set[str]]] = {}
    for module in modules.values():
        uses = _Uses()
        for chunk in module.chunks:
            uses.visit(chunk.node)
        run, typ = runtime.setdefault(module.name, {}), typing.setdefault(module.name, {})
        for name in sorted(uses.runtime | uses.annotations):
            where = home.get(name)
            if where is None or where == module.name:
                continue
            (run if name in uses.runtime else typ).setdefault(where, set()).add(name)
    return runtime, typing


def users(modules: dict[str, Module]) -> dict[str, set[str]]:
    """For each name, the modules that look it up at run time (where a patch must go)."""
    found: dict[str, set[str]] = {}
    for module in modules.values():
        uses = _Uses()
        for chunk in module.chunks:
            uses.visit(chunk.node)
        for name in uses.runtime:
            found.setdefault(name, set()).add(module.name)
    return found


def import_order(modules: dict[str, Module],
                 runtime: dict[str, dict[str, set[str]]]) -> list[str]:
    """The modules, each after those it imports at run time (section order where free)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = [*path[path.index(name):], name]
            detail = "; ".join(f"{a} uses {sorted(runtime[a][b])} of {b}"
                               for a, b in pairwise(cycle))
            raise Refused(f"the modules would import each other: {detail}. Move one of "
                          "these names to the other module in moved")
        state[name] = "open"
        for dep in runtime[name]:
            visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in modules:
        visit(name, [])
    return order


def private_import_block(lines: list[str]) -> str:
    """The module's import block for a private module: each ``from`` import on one line (ruff
    wraps what is too long; a name left alone in parentheses with a trailing comma would
    stay so), and ``X as X`` (its re-exports) plain ``X``, so that ruff prunes it
    where it is not used (the package's ``__init__`` re-exports what is). Verbatim if the
    block holds a comment, which one line per import would lose."""
    block = "".join(lines)
    if "#" not in block:
        block = "".join(ast.unparse(node) + "\n" for node in ast.parse(block).body)
    return re.sub(r"\b(\w+) as \1\b", r"\1", block)


def type_imports_used(module: Module, type_imports: list[ast.Import | ast.ImportFrom]
                      ) -> list[str]:
    """The module's own ``if TYPE_CHECKING:`` imports: those of the source's that bind a
    name its statements use (ruff would leave an emptied block behind)."""
    uses = _Uses()
    for chunk in module.chunks:
        uses.visit(chunk.node)
    used = uses.runtime | uses.annotations
    out: list[str] = []
    for node in type_imports:
        kept = [a for a in node.names
                if (a.asname or a.name.split(".")[0]) in used]
        if kept:
            copy = ast.ImportFrom(node.module, kept, node.level) \
                if isinstance(node, ast.ImportFrom) else ast.Import(kept)
            out.append(ast.unparse(copy))
    return out


def module_text(split: Split, module: Module, import_block: str,
                runtime: dict[str, set[str]], typing: dict[str, set[str]],
                type_imports: list[str]) -> str:
    # the line is 100 wide: a docstring that does not fit with its quotes is wrapped
    doc = textwrap.fill(split.docstrings[module.name], WIDTH - 6)
    out = [f'"""{doc}"""\n\n' if "\n" not in doc else f'"""{doc}\n"""\n\n', import_block]
    for sibling in sorted(runtime):
        out.append(f"from {split.package}.{sibling} import "
                   f"{', '.join(sorted(runtime[sibling]))}\n")
    if typing or type_imports:
        out.append("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n")
        out.extend(f"    {line}\n" for line in type_imports)
        for sibling in sorted(typing):
            out.append(f"    from {split.package}.{sibling} import "
                       f"{', '.join(sorted(typing[sibling]))}\n")
    # at most two blank lines before a statement (a marker taken out left more)
    body = "".join(re.sub(r"\A\n{3,}", "\n\n", c.text) for c in module.chunks).lstrip("\n")
    out.append("\n\n" + body)
    return "".join(out).rstrip("\n") + "\n"


# ---- who uses the module, and how ---------------------------------------------------------


@dataclass
class Use:
    path: Path
    # (line, col, end_line, end_col, replacement) edits to make
    edits: list[tuple[int, int, int, int, str]] = field(default_factory=list)


def scanned_files(split: Split, root: Path) -> list[Path]:
    files: list[Path] = []
    for top in SCANNED:
        files.extend(p for p in sorted((root / top).rglob("*.py"))
                     if not p.is_relative_to(root / split.target)
                     and p != root / split.source
                     and not (p.parent == root / "tools" and p.name.startswith("split_")))
    return files


def module_aliases(split: Split, tree: ast.Module, path: Path) -> set[str]:
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == split.parent \
                and node.level == 0:
            aliases.update(a.asname or a.name for a in node.names if a.name == split.leaf)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == split.package and a.asname is None:
                    raise Refused(f"{path}:{node.lineno}: imports {split.package} by its "
                                  "dotted name; import it as a name of its package")
                if a.name == split.package:
                    aliases.add(a.asname or "")
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise Refused(f"{path}:{node.lineno}: a relative import, which this script does "
                          "not follow")
    return aliases


def survey(split: Split, root: Path, home: dict[str, str], reexported: dict[str, str],
           looked_up: dict[str, set[str]]) -> tuple[set[str], list[Use]]:
    """The public names used from the module outside it, and the edits that send every use
    of a private name to the module now holding it, and every patch of a name to the one
    module that looks it up."""
    public: set[str] = set()
    uses: list[Use] = []
    patched: list[str] = []
    for path in scanned_files(split, root):
        text = path.read_text("utf-8")
        if split.leaf not in text:
            continue
        tree = ast.parse(text)
        aliases = module_aliases(split, tree, path)
        use = Use(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == split.package \
                    and node.level == 0:
                private = [a for a in node.names if a.name.startswith("_")]
                public.update(a.name for a in node.names if not a.name.startswith("_"))
                for a in private:
                    if a.name not in home:
                        raise Refused(f"{path}:{node.lineno}: imports {a.name}, which "
                                      f"{split.file} does not define")
                if private:
                    use.edits.append(_reimport(split, node, home))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases:
                name = node.attr
                if not name.startswith("_"):
                    public.add(name)
                elif name in home:
                    # m._x -> m._module._x: the package holds its modules as
                    # attributes once imported, and __init__ imports them all.
                    v = node.value
                    use.edits.append((v.end_lineno or 0, v.end_col_offset or 0,
                                      v.end_lineno or 0, v.end_col_offset or 0,
                                      f".{home[name]}"))
                else:
                    raise Refused(f"{path}:{node.lineno}: uses {split.leaf}.{name}, which "
                                  f"{split.file} does not define")
            elif isinstance(node, ast.Call) and _called(node) in ("setattr", "delattr") \
                    and node.args and isinstance(node.args[0], ast.Name | ast.Constant):
                target = node.args[0]
                name_arg = node.args[1] if len(node.args) > 1 else None
                patched_name = name_arg.value if isinstance(name_arg, ast.Constant) \
                    and isinstance(name_arg.value, str) else ""
                where = split.patches.get((path.relative_to(root).as_posix(), patched_name))
                if where is not None and where not in looked_up.get(patched_name, ()):
                    raise Refused(f"{path}:{node.lineno}: patches says {where} looks up "
                                  f"{patched_name}, which it does not")
                if where is None and len(looked_up.get(patched_name, ())) == 1:
                    (where,) = looked_up[patched_name]
                if isinstance(target, ast.Name) and target.id in aliases and where:
                    # A patch of ``m.f`` reaches the one private module that looks ``f``
                    # up (its own global), not the package's re-export of it.
                    use.edits.append((target.end_lineno or 0, target.end_col_offset or 0,
                                      target.end_lineno or 0, target.end_col_offset or 0,
                                      f".{where}"))
                elif (isinstance(target, ast.Name) and target.id in aliases) or (
                        isinstance(target, ast.Constant) and isinstance(target.value, str)
                        and target.value.startswith(split.package + ".")):
                    patched.append(f"{path}:{node.lineno}")
            elif isinstance(node, ast.Call) and _called(node) == "patch" and node.args \
                    and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).startswith(split.package + "."):
                # mock.patch("gsomia.service.handlers.f")
                patched.append(f"{path}:{node.lineno}")
        if use.edits:
            uses.append(use)
    if patched:
        raise Refused(f"these patch a name of {split.file} that no one private module looks "
                      "up (or name the module by a string): patch the module that uses it: "
                      + ", ".join(patched))
    unknown = sorted(public - set(home) - set(reexported))
    if unknown:
        raise Refused(f"used from {split.package} but not defined by {split.file}: {unknown}")
    return public, uses


def _called(call: ast.Call) -> str:
    """The name a call calls: ``setattr`` for ``monkeypatch.setattr(…)`` and ``setattr(…)``."""
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else ""


def _reimport(split: Split, node: ast.ImportFrom,
              home: dict[str, str]) -> tuple[int, int, int, int, str]:
    """``from gsomia.shell.store import A, _b`` as one import per module holding them."""
    by_module: dict[str, list[str]] = {}
    for a in node.names:
        module = split.package + ("." + home[a.name] if a.name.startswith("_") else "")
        by_module.setdefault(module, []).append(
            a.name if a.asname is None else f"{a.name} as {a.asname}")
    indent = " " * node.col_offset
    statements = [f"from {module} import {', '.join(names)}"
                  for module, names in sorted(by_module.items())]
    return (node.lineno, node.col_offset, node.end_lineno or node.lineno,
            node.end_col_offset or 0, ("\n" + indent).join(statements))


def apply_edits(text: str, edits: list[tuple[int, int, int, int, str]]) -> str:
    # ast's columns count UTF-8 bytes
    starts = [0]
    for line in lines_of(text):
        starts.append(starts[-1] + len(line.encode("utf-8")))
    raw = text.encode("utf-8")
    for first, col, last, end_col, new in sorted(edits, reverse=True):
        a, b = starts[first - 1] + col, starts[last - 1] + end_col
        raw = raw[:a] + new.encode("utf-8") + raw[b:]
    return raw.decode("utf-8")


def isort_key(name: str) -> tuple[int, str]:
    """ruff's order of ``__all__`` (RUF022): CONSTANTS, then Classes, then the rest."""
    if name.isupper() or not any(c.isalpha() for c in name):
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


def init_text(split: Split, doc: str, order: list[str], exported: dict[str, str],
              reexported: dict[str, str]) -> str:
    roles = "".join(textwrap.fill(f"- ``{name}``: {split.docstrings[name]}", WIDTH,
                                  subsequent_indent="  ") + "\n" for name in order)
    doc = (doc.rstrip("\n") + "\n\nThe package's modules, by role (private: the package "
           f"re-exports what the rest of\ngsomia uses, and {split.made_by} made them from "
           f"one {split.file}):\n\n" + roles)
    out = [f'"""{doc}"""\n\nfrom __future__ import annotations\n\n']
    by_module: dict[str, list[str]] = {}
    for name, where in {**exported, **reexported}.items():
        by_module.setdefault(where, []).append(name)
    for where in sorted(by_module):
        out.append(f"from {where} import {', '.join(sorted(by_module[where]))}\n")
    names = sorted({*exported, *reexported}, key=isort_key)
    out.append("\n__all__ = [\n")
    out.extend(f'    "{n}",\n' for n in names)
    out.append("]\n")
    return "".join(out)


def main(split: Split, root: Path) -> None:
    source, target = root / split.source, root / split.target
    if target.exists():
        raise Refused(f"{target} exists already: the split is made (nothing to do)")
    if not source.exists():
        raise Refused(f"{source} is gone")
    text = source.read_text("utf-8")
    read = read_source(split, text)
    doc, import_lines, chunks = read.doc, read.import_lines, read.chunks
    modules = place(split, chunks)
    runtime, typing = sibling_imports(modules)
    order = import_order(modules, runtime)
    home = {n: m.name for m in modules.values() for n in m.defines}
    # Names the module imports and other modules take from it (``REGISTER_FIELDS``).
    reexported: dict[str, str] = {}
    for line in import_lines:
        for name in re.findall(r"\b(\w+) as \1\b", line):
            reexported[name] = ""
    # or that its __all__ lists (``MAX_BACKOFF``, of gsomia.service.exchange)
    reexported.update((name, "") for name in read.all_names or () if name not in home)
    import_tree = ast.parse("".join(import_lines))
    for node in import_tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if a.name in reexported:
                    reexported[a.name] = node.module
    unknown_all = sorted(name for name, where in reexported.items() if not where)
    if unknown_all:
        raise Refused(f"{split.file}'s __all__ lists {unknown_all}, which it neither defines "
                      "nor imports from a module")
    public, uses = survey(split, root, home, reexported, users(modules))
    exported = {n: f"{split.package}.{home[n]}" for n in public if n in home}
    reexported = {n: m for n, m in reexported.items() if n in public}

    block = private_import_block(import_lines)
    texts = {target / f"{name}.py": module_text(
        split, modules[name], block, runtime[name], typing[name],
        type_imports_used(modules[name], read.type_imports)) for name in order}
    texts[target / "__init__.py"] = init_text(split, doc, order, exported, reexported)
    edited = {u.path: apply_edits(u.path.read_text("utf-8"), u.edits) for u in uses}
    for file, old, new in split.edits:
        path = root / file
        current = texts.get(path) or edited.get(path) or path.read_text("utf-8")
        if current.count(old) != 1:
            raise Refused(f"{file}: expected once, found {current.count(old)} times: {old!r}")
        current = current.replace(old, new)
        if path in texts:
            texts[path] = current
        else:
            edited[path] = current

    target.mkdir()
    for path, body in texts.items():
        path.write_text(body, "utf-8")
    for path, body in edited.items():
        path.write_text(body, "utf-8")
    source.unlink()
    for name in order:
        m = modules[name]
        print(f"{name}.py: {', '.join(c.names[0] for c in m.chunks)}")
    print(f"__init__.py exports {len(exported) + len(reexported)} names; edited "
          f"{len(edited)} other files")


def run(argv: list[str]) -> None:
    """``split_module.py NAME [ROOT]``: make the split ``NAME`` (one of ``SPLITS``)."""
    if not argv or argv[0] not in SPLITS:
        sys.exit(f"usage: split_module.py {{{','.join(SPLITS)}}} [ROOT]")
    split = SPLITS[argv[0]]
    try:
        main(split, Path(argv[1]) if len(argv) > 1 else Path.cwd())
    except Refused as exc:
        sys.exit(f"split_module {argv[0]}: {exc}")


if __name__ == "__main__":
    run(sys.argv[1:])
