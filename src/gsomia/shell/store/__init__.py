"""The node's durable store: SQLAlchemy Core tables mapped by hand to the core's records.

One schema for SQLite (the embedded default, a file in the node folder) and PostgreSQL
(``postgresql+psycopg://…``), created and upgraded by the Alembic migrations shipped in
``gsomia/shell/migrations`` (run on ``node init`` and whenever a node is opened).

Durability. SQLite runs in WAL mode with ``synchronous=FULL``: every commit syncs the WAL
before it returns, so what the node acknowledged (an id printed, a receipt signed) survives
``kill -9`` and also a power cut. ``NORMAL`` would survive a killed process but may lose
the last commits on power loss, and a node that signed a receipt for an item it then lost
would be lying to its partner. Writers take the database lock when they begin
(``BEGIN IMMEDIATE``; on PostgreSQL an advisory lock of the node's schema, so several
processes of one node sign tree heads one at a time), because every write appends to the
one Merkle log and so must be serialised anyway.

Every write commits with its audit events and a tree head signed over the new log size; the
latest head is then also copied to ``tree-head.json`` in the node folder, so rolling the
database back to an earlier copy shows as a log shorter than a head it signed.

The package's modules, by role (private: the package re-exports what the rest of
gsomia uses, and tools/split_store.py made them from one store.py):

- ``_tables``: The node's tables (SQLAlchemy Core) and what ``audit verify`` checks of each.
- ``_engine``: The engine (durability and locking settings) and the schema's migrations.
- ``_signal``: The commit signal: how a commit wakes whoever waits for one, in any process.
- ``_mapping``: Mapping rows to the core's records and back, and bulk writes and lookups.
- ``_repository``: The ``Repository`` and ``Outbox`` ports over the unit of work's connection.
- ``_audit_log``: The ``AuditLog`` port: events queued, then written with a signed tree head.
- ``_reader``: The read side: the ``AuditReader`` port over a snapshot, and its checks.
- ``_unit_of_work``: The ``UnitOfWork`` port: one write transaction, committed with its log.
- ``_store``: The store: units of work, snapshots, and the tree head's copy beside it.
"""

from __future__ import annotations

from gsomia.core.custody import REGISTER_FIELDS
from gsomia.shell.store._engine import (
    MIGRATIONS,
    ConstraintViolated,
    StoreError,
    WriterBusy,
    current_revision,
    make_engine,
    mask_url,
    migrate,
    resolve_url,
    script_head,
)
from gsomia.shell.store._mapping import insert_many, revoked_token
from gsomia.shell.store._reader import SqlAuditReader, read_external_head
from gsomia.shell.store._repository import SqlRepository
from gsomia.shell.store._signal import (
    Changes,
    commit_datagram,
    commit_signal_address,
    listen_for_commits,
    on_queued,
    on_queueing,
    read_datagram,
    signal_commit,
)
from gsomia.shell.store._store import HEAD_FILE, Store, now_utc
from gsomia.shell.store._tables import (
    REGISTER_TABLES,
    TABLE_COVERAGE,
    UTCDateTime,
    audit_events,
    audit_state,
    custody,
    envelopes_seen,
    exchange_state,
    items,
    metadata,
    outbox,
    receipts,
    tree_heads,
    users,
)
from gsomia.shell.store._unit_of_work import SqlUnitOfWork

__all__ = [
    "HEAD_FILE",
    "MIGRATIONS",
    "REGISTER_FIELDS",
    "REGISTER_TABLES",
    "TABLE_COVERAGE",
    "Changes",
    "ConstraintViolated",
    "SqlAuditReader",
    "SqlRepository",
    "SqlUnitOfWork",
    "Store",
    "StoreError",
    "UTCDateTime",
    "WriterBusy",
    "audit_events",
    "audit_state",
    "commit_datagram",
    "commit_signal_address",
    "current_revision",
    "custody",
    "envelopes_seen",
    "exchange_state",
    "insert_many",
    "items",
    "listen_for_commits",
    "make_engine",
    "mask_url",
    "metadata",
    "migrate",
    "now_utc",
    "on_queued",
    "on_queueing",
    "outbox",
    "read_datagram",
    "read_external_head",
    "receipts",
    "resolve_url",
    "revoked_token",
    "script_head",
    "signal_commit",
    "tree_heads",
    "users",
]
