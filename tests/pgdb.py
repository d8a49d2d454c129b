"""Fresh PostgreSQL schemas on the test session's cluster, for fixtures and tests alike.

A module of its own, imported by name: a test that imported ``conftest`` got whichever
conftest Python had loaded under that name first.
"""

from __future__ import annotations

import uuid


def fresh_pg_database(cluster_url: str) -> str:
    """An empty schema of its own on the cluster, as a URL whose search_path selects it.

    A schema is created in milliseconds where CREATE DATABASE takes most of a second, and
    every unqualified table the store uses (Alembic's version table too) lands in it. The
    name is random, so that two importers can never be handed (and drop) the same schema.
    """
    import psycopg

    name = f"gsomia_t{uuid.uuid4().hex[:16]}"
    with psycopg.connect(cluster_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{cluster_url}?options=-csearch_path%3D{name}"
