"""Databases for the store tests: SQLite files, and a real PostgreSQL server.

The PostgreSQL cluster is started once per test session by ``tools/pg-test-cluster.sh``
(which installs Debian's ``postgresql`` package if it is missing), on 127.0.0.1 and a free
port, and stopped at the end. It is never skipped: if it cannot start, the tests that need it
error with the script's output.
"""

from __future__ import annotations

import itertools
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gsomia.core.agreements import Catalogue
from gsomia.shell.node import Node, init_node
from pgdb import fresh_pg_database

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "pg-test-cluster.sh"


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's PostgreSQL cluster (its ``gsomia`` database)."""
    state = tmp_path_factory.mktemp("postgresql") / "cluster"
    started = subprocess.run([str(SCRIPT), "start", str(state)], capture_output=True,
                             text=True, timeout=900, check=False)
    if started.returncode != 0:
        raise RuntimeError("the PostgreSQL test cluster did not start "
                           f"(exit {started.returncode}):\n{started.stderr}{started.stdout}")
    url = started.stdout.strip().splitlines()[-1]
    try:
        yield url
    finally:
        subprocess.run([str(SCRIPT), "stop", str(state)], capture_output=True, timeout=120,
                       check=False)


@pytest.fixture
def pg_url(pg_cluster: str) -> str:
    """A fresh, empty PostgreSQL schema for one test."""
    return fresh_pg_database(pg_cluster)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both backends: a SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_pg_database(request.getfixturevalue("pg_cluster"))


# ---- nodes and STIX objects -----------------------------------------------------------------

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def indicator(n: int, *, modified: str = "2024-03-01T08:00:00.000Z",
              name: str | None = None) -> dict[str, Any]:
    """A valid STIX 2.1 indicator, distinct for each ``n``."""
    return {
        "type": "indicator", "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(int=n + 1, version=4)}",
        "created": "2024-03-01T08:00:00.000Z", "modified": modified,
        "name": name or f"TEL activity {n} at Sunan",
        "description": "Transporter-erector-launcher movement seen at the facility.",
        "pattern": f"[x-dprk-site:name = 'Sunan-{n}']", "pattern_type": "stix",
        "valid_from": "2024-03-01T08:00:00Z",
    }


@pytest.fixture
def node_factory(tmp_path: Path, shipped: Catalogue) -> Iterator[Callable[..., Node]]:
    """Create nodes (``factory(party, db_url=None)``); all are closed at the end."""
    made: list[Node] = []
    counter = itertools.count()

    def make(party: str, db_url: str | None = None, *, now: datetime = NOW) -> Node:
        node = init_node(tmp_path / f"{party.lower()}-{next(counter)}", party,
                         catalogue=shipped, now=now, db_url=db_url)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


@pytest.fixture
def now() -> datetime:
    """The instant the tests act at: 2024-03-01T09:00Z (the 2016 GSOMIA is in force)."""
    return NOW


@pytest.fixture
def make_indicator() -> Callable[..., dict[str, Any]]:
    """``make_indicator(n, modified=..., name=...)``: a valid STIX 2.1 indicator."""
    return indicator
