"""Issue 11 item 5: the node's use cases, once one module (service/handlers.py) of 1,786 lines,
are a package of private modules by role (made by ``tools/split_module.py handlers``) behind
the names the rest of gsomia uses: ``gsomia.service.handlers`` re-exports exactly those, in
``__all__``, as the store's package does (tests/unit/test_store_surface.py)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HANDLERS = "gsomia.service.handlers"
# Only files that name the package are parsed.
_NAMES_THE_HANDLERS = re.compile(r"gsomia\.service\.handlers|from gsomia\.service import "
                                 r"(?:\([^)]*|[^\n]*)\bhandlers\b")


def names_taken_from_the_handlers() -> set[str]:
    """What src/, tests/ and bench/ take from the package itself: ``from
    gsomia.service.handlers import X`` and ``handlers.X`` (the package imported as a module,
    under any name)."""
    taken: set[str] = set()
    for top in ("src", "tests", "bench"):
        for path in sorted((REPO / top).rglob("*.py")):
            text = path.read_text("utf-8")
            if not _NAMES_THE_HANDLERS.search(text) \
                    or "/service/handlers/" in path.as_posix():
                continue
            tree = ast.parse(text)
            aliases = {a.asname or a.name for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.module == "gsomia.service"
                       for a in node.names if a.name == "handlers"}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == HANDLERS:
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


def test_the_handlers_export_what_the_rest_of_gsomia_takes_from_them_and_no_more() -> None:
    """Each exported name is the very object of the one module that defines it; a test that
    patches a handler's helper patches the private module that looks it up
    (``handlers._publishing``), never the package's re-export."""
    handlers = importlib.import_module(HANDLERS)
    exported = getattr(handlers, "__all__")  # noqa: B009
    assert len(set(exported)) == len(exported)
    modules = [importlib.import_module(info.name)
               for info in pkgutil.iter_modules(getattr(handlers, "__path__"),  # noqa: B009
                                                HANDLERS + ".")]
    roles = {getattr(m, "__name__").rpartition(".")[2] for m in modules}  # noqa: B009
    assert len(roles) >= 5 and all(role.startswith("_") for role in roles)
    assert names_taken_from_the_handlers() - roles == set(exported)
    defined = [(m, public_definitions(Path(getattr(m, "__file__")))) for m in modules]  # noqa: B009
    for name in exported:
        (home,) = [m for m, names in defined if name in names]
        assert getattr(handlers, name) is getattr(home, name), name


def test_the_check_sees_both_ways_of_taking_a_name() -> None:
    assert _NAMES_THE_HANDLERS.search("from gsomia.service import (\n    access,\n    handlers,\n)")
    assert _NAMES_THE_HANDLERS.search("from gsomia.service.handlers import LabelRequest")
    assert not _NAMES_THE_HANDLERS.search("from gsomia.service import outbox as outbox_handlers")
