"""The composition root: the only place that reads configuration and the environment.

``GSOMIA_AGREEMENTS``: extra agreement folders, separated by the OS path separator, added to
whatever ``--agreements`` names on the command line.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from gsomia.core.agreements import Catalogue
from gsomia.shell.catalogue import load_catalogue

if TYPE_CHECKING:
    from gsomia.shell.node import Node

AGREEMENTS_ENV = "GSOMIA_AGREEMENTS"


def agreement_dirs(cli_dirs: Iterable[str | Path] = ()) -> tuple[str, ...]:
    env = [d for d in os.environ.get(AGREEMENTS_ENV, "").split(os.pathsep) if d]
    return tuple(str(d) for d in (*env, *cli_dirs))


@lru_cache(maxsize=8)
def _catalogue(dirs: tuple[str, ...]) -> Catalogue:
    return load_catalogue(dirs)


def catalogue(cli_dirs: Iterable[str | Path] = ()) -> Catalogue:
    """The agreements in effect for this process: shipped ones plus the user's folders."""
    return _catalogue(agreement_dirs(cli_dirs))


def open_node(node_dir: str | Path, cli_dirs: Iterable[str | Path] = ()) -> Node:
    """Open the node in ``node_dir`` with the agreements in effect for this process.

    The store (SQLAlchemy, and Alembic when a migration is due) is imported here, not at
    start-up, so commands that need no node start fast.
    """
    from gsomia.shell.node import open_node as _open

    node = _open(node_dir, catalogue=catalogue(cli_dirs))
    settle_heap(collect=False)
    return node


_SETTLED = [False]


def settle_heap(*, collect: bool = True) -> None:
    """Take what this process holds so far out of the cyclic garbage collector's reach.

    The imported stack and an open node (modules, SQLAlchemy's metadata, the catalogue) are
    about 100,000 objects that live as long as the process; a full collection walks them all,
    ≈50 ms of CPU during which every thread of the process stands still, and a delivery
    waiting on the process (publishing, receiving, recording the receipt) waits it out. Once
    frozen, a full collection walks only what was made since: a few milliseconds. Frozen
    objects are still freed when no longer referenced; only reference cycles among them are
    kept for good, so ``collect`` (≈50 ms, once) first clears the garbage of start-up.
    ``collect=False``: freeze once per process, without the pause (opening a node from a
    command that ends soon)."""
    if not collect:
        if _SETTLED[0]:
            return
    else:
        gc.collect()
    _SETTLED[0] = True
    gc.freeze()


def init_node(node_dir: str | Path, party: str, *, db_url: str | None = None,
              cli_dirs: Iterable[str | Path] = ()) -> Node:
    """Create a node in ``node_dir`` (see ``gsomia.shell.node.init_node``), now."""
    from datetime import UTC, datetime

    from gsomia.shell.node import init_node as _init

    return _init(node_dir, party, catalogue=catalogue(cli_dirs), now=datetime.now(UTC),
                 db_url=db_url)
