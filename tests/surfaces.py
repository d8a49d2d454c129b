"""What a module defines as public, read from its source (shared by the tests of exported
names: ``test_exported_members`` and ``test_package_surfaces``)."""

from __future__ import annotations

import ast
from pathlib import Path


def public_definitions(path: Path) -> set[str]:
    """The names ``path`` binds at its top level (functions, classes, assignments) that do
    not start with an underscore."""
    names: set[str] = set()
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}
