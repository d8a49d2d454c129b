"""The composition root: the only place that reads configuration and the environment.

``GSOMIA_AGREEMENTS``: extra agreement folders, separated by the OS path separator, added to
whatever ``--agreements`` names on the command line.
"""

from __future__ import annotations

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

    return _open(node_dir, catalogue=catalogue(cli_dirs))


def init_node(node_dir: str | Path, party: str, *, db_url: str | None = None,
              cli_dirs: Iterable[str | Path] = ()) -> Node:
    """Create a node in ``node_dir`` (see ``gsomia.shell.node.init_node``), now."""
    from datetime import UTC, datetime

    from gsomia.shell.node import init_node as _init

    return _init(node_dir, party, catalogue=catalogue(cli_dirs), now=datetime.now(UTC),
                 db_url=db_url)
