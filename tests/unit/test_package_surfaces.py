"""Issue 11 item 5: the node's store (once one module of 2,888 lines), its use cases (once
service/handlers.py, 1,786 lines) and its transport (shell/exchange.py, some 1,300 lines)
are packages of private modules by role, made by ``tools/split_module.py``, behind the names
the rest of gsomia uses, as httpx keeps its own: each package re-exports exactly those, in
``__all__``."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

from surfaces import public_definitions

REPO = Path(__file__).resolve().parents[2]
# (the package's parent, its name): gsomia.shell.store, gsomia.service.handlers,
# gsomia.shell.exchange.
PACKAGES = [("gsomia.shell", "store"), ("gsomia.service", "handlers"),
            ("gsomia.shell", "exchange")]


def naming(parent: str, name: str) -> re.Pattern[str]:
    """Whether a file names the package (only those are parsed: a twentieth of the files;
    parsing all took 1.2 s): by its dotted name, or imported from its parent."""
    dotted = re.escape(f"{parent}.{name}")
    return re.compile(rf"{dotted}|from {re.escape(parent)} import (?:\([^)]*|[^\n]*)\b{name}\b")


def names_taken(parent: str, name: str) -> set[str]:
    """What src/, tests/ and bench/ take from the package itself: ``from parent.name import
    X`` and ``name.X`` (the package imported from its parent, under any alias)."""
    package, names_it = f"{parent}.{name}", naming(parent, name)
    inside = "/" + package.removeprefix("gsomia.").replace(".", "/") + "/"
    taken: set[str] = set()
    for top in ("src", "tests", "bench"):
        for path in sorted((REPO / top).rglob("*.py")):
            text = path.read_text("utf-8")
            if not names_it.search(text) or inside in path.as_posix():
                continue
            tree = ast.parse(text)
            aliases = {a.asname or a.name for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.module == parent
                       for a in node.names if a.name == name}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == package:
                    taken.update(a.name for a in node.names)
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and node.value.id in aliases:
                    taken.add(node.attr)
    return taken


@pytest.mark.parametrize(("parent", "name"), PACKAGES)
def test_a_package_exports_what_the_rest_of_gsomia_takes_from_it_and_no_more(
        parent: str, name: str) -> None:
    """Each exported name is the very object of the one module that defines it. Private
    names are taken from the private module holding them (``store._signal._SIGNAL``), and a
    test that patches a helper patches the module that looks it up
    (``handlers._publishing``), never the package's re-export."""
    package = importlib.import_module(f"{parent}.{name}")
    exported = getattr(package, "__all__")  # noqa: B009
    assert len(set(exported)) == len(exported)
    modules = [importlib.import_module(info.name) for info in pkgutil.iter_modules(
        getattr(package, "__path__"), f"{parent}.{name}.")]  # noqa: B009
    roles = {getattr(m, "__name__").rpartition(".")[2] for m in modules}  # noqa: B009
    assert len(roles) >= 5 and all(role.startswith("_") for role in roles)
    assert names_taken(parent, name) - roles == set(exported)
    defined = [(m, public_definitions(Path(getattr(m, "__file__")))) for m in modules]  # noqa: B009
    for exported_name in exported:
        value = getattr(package, exported_name)
        homes = [m for m, names in defined if exported_name in names]
        if homes:
            (home,) = homes
            assert value is getattr(home, exported_name), exported_name
        else:  # a name of the core that store.py re-exported (``REGISTER_FIELDS``)
            assert any(getattr(m, exported_name, None) is value for m in modules), exported_name


def test_the_check_sees_both_ways_of_taking_a_name() -> None:
    store, handlers = naming(*PACKAGES[0]), naming(*PACKAGES[1])
    assert store.search("from gsomia.shell import (\n    api,\n    store,\n)")
    assert store.search("from gsomia.shell.store._store import _HeadCopier")
    assert not store.search("from gsomia.shell import taxii_store")
    assert handlers.search("from gsomia.service import (\n    access,\n    handlers,\n)")
    assert handlers.search("from gsomia.service.handlers import LabelRequest")
    assert not handlers.search("from gsomia.service import outbox as outbox_handlers")
    exchange = naming(*PACKAGES[2])
    assert exchange.search("from gsomia.shell import consents, exchange, notices")
    assert not exchange.search("from gsomia.service import exchange as exchange_handlers")
