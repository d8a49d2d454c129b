"""Issue 11 item 5: the node's store, once one module of 2,811 lines, is a package of private
modules by role (made by tools/split_store.py) behind the names the rest of gsomia uses, as
httpx keeps its own: ``gsomia.shell.store`` re-exports exactly those, in ``__all__``."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STORE = "gsomia.shell.store"
# Only files that name the package are parsed (a twentieth of them; parsing all took 1.2 s).
_NAMES_THE_STORE = re.compile(r"gsomia\.shell\.store|from gsomia\.shell import (?:\([^)]*|[^\n]*)"
                              r"\bstore\b")


def names_taken_from_the_store() -> set[str]:
    """What src/, tests/ and bench/ take from the store package itself: ``from
    gsomia.shell.store import X`` and ``store.X`` (the package imported as a module)."""
    taken: set[str] = set()
    for top in ("src", "tests", "bench"):
        for path in sorted((REPO / top).rglob("*.py")):
            text = path.read_text("utf-8")
            if not _NAMES_THE_STORE.search(text) or "/shell/store/" in path.as_posix():
                continue
            tree = ast.parse(text)
            aliases = {a.asname or a.name for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.module == "gsomia.shell"
                       for a in node.names if a.name == "store"}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == STORE:
                    taken.update(a.name for a in node.names)
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and node.value.id in aliases:
                    taken.add(node.attr)
    return taken


def public_definitions(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def test_the_store_exports_what_the_rest_of_gsomia_takes_from_it_and_no_more() -> None:
    """Each exported name is the very object of the one module that defines it. Private
    names are taken from the private module holding them (``store._signal._SIGNAL``),
    never from the package: a test patching one patches where it is used."""
    store = importlib.import_module(STORE)
    exported = getattr(store, "__all__")  # noqa: B009
    assert len(set(exported)) == len(exported)
    modules = [importlib.import_module(info.name)
               for info in pkgutil.iter_modules(getattr(store, "__path__"), STORE + ".")]  # noqa: B009
    roles = {getattr(m, "__name__").rpartition(".")[2] for m in modules}  # noqa: B009
    assert len(roles) >= 5 and all(role.startswith("_") for role in roles)
    assert names_taken_from_the_store() - roles == set(exported)
    defined = [(m, public_definitions(Path(getattr(m, "__file__")))) for m in modules]  # noqa: B009
    for name in exported:
        value = getattr(store, name)
        homes = [m for m, names in defined if name in names]
        if homes:
            (home,) = homes
            assert value is getattr(home, name), name
        else:  # a name of the core that store.py re-exported (``REGISTER_FIELDS``)
            assert any(getattr(m, name, None) is value for m in modules), name


def test_the_check_sees_both_ways_of_taking_a_name() -> None:
    assert _NAMES_THE_STORE.search("from gsomia.shell import (\n    api,\n    store,\n)")
    assert _NAMES_THE_STORE.search("from gsomia.shell.store._store import _HeadCopier")
    assert not _NAMES_THE_STORE.search("from gsomia.shell import taxii_store")
