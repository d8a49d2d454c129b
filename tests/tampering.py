"""How the tamper tests change one stored value: shared by the audit tests of every layer."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def wal_unreadable(monkeypatch: Any) -> Iterator[None]:
    """The node's write-ahead log cannot be opened to sync a head (a disk or permission
    fault), and no head is known on disk yet, so the next head read must sync it."""
    from gsomia.shell.store._reader import _SyncedHead

    real_open = os.open

    def open_refused(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("-wal") and flags == os.O_RDONLY:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", open_refused)
        patch.setattr(_SyncedHead, "holds", lambda self, head: False)
        yield
