"""The composition root: the only place that reads configuration and the environment.

``GSOMIA_AGREEMENTS``: extra agreement folders, separated by the OS path separator, added to
whatever ``--agreements`` names on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from gsomia.core.agreements import Catalogue
from gsomia.shell.catalogue import load_catalogue

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
