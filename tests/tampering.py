"""How the tamper tests change one stored value: shared by the audit tests of every layer."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import assume
from hypothesis import strategies as hs


def edit_value(value: Any, where: int, data: hs.DataObject) -> Any:
    """``value`` changed at position ``where``: a flipped bit, another character, another
    number, or a NULL filled in."""
    if isinstance(value, bytes):
        flipped = bytearray(value or b"\x00")
        flipped[where % len(flipped)] ^= 1 << data.draw(hs.integers(0, 7))
        return bytes(flipped)
    if isinstance(value, str):
        if not value:
            return "x"
        i = where % len(value)
        other = data.draw(hs.sampled_from("0123456789abcdefXYZ-:. "))
        assume(other != value[i])
        return value[:i] + other + value[i + 1:]
    if isinstance(value, int):
        return value + data.draw(hs.sampled_from([1, -1, 2, 1000, 1 << 40]))
    return data.draw(hs.sampled_from(["KOR", "x"]))  # a NULL filled in


def node_copy(template: Path, tmp_path: Path) -> Path:
    """A copy of the node folder ``template`` of its own for one example to tamper with."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / template.name
    shutil.copytree(template, folder)
    return folder
