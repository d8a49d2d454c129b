"""tools/split_module.py on a module of three statements (the exchange's split needed two
things the store's and the handlers' did not: a module's ``__all__``, and its imports for the
type checker alone): each private module keeps the ``TYPE_CHECKING`` imports it uses, the
package's ``__init__`` re-exports what ``__all__`` listed and its users take, and what the
script cannot place leaves every file as it was."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "split_module.py"

DEMO = '''"""A module of two roles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gsomia.core.types import iso

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

__all__ = ["iso", "first", "Later"]


# ---- one ----


def first(items: Sequence[int]) -> int:
    return items[0]


# ---- two ----


class Later:
    def at(self, when: datetime) -> str:
        return iso(when) + str(first([1]))
'''

USER = '''from gsomia.shell import demo

print(demo.iso, demo.first, demo.Later)
'''


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("split_module", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["split_module"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["split_module"]
    return module


def _repository(root: Path, module: str) -> Path:
    (root / "src" / "gsomia" / "shell").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "tests" / "test_demo.py").write_text(USER, "utf-8")
    source = root / "src" / "gsomia" / "shell" / "demo.py"
    source.write_text(module, "utf-8")
    return source


def _split(tool: ModuleType) -> object:
    return tool.Split(package="gsomia.shell.demo", first="_one",
                      sections={"one": "_one", "two": "_two"},
                      docstrings={"_one": "The first role.", "_two": "The second role."},
                      moved={}, edits=[], made_by="the test")


def test_each_module_keeps_the_type_checkers_imports_it_uses_and_init_says_all(
        tool: ModuleType, tmp_path: Path) -> None:
    _repository(tmp_path, DEMO)
    tool.main(_split(tool), tmp_path)
    package = tmp_path / "src" / "gsomia" / "shell" / "demo"
    one, two = (package / "_one.py").read_text("utf-8"), (package / "_two.py").read_text("utf-8")
    assert "if TYPE_CHECKING:\n    from collections.abc import Sequence\n" in one
    assert "datetime" not in one
    assert "    from datetime import datetime\n" in two and "Sequence" not in two
    assert "from gsomia.shell.demo._one import first\n" in two
    init = (package / "__init__.py").read_text("utf-8")
    assert "from gsomia.core.types import iso\n" in init
    assert '__all__ = [\n    "Later",\n    "first",\n    "iso",\n]\n' in init
    assert "__all__" not in one + two
    assert not (tmp_path / "src" / "gsomia" / "shell" / "demo.py").exists()


def test_an_all_naming_what_the_module_lacks_changes_nothing(tool: ModuleType,
                                                             tmp_path: Path) -> None:
    source = _repository(tmp_path, DEMO.replace('"Later"]', '"Later", "gone"]'))
    with pytest.raises(tool.Refused, match="gone"):
        tool.main(_split(tool), tmp_path)
    assert source.read_text("utf-8") == DEMO.replace('"Later"]', '"Later", "gone"]')
    assert not (source.parent / "demo").exists()
