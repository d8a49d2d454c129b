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
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, Self, cast

import orjson
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gsomia.core.audit import (
    AuditEvent,
    AuditKind,
    AuditRecord,
    LogProblem,
    MerkleAccumulator,
    TreeHead,
    event_time,
    sign_tree_head,
    stored_details,
)
from gsomia.core.crypto import fingerprint
from gsomia.core.custody import (
    REGISTER_FIELDS as REGISTER_FIELDS,
)
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    CustodyRecord,
    Holding,
    IncidentReport,
    NodeUser,
    ReceiptRecord,
    Release,
    Revocation,
    StandingConsentRecord,
    StoredItem,
    record_bytes,
    stamp,
)
from gsomia.core.custody import (
    register_digest as register_digest,
)
from gsomia.core.errors import AuditUnavailable, MalformedInput
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import (
    DELIVERY,
    LEASE_S,
    DeliveryDue,
    DomainEvent,
    NoticeDue,
    Routing,
)
from gsomia.core.types import instant, iso
from gsomia.service.ports import LoggedHead

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SCANNER = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
HEAD_FILE = "tree-head.json"


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:
            value = instant(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None,
                             dialect: sa.Dialect) -> datetime | None:
        return None if value is None else instant(value)


def _id() -> sa.Column[int]:
    # SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid).
    return sa.Column("row", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                     primary_key=True, autoincrement=True)


metadata = sa.MetaData()

node_identity = sa.Table(
    "node_identity", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("party", sa.String(3), nullable=False),
    sa.Column("signing_key", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

items = sa.Table(
    "items", metadata, _id(),
    sa.Column("id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("label", sa.LargeBinary, nullable=False),
    sa.Column("binding", sa.LargeBinary, nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("id", "version", name="uq_items_id_version"),
    sa.Index("ix_items_added_at", "added_at"),
    sa.Index("ix_items_type", "type"),
    # Migration 0015: the outbox's scan watermark reads the items after a seq.
    sa.Index("ix_items_seq", "seq"),
)

custody = sa.Table(
    "custody", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("holder", sa.String(3), nullable=False),
    sa.Column("provider", sa.String(3), nullable=True),
    sa.Column("agreement", sa.String, nullable=True),
    sa.Column("original_label", sa.LargeBinary, nullable=False),
    sa.Column("national_label", sa.LargeBinary, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("envelope_digest", sa.LargeBinary, nullable=True),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_custody_item", "item_id", "version"),
)

users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("party", sa.String(3), nullable=False),
    sa.Column("clearance", sa.String, nullable=False),
    sa.Column("need_to_know", sa.Text, nullable=False),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # Migration 0011; the role is in the user's digest unless it is "reader".
    sa.Column("role", sa.String(16), nullable=False, server_default="reader"),
    sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
)

consents = sa.Table(
    "consents", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("recipient", sa.String(3), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_consents_item", "item_id"),
)

# Migration 0014: standing consents and their revocations, one row each, never changed.
standing_consents = sa.Table(
    "standing_consents", metadata, _id(),
    sa.Column("consent_id", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("recipient", sa.String(3), nullable=True),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_standing_consents_id", "consent_id"),
)

classification_notices = sa.Table(
    "classification_notices", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("old_level", sa.String, nullable=False),
    sa.Column("new_level", sa.String, nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_notices_item", "item_id"),
)

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("reference", sa.String, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("item_id", sa.String, nullable=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("reported_by", sa.String, nullable=False),
    sa.Column("notify", sa.String(3), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

revocations = sa.Table(
    "revocations", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column("by", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("token_hash", name="uq_revocations_token_hash"),
)

receipts = sa.Table(
    "receipts", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("peer", sa.String(3), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_receipts_item", "item_id", "version"),
    # A receipt is given or obtained once per (item, version, partner): the handlers check,
    # and the store refuses a second one should a path ever forget to.
    sa.Index("ux_receipts_once", "item_id", "version", "peer", "direction", unique=True),
)

# Storage order (``position``) is kept apart from ``seq`` so that rows moved around in the
# table read back out of order and are reported as reordered.
# The partial index's predicate, written the same in the queries that use it: SQLite uses
# a partial index only for a query whose WHERE holds the index's own terms.
_HEADS_ONLY = "kind IN ('tree-head-exchanged', 'partner-log-inconsistent')"
# The expressions of ix_audit_events_partner_size, written the same in its query.
_HEAD_PARTNER = "CASE WHEN json_valid(details) THEN json_extract(details, '$.partner') END"
_HEAD_SIZE = "CASE WHEN json_valid(details) THEN json_extract(details, '$.head.size') END"

audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("item_id", sa.String, nullable=True),
    sa.Column("item_version", sa.String, nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("seq", name="uq_audit_events_seq"),
    sa.Index("ix_audit_events_item", "item_id"),
    # Partners' heads only (migration 0016): the dashboard reads each partner's newest on
    # every poll, and without it each read scanned the log; a partial index costs the
    # other events' appends nothing.
    sa.Index("ix_audit_events_heads", "kind", "seq",
             sqlite_where=sa.text(_HEADS_ONLY), postgresql_where=sa.text(_HEADS_ONLY)),
    # And ix_audit_events_partner_size, each partner's heads by size (migration 0017, SQLite
    # only, not declared here: Alembic can neither compare an index of expressions nor
    # leave one out on PostgreSQL): the largest head a partner signed is asked for by the
    # partner at its start (held_head_of), and without it each answer read and parsed every
    # head in the log. Guarded by json_valid, so a row whose details are not JSON is left
    # out of it, never refused.
)

tree_heads = sa.Table(
    "tree_heads", metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("timestamp", sa.String(32), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
)

# The Merkle frontier (one hash per set bit of size) so appends never reread the log.
audit_state = sa.Table(
    "audit_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),
)

# The exchange (migration 0002; used by gsomia.shell.exchange): what the node owes its
# partners (one outbox, migration 0012), envelope nonces seen (replay), the outbox scan
# watermark, consent requests.
#
# The outbox holds deliveries (``kind`` "delivery": an item version owed to ``recipient``)
# and notices (``kind`` "incident" or "classification-notice": ``body`` posted, named by
# ``reference``), queued in the commit of the event that causes them and sent by one
# courier. Each row is one of two registers of the log, by kind: a delivery is an "outbox"
# record, a notice a "notices" record (the names the log has always used).
outbox = sa.Table(
    "outbox", metadata,
    _id(),
    sa.Column("item_id", sa.String, nullable=True),
    sa.Column("version", sa.String, nullable=True),
    sa.Column("recipient", sa.String(3), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False, server_default="delivery"),
    sa.Column("reference", sa.String, nullable=True),
    sa.Column("body", sa.Text, nullable=True),
    sa.UniqueConstraint("item_id", "version", "recipient", name="uq_outbox_delivery"),
    sa.UniqueConstraint("kind", "reference", "recipient", name="uq_outbox_notice"),
    sa.Index("ix_outbox_due", "status", "recipient", "next_at"),
)
envelopes_seen = sa.Table(
    "envelopes_seen", metadata,
    sa.Column("nonce", sa.String, primary_key=True),
    sa.Column("sender", sa.String(3), nullable=False),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=True),
)
exchange_state = sa.Table(
    "exchange_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("scanned_seq", sa.BigInteger, nullable=False),
)
consent_requests = sa.Table(
    "consent_requests", metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("holder", sa.String(3), nullable=False),
    sa.Column("recipient", sa.String(3), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
)

# Which table holds each register the log records rows of (the registers are the log's
# names; deliveries and notices share the outbox since migration 0012).
REGISTER_TABLES = {name: "outbox" if name == "notices" else name for name in REGISTER_FIELDS}

RECORD_TABLES = ("custody", "users", "consents", "classification_notices", "incidents",
                 "receipts", "revocations", "standing_consents")

# How ``audit verify`` answers for every table of the store (tests/unit check none is left
# out): "logged" rows carry their event's seq and digest; "log" is the log itself; the
# others are checked against the log as their entry says.
TABLE_COVERAGE: dict[str, str] = {
    "node_identity": "party and key checked against event 0 and the node's key",
    "items": "content hash, type, originator, time added bound by the storing event",
    "custody": "logged", "users": "logged", "consents": "logged",
    "classification_notices": "logged", "incidents": "logged", "receipts": "logged",
    "revocations": "logged", "standing_consents": "logged",
    "audit_events": "log", "tree_heads": "signatures and roots against the log",
    "audit_state": "frontier recomputed from the log",
    "outbox": "logged (deliveries and notices, each by its kind's register); a delivery "
              "delivered needs a receipt obtained, refused a logged refusal; a notice "
              "delivered or refused its logged outcome",
    "envelopes_seen": "logged (the replay register)",
    "exchange_state": "watermark equals the last one logged",
    "consent_requests": "logged (status is the operator's view only)",
    "alembic_version": "checked when the node opens (an unknown revision does not open)",
    # gsomia.shell.taxii_store, made on first use by the API: the answer to a TAXII POST,
    # kept for its poster to read again. Not a record of custody (the items and their
    # events are); its values' kinds are checked.
    "taxii_statuses": "kinds checked; the answer to a POST, not a record of custody",
}


# ---- engine and migrations ----------------------------------------------------------------


def resolve_url(url: str, folder: Path) -> str:
    """A relative SQLite path is taken relative to the node folder."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///"):]
        if rest and rest != ":memory:" and not os.path.isabs(rest):
            return "sqlite:///" + str((folder / rest).resolve())
    return url


# What the database raises when it refuses, is busy or is gone: the shell catches it by this
# name, and so never imports the database library itself.
StoreError = sa.exc.SQLAlchemyError
# A write the database refused on one of the schema's constraints: a unique key another
# commit stored first (two deliveries of one nonce racing), never a fault of the disk.
ConstraintViolated = sa.exc.IntegrityError


def mask_url(url: str) -> str:
    """The URL with any password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # shown to people only
        return url


def make_engine(url: str) -> sa.Engine:
    """An engine with the durability and locking settings described in the module docstring."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise MalformedInput(f"{url!r} is not a database URL", where="db",
                             expected="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB") \
            from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # The connection used last is handed out first: SQLite empties a connection's page
        # cache when another one has committed since its last read, and each commit of a
        # lone caller (a read's audit event, a publish) is then on the connection it reads
        # from next. Handed out in turns (the default), every read began cold.
        engine = sa.create_engine(url, connect_args={"timeout": 30}, pool_use_lifo=True)

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Transactions are begun by hand below, so the driver must not begin its own.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT * 1000)}")
            # A million items' indexes do not fit SQLite's 2 MB default page cache; every
            # insert then rereads index pages through the OS.
            cur.execute("PRAGMA cache_size=-65536")
            # Never a memory map of the file, whatever the build's default: the host's disk
            # is not trusted, and a file cut short under a mapping kills the whole process
            # by SIGBUS when a mapped page past its new end is touched (SQLite documents
            # it). Read by system calls, a short file is an I/O error SQLite reports.
            cur.execute("PRAGMA mmap_size=0")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            options = conn.get_execution_options()
            if options.get("gsomia_write", False):
                _begin_immediate(conn.connection.dbapi_connection,
                                 at_once=options.get("gsomia_at_once", False))
            else:
                _begin_deferred(conn.connection.dbapi_connection)

        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            raise MalformedInput(f"driver {parsed.get_driver_name()} is not supported",
                                 where="db", expected="postgresql+psycopg://…")
        if parsed.get_driver_name() == "":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False)
        return sa.create_engine(url, pool_pre_ping=True)
    raise MalformedInput(f"unsupported database {backend!r}", where="db",
                         expected="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")


LOCK_WAIT = 30.0


# ---- commit signal ------------------------------------------------------------------------
# A commit to a SQLite node database sends one datagram to an abstract Unix socket named
# after the database file (Linux; no file is made), so a process waiting for commits (the
# sender) wakes at once instead of polling. Nothing listens: the send fails, and is dropped.
# It is a hint only; the listener still reads the tables to know what changed.

_SIGNAL: dict[str, Any] = {}
# The couriers of a database running in this process (``exchange.Couriers``): a commit that
# queued outbox rows hands them its rows' recipients from the committing thread, so the
# links concerned wake at once, not through the commit signal's listener (a thread more to
# pass through, on a core the centre and the intake share). The signal still goes, for the
# couriers of other processes and as the check that no row is left.
_QUEUED: dict[str, Callable[[frozenset[str]], None]] = {}


def on_queued(engine: sa.Engine, woken: Callable[[frozenset[str]], None] | None) -> None:
    """Have ``woken`` called with the recipients of the rows each commit to ``engine``'s
    database in this process queued (None: no more)."""
    if woken is None:
        _QUEUED.pop(str(engine.url), None)
    else:
        _QUEUED[str(engine.url)] = woken
# On PostgreSQL the signal is a NOTIFY on this channel, sent with the commit itself.
COMMIT_CHANNEL = "gsomia_commit"


def commit_signal_address(engine: sa.Engine) -> str | None:
    """The abstract socket name for commits to ``engine``'s database (None: not SQLite on a
    file, or not Linux)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:") \
            or not sys.platform.startswith("linux"):
        return None
    import hashlib

    path = os.path.realpath(str(engine.url.database))
    return "\0gsomia-commit-" + hashlib.sha256(path.encode()).hexdigest()[:40]


def signal_commit(engine: sa.Engine, queued: Collection[str] | None = None,
                  *, told: bool = False) -> None:
    """Tell whoever listens for commits to ``engine``'s database that one happened, and
    what the listening couriers need of it: ``queued``, the recipients of the outbox rows
    it queued (empty: none; None: not said, the listener looks); ``told``, that the
    couriers of this process were handed them already (:func:`on_queued`). A listener
    woken for a named link needs no query to know whose it is."""
    address = _SIGNAL.get(str(engine.url))
    if address is None:
        address = _SIGNAL[str(engine.url)] = commit_signal_address(engine) or ""
    if not address:
        return
    sock = _SIGNAL.get("")
    try:
        if sock is None:
            import socket

            sock = _SIGNAL[""] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
        sock.sendto(commit_datagram(queued, told), address)
    except OSError:  # nobody listens, or its queue is full (it is awake then): no matter
        pass


class _Notifications:
    """PostgreSQL's commit signal: a connection of its own that LISTENs on the channel
    every writing commit NOTIFYs (:data:`COMMIT_CHANNEL`), so each of several senders, in
    any process, wakes at once instead of polling the tables."""

    def __init__(self, engine: sa.Engine) -> None:
        import psycopg

        url = engine.url.set(drivername="postgresql")
        self._conn = psycopg.connect(url.render_as_string(hide_password=False),
                                     autocommit=True)
        self._conn.execute(f"LISTEN {COMMIT_CHANNEL}")

    def fileno(self) -> int:
        return self._conn.fileno()

    def recv(self, _size: int) -> bytes:
        """Consume what arrived; b"" once nothing is left (as a drained socket)."""
        pg = self._conn.pgconn
        try:
            pg.consume_input()
            return b"n" if pg.notifies() is not None else b""
        except Exception:  # the connection broke: the sender still passes every tick
            return b""

    def close(self) -> None:
        self._conn.close()


def listen_for_commits(engine: sa.Engine) -> Any:
    """A socket receiving the commit signals of ``engine``'s database (see
    :func:`signal_commit`; ``exchange.Sender`` reads it); None if there can be none or
    another sender of this database already listens (this one then polls)."""
    import socket

    if engine.dialect.name == "postgresql":
        try:
            return _Notifications(engine)
        except Exception:  # the sender polls instead: slower to wake, never wrong
            return None
    address = commit_signal_address(engine)
    if address is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


class Changes:
    """Whether another connection has committed to the node's database since the last
    look: SQLite's ``PRAGMA data_version`` on a connection of its own (microseconds, no
    lock). On other databases it cannot tell: it says yes, unless ``notified`` (commits are
    then told by PostgreSQL's notifications, and the sender passes every tick anyway)."""

    def __init__(self, engine: sa.Engine, *, notified: bool = False) -> None:
        import sqlite3

        self._db: Any = None
        self._notified = notified
        self._last: int | None = None
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._db = sqlite3.connect(str(engine.url.database), isolation_level=None,
                                       check_same_thread=False)

    def __call__(self) -> bool:
        if self._db is None:
            return not self._notified
        try:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        except Exception:  # a locked or vanished file: look with a full pass
            return True
        changed = bool(version != self._last)
        self._last = int(version)
        return changed

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def commit_datagram(queued: Collection[str] | None, told: bool) -> bytes:
    """The commit signal's datagram: ``c`` (a commit), ``q!`` (its rows were handed to
    the couriers of the committing process), ``q:JPN,USA`` (it queued rows to these; ``q:``
    none). Read by :func:`read_datagram`."""
    if queued is None:
        return b"c"
    if told:
        return b"q!"
    return b"q:" + ",".join(sorted(queued)).encode("ascii", "replace")


def read_datagram(data: bytes) -> frozenset[str] | None:
    """The recipients a commit signal names (empty: no row for a courier of this process
    to take); None: a commit that says nothing of its rows (or a datagram not of this
    shape: whoever sent it, the listener then looks at the outbox itself)."""
    if data == b"q!":
        return frozenset()
    if not data.startswith(b"q:"):
        return None
    try:
        named = data[2:].decode("ascii")
    except UnicodeDecodeError:
        return None
    return frozenset(p for p in named.split(",") if p)


def _begin_deferred(dbapi_conn: Any) -> None:
    """``BEGIN`` of a read, on the driver's connection: through SQLAlchemy's statement path
    it cost a GET by id a fifth of its read transaction."""
    import sqlite3

    try:
        dbapi_conn.execute("BEGIN")
    except sqlite3.Error as exc:  # as a statement's failure surfaces elsewhere
        raise sa.exc.OperationalError("BEGIN", None, exc) from exc


class WriterBusy(sa.exc.OperationalError):
    """Another writer holds the database's write lock, and the unit of work was to take it
    at once or not at all (``Store.uow(at_once=True)``): nothing was read or written."""


def _begin_immediate(dbapi_conn: Any, timeout: float = LOCK_WAIT, *,
                     at_once: bool = False) -> None:
    """``BEGIN IMMEDIATE``, waiting for another writer in steps of at most 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries, so a writer
    that finds the lock taken for 3 ms waits 8, and one behind a 10 ms commit waits 18: at
    light load that sleep, not the work, made the delivery latency's tail. The lock and what
    it serialises are unchanged; only the waiting is finer. ``busy_timeout`` stays in force
    for every other statement (readers meeting a checkpoint)."""
    import sqlite3
    import time

    end = time.monotonic() + timeout
    pause = 0.0002
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if at_once and "locked" in str(exc):
                    raise WriterBusy("BEGIN IMMEDIATE", None, exc) from exc
                if "locked" not in str(exc) or time.monotonic() >= end:
                    # As a statement's failure surfaces elsewhere: wrapped by SQLAlchemy.
                    raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(pause)
            pause = min(0.002, pause * 1.5)
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT * 1000)}")


_REVISION = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*["\']([^"\']+)["\']', re.M)
_DOWN = re.compile(r'^down_revision\s*(?::[^=]*)?=\s*(?:["\']([^"\']+)["\']|None)', re.M)


def script_head() -> str:
    """The newest migration, read from the files (importing Alembic costs a second)."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text("utf-8")
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev:
            revisions[rev.group(1)] = down.group(1) if down else None
    heads = set(revisions) - {d for d in revisions.values() if d}
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration (a no-op, without Alembic, when it is)."""
    if current_revision(engine) == script_head():
        return
    from alembic import command
    from alembic.config import Config

    known = set(_REVISION.findall("\n".join(
        path.read_text("utf-8") for path in (MIGRATIONS / "versions").glob("*.py"))))
    found = current_revision(engine)
    if found is not None and found not in known:
        raise MalformedInput(f"the database's schema version {found!r} is not one of this "
                             "gsomia's", where=str(engine.url),
                             expected="a database made by gsomia node init "
                                      "(alembic_version untouched)")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                # Two processes opening a fresh database must not both create the schema.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72311)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except Exception as exc:  # alembic raises its own kinds, assertions among them
        # alembic's CommandError is a RuntimeError: an unknown or missing schema version
        # (alembic_version rewritten or deleted) must not open, nor crash, the node.
        raise MalformedInput(
            f"the database's schema version cannot be brought up to date: "
            f"{type(exc).__name__}: {str(exc)[:200]}", where=str(engine.url),
            expected="a database made by gsomia node init (alembic_version untouched)") \
            from None


# ---- mapping rows <-> records -------------------------------------------------------------


def _label(data: bytes) -> SecurityLabel:
    return SecurityLabel.from_stored(json.loads(data))


def _label_bytes(label: SecurityLabel) -> bytes:
    return record_bytes(label.to_json())


def _item(row: Any) -> StoredItem:
    return StoredItem(row.id, row.version, row.type, row.originator, bytes(row.content),
                      bytes(row.label), bytes(row.binding), row.added_at)


def _item_values(item: StoredItem, seq: int) -> dict[str, Any]:
    return {"id": item.item_id, "version": item.version, "type": item.stix_type,
            "originator": item.originator, "content": item.content, "label": item.label,
            "binding": item.binding, "added_at": item.added_at, "seq": seq}


def _custody(row: Any) -> CustodyRecord:
    return CustodyRecord(row.item_id, row.version, row.event, row.holder,
                         _label(row.original_label), _label(row.national_label), row.at,
                         row.provider, row.agreement,
                         None if row.envelope_digest is None else bytes(row.envelope_digest),
                         row.note)


def _custody_values(record: CustodyRecord, seq: int) -> dict[str, Any]:
    original, national = record.label_bytes()
    return {"item_id": record.item_id, "version": record.version, "event": record.event,
            "holder": record.holder, "provider": record.provider,
            "agreement": record.agreement, "original_label": original,
            "national_label": national, "at": record.at,
            "envelope_digest": record.envelope_digest, "note": record.note, "seq": seq}


def _user(row: Any) -> NodeUser:
    return NodeUser(row.name, row.party, row.clearance, frozenset(json.loads(row.need_to_know)),
                    bytes(row.token_hash), row.created_at, row.role)


def _consent(row: Any) -> ConsentRecord:
    return ConsentRecord(row.item_id, row.originator, row.recipient, row.direction,
                         json.loads(row.document), row.at)


def _standing(row: Any) -> StandingConsentRecord:
    return StandingConsentRecord(row.consent_id, row.originator, row.recipient, row.direction,
                                 row.kind, json.loads(row.document), row.at)


def _notice(row: Any) -> ClassificationNotice:
    return ClassificationNotice(row.item_id, row.originator, row.old_level, row.new_level,
                                row.issued_at, row.key, bytes(row.signature))


def _incident(row: Any) -> IncidentReport:
    return IncidentReport(row.reference, row.kind, row.item_id, row.description,
                          row.reported_by, row.notify, row.at)


def revoked_token(token_hash: Any) -> Any:
    """SQL: the token hash is in the register of revoked tokens."""
    return sa.exists().where(revocations.c.token_hash == token_hash)


def _revocation(row: Any) -> Revocation:
    return Revocation(row.name, bytes(row.token_hash), row.by, row.at)


def _receipt(row: Any) -> ReceiptRecord:
    return ReceiptRecord(row.item_id, row.version, row.peer, row.direction,
                         json.loads(row.document), row.at)


def _blob(value: Any) -> bytes:
    """A stored binary value as bytes, whatever a tamperer left in the column (text, a
    number, NULL): the verifier then reports the value, it never crashes on it."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return b"" if value is None else str(value).encode("utf-8")


def _int(value: Any, default: int = -1) -> int:
    return value if type(value) is int else default


def _head(row: Any) -> TreeHead:
    try:
        timestamp = instant(row.timestamp)
        # The signature covers the time as written (iso); another spelling of the same
        # instant would verify, so it counts as tampered too.
        if iso(timestamp) != row.timestamp:
            raise ValueError(row.timestamp)
    except (MalformedInput, TypeError, ValueError):
        # A tampered time must not stop the verifier: the head then fails its signature.
        timestamp = datetime(1970, 1, 1, tzinfo=UTC)
    return TreeHead(_int(row.size), _blob(row.root), timestamp, str(row.key),
                    _blob(row.signature))


def _version_key(version: str) -> tuple[int, datetime | str]:
    try:
        return (1, instant(version))
    except MalformedInput:
        return (0, version)


def _frontier(data: bytes) -> list[bytes]:
    return [bytes(data[i:i + 32]) for i in range(0, len(data), 32)]


_BULK: dict[tuple[str, str], tuple[str, tuple[str, ...], tuple[tuple[int, Any], ...]]] = {}


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` (column name -> value) into ``table`` in one statement.

    On SQLite this is the driver's ``executemany`` with each value bound by the column
    type's own SQLAlchemy processor (so the stored text and bytes are exactly what Core
    would store) but without Core's per-row parameter work, which cost more than the insert
    itself; elsewhere it is Core's executemany (batched by the dialect)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    key = (table.name, conn.dialect.name)
    found = _BULK.get(key)
    if found is None:
        quote = conn.dialect.identifier_preparer.quote
        names = tuple(c.name for c in table.columns
                      if not (c.primary_key and c.autoincrement is True))
        columns = [table.c[n] for n in names]
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
               f"VALUES ({', '.join('?' for _ in names)})")
        binds = ((i, c.type.bind_processor(conn.dialect)) for i, c in enumerate(columns))
        found = _BULK[key] = (sql, names, tuple((i, b) for i, b in binds if b is not None))
    sql, names, processors = found
    values = []
    last: dict[int, tuple[Any, Any]] = {}  # a batch's rows mostly share their instants
    for row in rows:
        value = [row[n] for n in names]
        for i, bind in processors:
            raw = value[i]
            # bytes go as they are: the driver stores them as the memoryview that
            # LargeBinary's processor would make of them (a copy per blob, five per item).
            if raw is not None and type(raw) is not bytes:
                seen = last.get(i)
                if seen is not None and seen[0] is raw:
                    value[i] = seen[1]
                else:
                    bound = bind(raw)
                    if type(bound) is datetime:
                        # Core's text for it (SQLAlchemy's SQLite DATETIME, microseconds
                        # always), once for the rows that share the instant: left to the
                        # driver, its adapter made it row by row, and without the fraction
                        # at a whole second, which then sorted before Core's same instant.
                        bound = bound.isoformat(" ", "microseconds")
                    value[i] = bound
                    last[i] = (raw, bound)
        values.append(tuple(value))
    conn.exec_driver_sql(sql, values)


def _to(recipient: str, or_not_to: Collection[str] | None) -> Any:
    """Outbox rows to ``recipient``, or also to anyone outside ``or_not_to`` if given."""
    if or_not_to is None:
        return outbox.c.recipient == recipient
    return sa.or_(outbox.c.recipient == recipient,
                  outbox.c.recipient.notin_(sorted(or_not_to)))


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def among(conn: sa.Connection, sql: str, values: Collection[str]) -> list[Sequence[Any]]:
    """Run ``sql``, in which ``:among`` stands for a set of ``values`` (``col IN :among``
    is written ``col = ANY(:among)`` on PostgreSQL, ``col IN (SELECT value FROM
    json_each(:among))`` on SQLite): one text parameter instead of an expanding list, which
    SQLAlchemy would compile anew for each length (a publish asks about 100 ids four times,
    and that compiling cost more than the lookups)."""
    key = (sql, conn.dialect.name)
    stmt = _AMONG.get(key)
    if stmt is None:
        if conn.dialect.name == "postgresql":
            text = re.sub(r"(\S+) IN :among", r"\1 = ANY(:among)", sql)
        else:
            text = sql.replace("IN :among", "IN (SELECT value FROM json_each(:among))")
        stmt = _AMONG[key] = sa.text(text)
    listed = sorted(set(values))
    if conn.dialect.name == "postgresql":
        return [tuple(row) for row in conn.execute(stmt, {"among": listed})]
    # The driver's own statement, in the connection's transaction: SQLAlchemy's statement
    # path cost five times the lookup of 100 ids (asked twice by every publish).
    if not conn.in_transaction():
        conn.begin()
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    rows: list[Sequence[Any]] = dbapi.execute(
        stmt.text, {"among": orjson.dumps(listed).decode()}).fetchall()
    return rows


_AMONG: dict[tuple[str, str], sa.TextClause] = {}


# ---- repository ---------------------------------------------------------------------------


class SqlRepository:
    """The ``Repository`` port over one connection (inside the unit of work's transaction)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.revoked = False

    # items and custody
    def add_item(self, item: StoredItem, *, seq: int) -> None:
        self.conn.execute(items.insert(), _item_values(item, seq))

    def add_items(self, batch: list[tuple[StoredItem, int]]) -> None:
        insert_many(self.conn, items, [_item_values(i, s) for i, s in batch])

    def get_item(self, item_id: str, version: str | None = None) -> StoredItem | None:
        if version is not None:
            row = self.conn.execute(items.select().where(
                items.c.id == item_id, items.c.version == version)).first()
            return None if row is None else _item(row)
        versions = self.item_versions(item_id)
        return versions[-1] if versions else None

    def item_versions(self, item_id: str) -> list[StoredItem]:
        rows = self.conn.execute(items.select().where(items.c.id == item_id)
                                 .order_by(items.c.row)).all()
        return sorted((_item(r) for r in rows), key=lambda i: _version_key(i.version))

    def held_versions(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        wanted = set(keys)
        return {(row[0], row[1]) for row in among(
            self.conn, "SELECT id, version FROM items WHERE id IN :among",
            {k[0] for k in wanted}) if (row[0], row[1]) in wanted}

    def versions_held(self, item_ids: list[str]) -> set[tuple[str, str]]:
        return {(row[0], row[1]) for row in among(
            self.conn, "SELECT id, version FROM items WHERE id IN :among", item_ids)}

    def current_labels(self, item_ids: list[str]) -> dict[str, list[SecurityLabel]]:
        latest: dict[tuple[str, str], bytes] = {}
        for row in among(self.conn, 'SELECT item_id, version, national_label FROM custody '
                         'WHERE item_id IN :among ORDER BY "row"', item_ids):
            latest[(row[0], row[1])] = bytes(row[2])
        out: dict[str, list[SecurityLabel]] = {}
        for (item_id, _), label in latest.items():
            out.setdefault(item_id, []).append(_label(label))
        return out

    def current_contents(self, item_ids: list[str]) -> dict[str, bytes]:
        newest: dict[str, tuple[tuple[int, datetime | str], bytes]] = {}
        for row in among(self.conn, "SELECT id, version, content FROM items WHERE id IN :among",
                         item_ids):
            key = _version_key(row[1])
            if row[0] not in newest or key > newest[row[0]][0]:
                newest[row[0]] = (key, bytes(row[2]))
        return {item_id: content for item_id, (_, content) in newest.items()}

    def add_custody(self, record: CustodyRecord, *, seq: int) -> None:
        self.conn.execute(custody.insert(), _custody_values(record, seq))

    def add_custody_many(self, batch: list[tuple[CustodyRecord, int]]) -> None:
        insert_many(self.conn, custody, [_custody_values(r, s) for r, s in batch])

    def custody_of(self, item_id: str, version: str) -> list[CustodyRecord]:
        rows = self.conn.execute(custody.select().where(
            custody.c.item_id == item_id, custody.c.version == version)
            .order_by(custody.c.row)).all()
        return [_custody(r) for r in rows]

    def count_items(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(items)).scalar()
                   or 0)

    def count_users(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(users)).scalar()
                   or 0)

    def newest_item_seq(self) -> int:
        """The seq of the event that stored the newest item (0 when none is held)."""
        return int(self.conn.execute(sa.select(sa.func.max(items.c.seq))).scalar() or 0)

    def items_stored_after(self, seq: int, *, originator: str,
                           stix_type: str) -> list[tuple[str, bytes]]:
        """(id, stored content) of the items of ``stix_type`` from ``originator`` stored by
        events after ``seq``, in the order stored."""
        c = items.c
        return [(str(row.id), bytes(row.content)) for row in self.conn.execute(
            sa.select(c.id, c.content).where(c.seq > seq, c.originator == originator,
                                             c.type == stix_type).order_by(c.seq))]

    def holdings(self) -> list[Holding]:
        history: dict[tuple[str, str], list[CustodyRecord]] = {}
        for row in self.conn.execute(custody.select().order_by(custody.c.row)):
            history.setdefault((row.item_id, row.version), []).append(_custody(row))
        out = []
        for row in self.conn.execute(items.select().order_by(items.c.row)):
            item = _item(row)
            out.append(Holding(item, tuple(history.get((item.item_id, item.version), ()))))
        return out

    # registers
    def add_user(self, user: NodeUser, *, seq: int) -> None:
        self.conn.execute(users.insert(), {
            "name": user.name, "party": user.party, "clearance": user.clearance,
            "need_to_know": json.dumps(sorted(user.need_to_know)),
            "token_hash": user.token_hash, "created_at": user.created_at, "seq": seq,
            "role": user.role})

    def user_named(self, name: str) -> NodeUser | None:
        row = self.conn.execute(users.select().where(users.c.name == name)).first()
        return None if row is None else _user(row)

    def user_by_token(self, token_hash: bytes) -> NodeUser | None:
        """The user holding this token; None if nobody does or the token is revoked."""
        row = self.conn.execute(users.select().where(
            users.c.token_hash == token_hash, ~revoked_token(users.c.token_hash))).first()
        return None if row is None else _user(row)

    def users(self) -> list[NodeUser]:
        return [_user(r) for r in self.conn.execute(users.select().order_by(users.c.name))]

    def add_revocation(self, revocation: Revocation, *, seq: int) -> None:
        self.revoked = True  # the unit of work tells token caches once this commits
        self.conn.execute(revocations.insert(), {
            "name": revocation.name, "token_hash": revocation.token_hash,
            "by": revocation.by, "at": revocation.at, "seq": seq})

    def revoked_names(self) -> set[str]:
        return set(self.conn.execute(sa.select(revocations.c.name)).scalars())

    def add_consent(self, record: ConsentRecord, *, seq: int) -> None:
        self.conn.execute(consents.insert(), {
            "item_id": record.item_id, "originator": record.originator,
            "recipient": record.recipient, "direction": record.direction,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq})

    def consents_for(self, item_id: str) -> list[ConsentRecord]:
        return [_consent(r) for r in self.conn.execute(
            consents.select().where(consents.c.item_id == item_id).order_by(consents.c.row))]

    def add_standing_consent(self, record: StandingConsentRecord, *, seq: int) -> None:
        self.conn.execute(standing_consents.insert(), {
            "consent_id": record.consent_id, "originator": record.originator,
            "recipient": record.recipient, "direction": record.direction, "kind": record.kind,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq})

    def versions_from(self, originator: str) -> list[tuple[str, str]]:
        return [(r.id, r.version) for r in self.conn.execute(
            sa.select(items.c.id, items.c.version).where(items.c.originator == originator)
            .order_by(items.c.seq))]

    def standing_consents(self) -> list[StandingConsentRecord]:
        return [_standing(r) for r in self.conn.execute(
            standing_consents.select().order_by(standing_consents.c.row))]

    def standing_consents_named(self, consent_id: str) -> list[StandingConsentRecord]:
        t = standing_consents
        return [_standing(r) for r in self.conn.execute(
            t.select().where(t.c.consent_id == consent_id).order_by(t.c.row))]

    def add_notice(self, notice: ClassificationNotice, *, seq: int) -> None:
        self.conn.execute(classification_notices.insert(), {
            "item_id": notice.item_id, "originator": notice.originator,
            "old_level": notice.old_level, "new_level": notice.new_level,
            "issued_at": notice.issued_at, "key": notice.key, "signature": notice.signature,
            "seq": seq})

    def notices_for(self, item_id: str) -> list[ClassificationNotice]:
        t = classification_notices
        return [_notice(r) for r in self.conn.execute(
            t.select().where(t.c.item_id == item_id).order_by(t.c.row))]

    def notices_from(self, sender: str, since: datetime, originator: str | None = None) -> int:
        t, a = classification_notices, audit_events
        mine = [t.c.originator == originator] if originator is not None else []
        # An event's ``at`` is text with or without milliseconds, so text order holds to the
        # second only: the rows from ``since``'s second on are read and the rest compared
        # as instants.
        times = self.conn.execute(
            sa.select(a.c.at).select_from(t.join(a, a.c.seq == t.c.seq))
            .where(a.c.actor == sender, a.c.at >= event_time(since)[:19], *mine)).scalars()
        return sum(instant(at) > since for at in times)

    def add_incident(self, report: IncidentReport, *, seq: int) -> None:
        self.conn.execute(incidents.insert(), {
            "reference": report.reference, "kind": report.kind, "item_id": report.item_id,
            "description": report.description, "reported_by": report.reported_by,
            "notify": report.notify, "at": report.at, "seq": seq})

    def incidents(self) -> list[IncidentReport]:
        return [_incident(r) for r in self.conn.execute(
            incidents.select().order_by(incidents.c.seq))]

    def add_receipt(self, record: ReceiptRecord, *, seq: int) -> None:
        self.conn.execute(receipts.insert(), {
            "item_id": record.item_id, "version": record.version, "peer": record.peer,
            "direction": record.direction,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq})

    def add_receipts(self, batch: list[tuple[ReceiptRecord, int]]) -> None:
        # One statement for a batch: one insert per receipt is a tenth of a delivery's cost.
        insert_many(self.conn, receipts, [_receipt_values(r, s) for r, s in batch])

    def receipts_for(self, item_id: str) -> list[ReceiptRecord]:
        return [_receipt(r) for r in self.conn.execute(
            receipts.select().where(receipts.c.item_id == item_id).order_by(receipts.c.row))]

    def receipts_by_version(self, item_id: str | None = None
                            ) -> dict[tuple[str, str], list[ReceiptRecord]]:
        """Every receipt given or obtained (of one item, if named), per item version."""
        query = receipts.select().order_by(receipts.c.row)
        if item_id is not None:
            query = query.where(receipts.c.item_id == item_id)
        out: dict[tuple[str, str], list[ReceiptRecord]] = {}
        for row in self.conn.execute(query):
            out.setdefault((row.item_id, row.version), []).append(_receipt(row))
        return out

    def releases_by_version(self, item_id: str | None = None
                            ) -> dict[tuple[str, str], list[Release]]:
        """The deliveries the release policy queued for partners (the outbox), of one item
        if named, per item version, in the order queued."""
        query = outbox.select().where(outbox.c.kind == DELIVERY).order_by(outbox.c.row)
        if item_id is not None:
            query = query.where(outbox.c.item_id == item_id)
        out: dict[tuple[str, str], list[Release]] = {}
        for row in self.conn.execute(query):
            out.setdefault((row.item_id, row.version), []).append(
                Release(row.recipient, row.status, row.queued_at, row.delivered_at))
        return out

    def receipted(self, item_ids: Collection[str], peer: str,
                  direction: str) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for chunk in _chunks(sorted(set(item_ids))):
            found.update((r.item_id, r.version) for r in self.conn.execute(
                sa.select(receipts.c.item_id, receipts.c.version).where(
                    receipts.c.item_id.in_(chunk), receipts.c.peer == peer,
                    receipts.c.direction == direction)))
        return found

    def consents_of(self, item_ids: Collection[str]) -> dict[str, list[ConsentRecord]]:
        out: dict[str, list[ConsentRecord]] = {}
        for chunk in _chunks(sorted(set(item_ids))):
            for row in self.conn.execute(consents.select().where(consents.c.item_id.in_(chunk))
                                         .order_by(consents.c.row)):
                out.setdefault(row.item_id, []).append(_consent(row))
        return out

    # the exchange's registers
    def bound_versions(self, item_ids: Collection[str]
                       ) -> Iterator[tuple[str, str, bytes, bytes, bytes]]:
        for chunk in _chunks(sorted(set(item_ids))):
            yield from self.conn.execute(sa.select(items.c.id, items.c.version,
                                                   items.c.content, items.c.label,
                                                   items.c.binding)
                                         .where(items.c.id.in_(chunk)))

    def add_envelopes_seen(self, rows: Sequence[Any], *, seq: int) -> None:
        insert_many(self.conn, envelopes_seen, [{**r.row(), "seq": seq} for r in rows])

    def seen_nonces(self, nonces: Collection[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(nonces))):
            found.update(self.conn.execute(sa.select(envelopes_seen.c.nonce).where(
                envelopes_seen.c.nonce.in_(chunk))).scalars())
        return found

    def revoked_standing(self) -> set[tuple[str, str]]:
        t = standing_consents
        return {(r[0], r[1]) for r in self.conn.execute(
            sa.select(t.c.consent_id, t.c.originator).where(t.c.kind == "revoke"))}

    def add_consent_request(self, request: Any, *, seq: int) -> None:
        self.conn.execute(consent_requests.insert(), {**request.row(), "seq": seq})

    def pending_consent_requests(self, direction: str, *, holder: str | None = None,
                                 item_id: str | None = None) -> int:
        t = consent_requests
        query = sa.select(sa.func.count()).select_from(t).where(
            t.c.direction == direction, t.c.status == "pending")
        if holder is not None:
            query = query.where(t.c.holder == holder)
        if item_id is not None:
            query = query.where(t.c.item_id == item_id)
        return int(self.conn.execute(query).scalar_one())

    def pending_outgoing_request(self, item_id: str, recipient: str) -> str | None:
        t = consent_requests
        return self.conn.execute(
            sa.select(t.c.id).where(t.c.direction == "outgoing", t.c.status == "pending",
                                    t.c.item_id == item_id, t.c.recipient == recipient)
            .order_by(t.c.at).limit(1)).scalar()

    def answer_consent_requests(self, item_id: str, recipient: str | None, status: str,
                                at: datetime, *, request_id: str | None = None) -> None:
        t = consent_requests
        if request_id is not None:
            # Only a request still pending: the originator's answer may have come first.
            query = t.update().where(t.c.id == request_id, t.c.status == "pending")
        else:
            query = t.update().where(t.c.item_id == item_id, t.c.direction == "outgoing",
                                     t.c.status == "pending")
            if recipient is not None:
                query = query.where(t.c.recipient == recipient)
        self.conn.execute(query.values(status=status, decided_at=at))

    # What the operator, the dashboard, the warning centre and the scenarios read. The rows
    # are the driver's named tuples, not copied: these reads are polled (the dashboard's
    # mark every second, the centre's notes after every commit) and are as cheap as the SQL.
    def holdings_mark(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.conn.execute(_HOLDINGS_MARK).one())

    def contents_stored_after(self, seq: int, *, stix_type: str,
                              limit: int) -> list[tuple[int, str, bytes, datetime]]:
        c = items.c
        return _rows(self.conn.execute(
            sa.select(c.seq, c.originator, c.content, c.added_at)
            .where(c.seq > seq, c.type == stix_type)
            .order_by(c.seq).limit(limit)))

    def contents_held(self, stix_type: str) -> list[tuple[str, bytes, datetime]]:
        c = items.c
        return _rows(self.conn.execute(
            sa.select(c.originator, c.content, c.added_at).where(c.type == stix_type)
            .order_by(c.seq)))

    def added_from(self, originator: str) -> list[tuple[str, datetime]]:
        return _rows(self.conn.execute(
            sa.select(items.c.id, items.c.added_at).where(items.c.originator == originator)))

    def received_since(self, row: int) -> list[tuple[int, str, str | None, bytes]]:
        c = custody.c
        return _rows(self.conn.execute(
            sa.select(c.row, c.item_id, c.provider, c.original_label)
            .where(c.row > row, c.event == "received").order_by(c.row)))

    def incident_records(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(
            sa.select(incidents).order_by(incidents.c.seq))]

    def consent_request_count(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count())
                                     .select_from(consent_requests)).scalar() or 0)

    def consent_request_rows(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(
            sa.select(consent_requests).order_by(consent_requests.c.at))]

    def consent_request_row(self, request_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(sa.select(consent_requests)
                                .where(consent_requests.c.id == request_id)).first()
        return None if row is None else dict(row._mapping)

    def head_records(self, kinds: Collection[str],
                     limit: int | None = None) -> list[LoggedHead]:
        t = audit_events
        query = (sa.select(t.c.seq, t.c.kind, t.c.at, t.c.details)
                 .where(t.c.kind.in_(kinds)).order_by(t.c.seq.desc()))
        if limit is not None:
            query = query.limit(limit)
        return _rows(self.conn.execute(query))

    def newest_of(self, kinds: Collection[str], limit: int) -> list[tuple[str, str, str, Any]]:
        """(kind, at, actor, details) of the newest ``limit`` events of ``kinds``."""
        t = audit_events
        return _rows(self.conn.execute(
            sa.select(t.c.kind, t.c.at, t.c.actor, t.c.details)
            .where(t.c.kind.in_(kinds)).order_by(t.c.seq.desc()).limit(limit)))

    def newest_head_after(self, after: int) -> int | None:
        return self.conn.execute(_NEWEST_HEAD, {"after": after}).scalar()

    def partner_head_records(self, partner: str, after: int = 0) -> list[LoggedHead]:
        if not partner.isalnum():
            return []  # a party code: nothing a LIKE pattern would read as a wildcard
        # Canonical JSON (RFC 8785): no spaces, and a quote inside a string is escaped, so
        # the pattern matches the event's own member only (the caller checks it parsed).
        named = f'%"partner":"{partner}"%'

        def newest(kind: AuditKind, also: str = "%", limit: int = 1) -> list[Any]:
            return _rows(self.conn.execute(_PARTNER_HEADS, {
                "kind": kind.value, "after": after, "named": named, "also": also,
                "limit": limit}))

        inconsistent = newest(AuditKind.PARTNER_LOG_INCONSISTENT, limit=2 ** 62)
        exchanged = newest(AuditKind.TREE_HEAD_EXCHANGED)
        checked = [] if inconsistent else newest(AuditKind.TREE_HEAD_EXCHANGED,
                                                 '%"consistent":true%')
        rows = {r.seq: r for r in (*inconsistent, *exchanged, *checked)}
        return [rows[seq] for seq in sorted(rows, reverse=True)]

    def partner_heads_by_size(self, partner: str) -> Iterator[tuple[Any, LoggedHead]]:
        if self.conn.dialect.name == "sqlite":
            for row in self.conn.execute(_HEADS_BY_SIZE, {"partner": partner}):
                yield row.size, row
            return
        # Elsewhere without an index of its own: the partner's records (the partial index
        # and a pattern), sorted here as SQLite's index sorts them.
        rows = self._partner_rows(partner) if partner.isalnum() else \
            self.head_records(_HEAD_KINDS)
        keyed = [(_recorded_head_size(r.details), r) for r in rows]
        keyed.sort(key=lambda k: (k[0] is not None, k[0] or 0, k[1].seq), reverse=True)
        yield from keyed

    def partner_heads_newest(self, partner: str, kind: AuditKind,
                             also: str = "%") -> Iterator[LoggedHead]:
        if not partner.isalnum():
            yield from (r for r in self.head_records((kind.value,)))
            return
        yield from self.conn.execute(_PARTNER_HEADS_ALL, {
            "kind": kind.value, "after": 0, "named": f'%"partner":"{partner}"%',
            "also": also})

    def _partner_rows(self, partner: str) -> list[LoggedHead]:
        return _rows(self.conn.execute(
            sa.text(f"SELECT seq, kind, at, details FROM audit_events WHERE {_HEADS_ONLY} "
                    "AND details LIKE :named ORDER BY seq DESC"),
            {"named": f'%"partner":"{partner}"%'}))

    def newest_events(self, limit: int) -> list[tuple[int, str]]:
        t = audit_events
        return _rows(self.conn.execute(
            sa.select(t.c.seq, t.c.kind).order_by(t.c.seq.desc()).limit(limit)))

    # the outbox, as the operator reads it
    def queued_recipients(self, kind: str, reference: str) -> list[str]:
        return list(self.conn.execute(sa.select(outbox.c.recipient).where(
            outbox.c.kind == kind, outbox.c.reference == reference)
            .order_by(outbox.c.row)).scalars())

    def notice_rows(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(
            sa.select(*[c for c in outbox.c if c.name != "version"])
            .where(outbox.c.kind != DELIVERY).order_by(outbox.c.row))]

    def notices_in(self, status: str) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.kind != DELIVERY, outbox.c.status == status)).scalar() or 0)

    def held_back(self) -> list[tuple[str, str, int, int]]:
        return _rows(self.conn.execute(
            sa.select(outbox.c.recipient, outbox.c.kind, sa.func.count(),
                      sa.func.max(outbox.c.attempts))
            .where(outbox.c.status == "pending", outbox.c.last_error.like("HTTP 429%"))
            .group_by(outbox.c.recipient, outbox.c.kind)
            .order_by(outbox.c.recipient, outbox.c.kind)))

    def deliveries_by_status(self) -> dict[str, int]:
        return {str(status): int(n) for status, n in self.conn.execute(
            sa.select(outbox.c.status, sa.func.count())
            .where(outbox.c.kind == DELIVERY).group_by(outbox.c.status))}

    def deliveries_refused(self, limit: int) -> list[tuple[str, str, str | None]]:
        return _rows(self.conn.execute(
            sa.select(outbox.c.item_id, outbox.c.recipient, outbox.c.last_error)
            .where(outbox.c.kind == DELIVERY, outbox.c.status == "refused")
            .order_by(outbox.c.row.desc()).limit(limit)))

    def delivered(self) -> list[tuple[str, str, datetime | None]]:
        return _rows(self.conn.execute(
            sa.select(outbox.c.item_id, outbox.c.recipient, outbox.c.delivered_at)
            .where(outbox.c.status == "delivered")))

    def deliveries_pending(self, recipient: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.kind == DELIVERY, outbox.c.status == "pending")
        if recipient is not None:
            query = query.where(outbox.c.recipient == recipient)
        return int(self.conn.execute(query).scalar() or 0)

    def delivery_rows(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(
            sa.select(*[c for c in outbox.c if c.name not in _NOTICE_ONLY])
            .where(outbox.c.kind == DELIVERY).order_by(outbox.c.row))]

    def stored_since_scan(self) -> bool:
        mark = self.conn.execute(sa.select(exchange_state.c.scanned_seq)
                                 .where(exchange_state.c.id == 1)).scalar()
        newest = self.conn.execute(sa.select(sa.func.max(items.c.seq))).scalar()
        return newest is not None and (mark is None or newest > mark)


# The columns of the outbox only its notices fill: a delivery's row is shown without them.
_NOTICE_ONLY = ("kind", "reference", "body")
# Polled (the dashboard's state): built once, not on every call.
_HOLDINGS_MARK = sa.text(
    'SELECT (SELECT count(*) FROM items), (SELECT coalesce(max("row"), 0) FROM custody),'
    ' (SELECT count(*) FROM receipts), (SELECT count(*) FROM tree_heads)')
# Built once (the dashboard asks on every poll); with the partial index's own predicate.
_PARTNER_HEADS = sa.text(
    f"SELECT seq, kind, at, details FROM audit_events WHERE {_HEADS_ONLY} AND kind = :kind "
    "AND seq > :after AND details LIKE :named AND details LIKE :also "
    "ORDER BY seq DESC LIMIT :limit")
_PARTNER_HEADS_ALL = sa.text(
    f"SELECT seq, kind, at, details FROM audit_events WHERE {_HEADS_ONLY} AND kind = :kind "
    "AND seq > :after AND details LIKE :named AND details LIKE :also ORDER BY seq DESC")
# One partner's head records, largest head first (newest first among equals), by
# ix_audit_events_partner_size; a size that is not a JSON number sorts as SQLite sorts it.
_HEADS_BY_SIZE = sa.text(
    f"SELECT seq, kind, at, details, {_HEAD_SIZE} AS size FROM audit_events "
    f"WHERE {_HEADS_ONLY} AND {_HEAD_PARTNER} = :partner ORDER BY {_HEAD_SIZE} DESC, seq DESC")
_HEAD_KINDS = ("tree-head-exchanged", "partner-log-inconsistent")


def _recorded_head_size(details: str) -> int | None:
    """The head's size a record names, if a whole number (as the caller's check wants)."""
    try:
        size = json.loads(details)["head"]["size"]
    except (ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


_NEWEST_HEAD = sa.text(
    f"SELECT seq FROM audit_events WHERE {_HEADS_ONLY} AND seq > :after "
    "ORDER BY seq DESC LIMIT 1")


def _rows(result: sa.Result[Any]) -> list[Any]:
    """The rows of ``result`` as the driver gave them: named tuples, typed by the caller."""
    return cast("list[Any]", result.all())


def _receipt_values(record: ReceiptRecord, seq: int) -> dict[str, Any]:
    return {"item_id": record.item_id, "version": record.version, "peer": record.peer,
            "direction": record.direction,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq}


class SqlOutbox:
    """The ``Outbox`` port over the ``outbox`` table (deliveries and notices), in the unit
    of work's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.queued_to: set[str] = set()  # recipients of the rows this transaction added

    def queued_deliveries(self, keys: Collection[tuple[str, str, str]]
                          ) -> set[tuple[str, str, str]]:
        wanted = set(keys)
        held: set[tuple[str, str, str]] = set()
        for chunk in _chunks(sorted({k[0] for k in wanted})):
            held.update(k for k in ((r.item_id, r.version, r.recipient) for r in self.conn.execute(
                sa.select(outbox.c.item_id, outbox.c.version, outbox.c.recipient)
                .where(outbox.c.kind == DELIVERY, outbox.c.item_id.in_(chunk))))
                if k in wanted)
        return held

    def add_deliveries(self, rows: Sequence[DeliveryDue], *, now: datetime, seq: int) -> None:
        self.queued_to.update(d.recipient for d in rows)
        insert_many(self.conn, outbox, [
            {"kind": DELIVERY, "item_id": d.item_id, "version": d.version,
             "recipient": d.recipient, "reference": None, "body": None, "status": "pending",
             "attempts": 0, "next_at": now, "queued_at": now, "delivered_at": None,
             "last_error": None, "seq": seq} for d in rows])

    def queued_notices(self, keys: Collection[tuple[str, str, str]]
                       ) -> set[tuple[str, str, str]]:
        wanted = set(keys)
        if not wanted:
            return set()
        return {k for k in ((r.kind, r.reference, r.recipient) for r in self.conn.execute(
            sa.select(outbox.c.kind, outbox.c.reference, outbox.c.recipient)
            .where(outbox.c.reference.in_(sorted({k[1] for k in wanted}))))) if k in wanted}

    def add_notices(self, rows: Sequence[NoticeDue], *, now: datetime, seq: int) -> None:
        self.queued_to.update(n.recipient for n in rows)
        insert_many(self.conn, outbox, [
            {"kind": n.kind, "recipient": n.recipient, "reference": n.reference,
             "item_id": n.item_id, "version": None, "body": n.body, "status": "pending",
             "attempts": 0, "next_at": now, "queued_at": now, "delivered_at": None,
             "last_error": None, "seq": seq} for n in rows])

    def _mark(self) -> int | None:
        found = self.conn.execute(sa.select(exchange_state.c.scanned_seq)
                                  .where(exchange_state.c.id == 1)).scalar()
        return None if found is None else int(found)

    def advance_scan(self, added: int) -> int | None:
        mark = self._mark()
        if mark is None:
            # No watermark yet: a node's first scan found its store empty and set none. Set
            # it now if this commit's items are all the store holds (each is queued in this
            # commit), else the first restart re-plans every item ever stored, two reads
            # each (1.2 s of CPU per 2,000 items). Other than ``added`` items: left to the scan.
            if added <= 0:
                return None
            nth = sa.select(items.c.seq).order_by(items.c.seq).limit(1)
            if self.conn.execute(nth.offset(added - 1)).first() is None or \
                    self.conn.execute(nth.offset(added)).first() is not None:
                return None
            newest = self.conn.execute(sa.select(sa.func.max(items.c.seq))).scalar()
            if newest is None:
                return None
            self.conn.execute(exchange_state.insert(), {"id": 1, "scanned_seq": int(newest)})
            return int(newest)
        newer = self.conn.execute(sa.select(sa.func.count(), sa.func.max(items.c.seq))
                                  .where(items.c.seq > mark)).one()
        if newer[0] == added and newer[1] is not None:
            self.set_scan_mark(int(newer[1]))
            return int(newer[1])
        return None

    def unscanned(self) -> list[tuple[str, str, int]]:
        mark = self._mark()
        if mark is None:
            self.conn.execute(exchange_state.insert(), {"id": 1, "scanned_seq": -1})
            mark = -1
        return [(r.id, r.version, int(r.seq)) for r in self.conn.execute(
            sa.select(items.c.id, items.c.version, items.c.seq)
            .where(items.c.seq > mark).order_by(items.c.seq))]

    def set_scan_mark(self, seq: int) -> None:
        self.conn.execute(exchange_state.update().where(exchange_state.c.id == 1)
                          .values(scanned_seq=seq))

    def still_pending(self, rows: Collection[int]) -> set[int]:
        found: set[int] = set()
        for chunk in _chunks(sorted(set(rows))):
            found.update(self.conn.execute(sa.select(outbox.c.row).where(
                outbox.c.row.in_(chunk), outbox.c.status == "pending")).scalars())
        return found

    def mark_delivered(self, rows: Sequence[tuple[int, int]], at: datetime) -> None:
        if rows:
            self.conn.execute(outbox.update().where(outbox.c.row == sa.bindparam("r"))
                              .values(status="delivered", delivered_at=at,
                                      attempts=sa.bindparam("n")),
                              [{"r": r, "n": n} for r, n in rows])

    def mark_refused(self, rows: Sequence[tuple[int, int, str]]) -> None:
        if rows:
            self.conn.execute(outbox.update().where(outbox.c.row == sa.bindparam("r"))
                              .values(status="refused", last_error=sa.bindparam("e"),
                                      attempts=sa.bindparam("n")),
                              [{"r": r, "n": n, "e": e} for r, n, e in rows])

    def retry_deliveries(self, rows: Sequence[tuple[int, int, datetime, str]]) -> None:
        for row, attempts, next_at, error in rows:
            self.conn.execute(outbox.update().where(outbox.c.row == row,
                                                    outbox.c.status == "pending")
                              .values(attempts=attempts, next_at=next_at, last_error=error))

    def update_notices(self, rows: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        for key, values in rows:
            self.conn.execute(outbox.update().where(outbox.c.row == key,
                                                    outbox.c.kind != DELIVERY)
                              .values(**values))


# ---- audit log ----------------------------------------------------------------------------


def _event_values(record: AuditRecord) -> dict[str, Any]:
    e = record.event
    # The details column holds their RFC 8785 text: the very bytes inside the leaf (and a
    # sealed batch's entries beside them, which the leaf commits to by their root).
    return {"seq": e.seq, "kind": e.kind.value, "at": event_time(e.at), "actor": e.actor,
            "item_id": e.item_id, "item_version": e.item_version,
            "content_hash": e.content_hash, "details": stored_details(e),
            "leaf_hash": record.leaf_hash}




_KEY_IDS: dict[int, tuple[Ed25519PrivateKey, str]] = {}


def _key_id(key: Ed25519PrivateKey) -> str:
    """The fingerprint of the store's signing key, derived once per key object (kept with
    the object itself, so a recycled ``id`` cannot return another key's)."""
    found = _KEY_IDS.get(id(key))
    if found is None or found[0] is not key:
        found = _KEY_IDS[id(key)] = (key, fingerprint(key))
    return found[1]


# pg_advisory_xact_lock(class, object): the class is gsomia's log writer, the object the
# node's schema (nodes sharing one PostgreSQL database in schemas of their own do not wait
# for each other).
_WRITER_LOCK = sa.text("SELECT pg_advisory_xact_lock(72312, hashtext(current_schema()))")
_STATE = sa.select(audit_state.c.size, audit_state.c.frontier).where(audit_state.c.id == 1)
_STATE_LOCKED = _STATE.with_for_update()
_STATE_UPDATE = audit_state.update().where(audit_state.c.id == 1)
_READS = frozenset({AuditKind.ACCESS_GRANTED, AuditKind.ACCESS_DENIED})


class SqlAuditLog:
    """The ``AuditLog`` port: queues events with their seq; written with the tree head on
    commit by :meth:`flush`."""

    def __init__(self, conn: sa.Connection, signer: Ed25519PrivateKey | None) -> None:
        self.conn = conn
        self.signer = signer
        self._acc: MerkleAccumulator | None = None
        self._pending: list[AuditRecord] = []
        self.reads_only = False  # whether the last flush held only access events
        self.first = False  # whether the last flush began the log

    def _state(self) -> MerkleAccumulator:
        if self._acc is None:
            # appenders queue on the row lock here (SQLite: BEGIN IMMEDIATE)
            query = _STATE_LOCKED if self.conn.dialect.name == "postgresql" else _STATE
            row = self.conn.execute(query).first()
            self._acc = MerkleAccumulator() if row is None else MerkleAccumulator(
                int(row.size), _frontier(bytes(row.frontier)))
        return self._acc

    def append(self, kind: AuditKind, at: datetime, actor: str, *, item_id: str | None = None,
               item_version: str | None = None, content_hash: str | None = None,
               details: Mapping[str, Any] | None = None) -> AuditEvent:
        acc = self._state()
        event = AuditEvent(acc.size, kind, at, actor, item_id, item_version, content_hash,
                           dict(details or {}))
        record = AuditRecord.of(event)
        acc.append(record.leaf_hash)
        self._pending.append(record)
        return event

    @property
    def size(self) -> int:
        return self._state().size

    def head(self) -> TreeHead | None:
        row = self.conn.execute(tree_heads.select().order_by(tree_heads.c.size.desc())
                                .limit(1)).first()
        return None if row is None else _head(row)

    def flush(self) -> TreeHead | None:
        """Write the queued events, the frontier and a signed head; None if nothing queued."""
        if not self._pending:
            return None
        if self.signer is None:
            # Not the caller's input: the log cannot be written, so nothing may be read or
            # changed (the API answers 503, as for any other unwritable log).
            raise AuditUnavailable("the audit log cannot be written: this store was opened "
                                   "without the node's signing key")
        acc = self._state()
        insert_many(self.conn, audit_events, [_event_values(r) for r in self._pending])
        values = {"size": acc.size, "frontier": b"".join(acc.frontier)}
        if acc.size == len(self._pending):
            self.conn.execute(audit_state.insert(), {"id": 1, **values})
        else:
            self.conn.execute(_STATE_UPDATE, values)
        head = sign_tree_head(acc.size, acc.root(), self._pending[-1].event.at, self.signer,
                              key_id=_key_id(self.signer))
        insert_many(self.conn, tree_heads, [{
            "size": head.size, "root": head.root, "timestamp": head.to_json()["timestamp"],
            "key": head.key, "signature": head.signature}])
        self.reads_only = all(r.event.kind in _READS for r in self._pending)
        self.first = acc.size == len(self._pending)
        self._pending = []
        return head

    def discard(self) -> None:
        self._pending = []
        self._acc = None


# ---- unit of work -------------------------------------------------------------------------


class SqlUnitOfWork:
    """One transaction: records, audit events and the signed head commit together.

    ``synced=False`` (SQLite only; elsewhere it changes nothing): the commit returns once
    its pages are in the write-ahead log, before they are synced to disk
    (``synchronous=NORMAL`` for this transaction alone). Only for a commit that a power cut
    may lose without anyone having relied on it, and that the node redoes by itself: the
    partner's receipts settled (lost, the deliveries are pending again and go again; the
    partner holds the item and answers the new envelope with a receipt, recorded there
    once). A killed process loses nothing of it (the pages are in the operating system's
    hands); the next synced commit syncs it too (the log is one file, synced whole). Its
    signed head is not copied beside the database (the copy lags, as it may), and a head
    read through :meth:`SqlAuditReader.latest_head` is synced before it is handed to
    anyone (:func:`_sync_log`): no head leaves the node for a log a power cut could
    shorten."""

    repo: SqlRepository
    audit: SqlAuditLog
    outbox: SqlOutbox

    def __init__(self, store: Store, *, synced: bool = True, at_once: bool = False) -> None:
        self._store = store
        self._synced = synced
        self._at_once = at_once
        self._relaxed = False  # this transaction's connection runs synchronous=NORMAL
        self._conn: sa.Connection | None = None
        self._tx: sa.RootTransaction | None = None
        self.committed_head: TreeHead | None = None
        self.events: list[DomainEvent] = []
        self._routing: Routing | None = None

    @property
    def routing(self) -> Routing:
        if self._routing is None:
            if self._store.routing is None:
                raise MalformedInput("this store was opened without its node's routing",
                                     where="store", expected="a store opened by its node")
            self._routing = self._store.routing()  # read once per unit of work
        return self._routing

    def __enter__(self) -> Self:
        conn = self._store.engine.connect().execution_options(
            gsomia_write=True, gsomia_at_once=self._at_once)
        self._conn = conn
        if not self._synced and conn.dialect.name == "sqlite":
            try:
                _synchronous(conn, "NORMAL")
                self._relaxed = True
            except BaseException:
                self._restore_sync()
                raise
        try:
            self._tx = conn.begin()
        except BaseException:
            # The write lock not taken (another writer kept it, or ``at_once``): the
            # connection goes back to the pool synced, not left to the collector relaxed.
            try:
                self._restore_sync()
            finally:
                conn.close()
                self._conn = None
            raise
        if conn.dialect.name == "postgresql":
            # One writer at a time appends to the log and signs its head, whichever process
            # of the node it is (several API processes and senders may share the database):
            # a lock of this node's schema held to the end of the transaction, taken before
            # anything is read, so even the log's first commit has one writer.
            conn.execute(_WRITER_LOCK)
        self.repo = SqlRepository(conn)
        self.audit = SqlAuditLog(conn, self._store.signer)
        self.outbox = SqlOutbox(conn)
        self.events = []
        self._routing = None
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._conn is not None and self._conn.in_transaction():
                self._conn.rollback()
        finally:
            self._restore_sync()
            if self._conn is not None:
                self._conn.close()
            self._conn = self._tx = None
            self.events = []

    def _restore_sync(self) -> None:
        """The connection back to ``synchronous=FULL`` before it returns to the pool; one
        that cannot be is dropped, never handed to a commit that must be synced."""
        if not self._relaxed or self._conn is None:
            return
        try:
            _synchronous(self._conn, "FULL")
            self._relaxed = False
        except BaseException:
            self._conn.invalidate()
            self._relaxed = False
            raise

    def commit(self) -> None:
        assert self._conn is not None, "commit outside the block"
        if self.events:
            # Fail closed: what the events owe partners would be lost with them.
            raise RuntimeError("domain events left unplanned: commit through "
                               "gsomia.service.outbox.commit")
        head = self.audit.flush()
        if head is not None and not self.audit.reads_only and \
                self._conn.dialect.name == "postgresql":
            # Sent by the server at commit: the senders of every process of the node wake.
            self._conn.exec_driver_sql(f"NOTIFY {COMMIT_CHANNEL}")
        self._conn.commit()
        self._tx = None
        relaxed = self._relaxed and head is not None
        if relaxed and self.audit.first:
            # The log's first commit creates the head's copy beside the database, which
            # must not get ahead of what the disk holds: this one is synced now.
            _sync_log(self._conn)
            relaxed = False
        if self.repo.revoked:
            self._store.mark_revocations()
            self.repo.revoked = False
        queued_to, self.outbox.queued_to = self.outbox.queued_to, set()
        told = False
        if queued_to:
            woken = _QUEUED.get(str(self._store.engine.url))
            if woken is not None:
                with suppress(Exception):  # a wake-up missed: the signal names them
                    woken(frozenset(queued_to))
                    told = True
        if self._store._checkpointer is not None:
            self._store._checkpointer.committed()
        if head is not None:
            self.committed_head = head
            if not self.audit.reads_only:
                # What waits for this commit (the sender, the centre) needs the database
                # only: it goes on while the head's copy is written (that copy may lag).
                signal_commit(self._store.engine, queued_to, told=told)
            if relaxed:
                # A head over pages not yet synced is not copied: after a power cut the
                # copy would be ahead of the database, a rollback that never happened.
                self._store.hold_uncopied(head)
            else:
                self._store._synced_head.mark(head)
                self._store.write_external_head(head, sync=not self.audit.reads_only,
                                                create=self.audit.first)
        # Work after a commit (a denial recorded, then more) begins a new transaction on
        # first use, taking the write lock again only then.
        self.audit.discard()

    def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            self._conn.rollback()
        self._tx = None
        if getattr(self, "outbox", None) is not None:  # not before the block began
            self.outbox.queued_to.clear()
        self.audit.discard()
        self.events = []


# ---- read side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRecord:
    table: str
    where: str
    seq: int
    digest: str


class _ItemCursor:
    """Item records in the order the log first names them, read alongside the log.

    Items are stored under the log's write lock, so storage order is the order the log first
    names them: each lookup is usually the next row of one streaming query; anything else
    falls back to a point query.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._rows = iter(conn.execute(
            sa.select(items.c.id, items.c.version, items.c.content, items.c.label,
                      items.c.binding).order_by(items.c.row)
            .execution_options(yield_per=2000)))
        self._ahead: dict[tuple[str, str], bytes] = {}

    @staticmethod
    def _record(row: Any) -> bytes:
        return (b'{"binding":' + _blob(row.binding) + b',"label":' + _blob(row.label)
                + b',"object":' + _blob(row.content) + b"}")

    def __call__(self, item_id: str, version: str | None) -> bytes | None:
        key = (item_id, version or "")
        found = self._ahead.pop(key, None)
        if found is not None:
            return found
        for _ in range(64):
            row = next(self._rows, None)
            if row is None:
                break
            if (row.id, row.version) == key:
                return self._record(row)
            self._ahead[(row.id, row.version)] = self._record(row)
        query = sa.select(items.c.id, items.c.version, items.c.content, items.c.label,
                          items.c.binding).where(items.c.id == item_id)
        if version is not None:
            query = query.where(items.c.version == version)
        row = self.conn.execute(query.limit(1)).first()
        return None if row is None else self._record(row)


def _synchronous(conn: sa.Connection, level: str) -> None:
    """Set SQLite's ``synchronous`` of ``conn`` (outside a transaction: SQLite refuses it
    inside one)."""
    raw = conn.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the connection is closed")
    raw.execute(f"PRAGMA synchronous={level}")


class _SyncedHead:
    """The newest tree head this process knows the disk holds: of a commit it made synced,
    or read just before it synced the log. A head read again (the dashboard polled, the
    head exchange with nothing new) then needs no sync; any other (an unsynced commit of
    this process, or a commit of another one, which it cannot know was synced) is synced
    before it is handed out. Equal size and root: the same log, so the same pages."""

    def __init__(self) -> None:
        self._head: tuple[int, bytes] | None = None
        self._lock = threading.Lock()

    def holds(self, head: TreeHead) -> bool:
        return self._head == (head.size, head.root)

    def mark(self, head: TreeHead) -> None:
        with self._lock:
            if self._head is None or head.size >= self._head[0]:
                self._head = (head.size, head.root)


def _sync_log(conn: sa.Connection) -> None:
    """Sync SQLite's write-ahead log to disk: every commit made so far, by any process,
    synced or not, then survives a power cut (a sync of the file through any descriptor
    syncs all that was written to it). Nothing to do elsewhere, or without a log file (none:
    every commit is in the database file, synced by the checkpoint that emptied the log)."""
    if conn.dialect.name != "sqlite":
        return
    path = conn.engine.url.database
    if path in (None, "", ":memory:") or str(path).startswith("file:"):
        return
    try:
        fd = os.open(f"{path}-wal", os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SqlAuditReader:
    """The ``AuditReader`` port over one read transaction (a consistent snapshot)."""

    def __init__(self, conn: sa.Connection, head_file: Path | None,
                 external: TreeHead | MalformedInput | None = None,
                 synced: _SyncedHead | None = None) -> None:
        self.conn = conn
        self._synced = synced
        self.head_file_path = head_file
        self._external = external
        self._items: _ItemCursor | None = None
        # SQLite: rowids of audit_events whose values are of the wrong kind, as found by the
        # last complete pass of rows() (None: no complete pass yet).
        self._odd_events: list[int] | None = None

    def rows(self) -> Iterator[dict[str, Any]]:
        # The hot loop of `audit verify` (a million rows must take seconds): plain DBAPI
        # cursor, and the C JSON scanner without json.loads' wrapping.
        sqlite = self.conn.dialect.name == "sqlite"
        # On SQLite the same scan tells which rows hold values of the wrong kind (typeof,
        # evaluated per row in C): storage_problems() then need not read the largest table
        # a second time (a million events: about a tenth of `audit verify`).
        odd = (f"CASE WHEN {_sqlite_type_tests(self.conn, audit_events)} THEN position END"
               if sqlite else "NULL")
        sql = ("SELECT seq, kind, at, actor, item_id, item_version, content_hash, details, "
               f"leaf_hash, {odd} FROM audit_events ORDER BY position")
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        if not sqlite:
            cursor = raw.cursor(name="gsomia_audit_rows")  # server side: constant memory
            cursor.itersize = 20_000  # type: ignore[attr-defined]
        else:
            cursor = raw.cursor()
        scan = _SCANNER
        found: list[int] = []
        self._odd_events = None
        try:
            cursor.execute(sql)
            while True:
                batch = cursor.fetchmany(20_000)
                if not batch:
                    break
                for (seq, kind, at, actor, item_id, item_version, chash, details, leaf,
                     rowid) in batch:
                    if rowid is not None and len(found) < _TYPE_PROBLEMS_SHOWN:
                        found.append(rowid)
                    try:
                        parsed, end = scan(details, 0)
                        if end != len(details):
                            parsed = details
                    except (ValueError, TypeError, StopIteration):
                        parsed = details  # verify_log reports it as malformed, with its seq
                    if type(leaf) is not bytes:
                        # text or NULL where a hash belongs: compared as it is (no match)
                        leaf = bytes(leaf) if isinstance(leaf, bytearray | memoryview) \
                            else leaf
                    yield {"seq": seq, "kind": kind, "at": at, "actor": actor,
                           "item_id": item_id, "item_version": item_version,
                           "content_hash": chash, "details": parsed, "leaf_hash": leaf}
            self._odd_events = found
        finally:
            cursor.close()

    def event(self, seq: int) -> dict[str, Any] | None:
        t = audit_events
        row = self.conn.execute(t.select().where(t.c.seq == seq)).first()
        if row is None:
            return None
        return {"seq": row.seq, "kind": row.kind, "at": row.at, "actor": row.actor,
                "item_id": row.item_id, "item_version": row.item_version,
                "content_hash": row.content_hash, "details": json.loads(row.details),
                "leaf_hash": bytes(row.leaf_hash).hex()}

    def item_seq(self, item_id: str, version: str | None) -> tuple[int, str, str] | None:
        query = sa.select(items.c.seq, items.c.id, items.c.version).where(
            items.c.id == item_id)
        if version is not None:
            query = query.where(items.c.version == version)
        row = self.conn.execute(query.order_by(items.c.row.desc()).limit(1)).first()
        return None if row is None else (int(row.seq), row.id, row.version)

    def size(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(audit_events))
                   .scalar() or 0)

    def tree_heads(self, limit: int | None = None) -> list[TreeHead]:
        t = tree_heads
        if limit is None:
            return [_head(r) for r in self.conn.execute(t.select().order_by(t.c.size))]
        # A size that is not a number (rewritten behind the node's back) is reported by
        # storage_problems; the sample is of the heads that can be checked.
        sizes = [s for s in self.conn.execute(sa.select(t.c.size).order_by(t.c.size))
                 .scalars() if type(s) is int]
        if len(sizes) > limit:
            step = (len(sizes) - 1) / (limit - 1)
            sizes = [sizes[round(i * step)] for i in range(limit)]
        picked: list[TreeHead] = []
        for chunk in _chunks(sorted(set(sizes))):
            picked.extend(_head(r) for r in self.conn.execute(t.select().where(
                t.c.size.in_(chunk))))
        return sorted(picked, key=lambda h: h.size)

    def tree_head(self, size: int) -> TreeHead | None:
        row = self.conn.execute(tree_heads.select().where(tree_heads.c.size == size)).first()
        return None if row is None else _head(row)

    def head_sizes(self) -> list[int]:
        return [int(s) for s in self.conn.execute(
            sa.select(tree_heads.c.size).order_by(tree_heads.c.size)).scalars()]

    def latest_head(self) -> TreeHead | None:
        row = self.conn.execute(tree_heads.select().order_by(tree_heads.c.size.desc())
                                .limit(1)).first()
        if row is None:
            return None
        # It may be the head of a commit not yet synced (SqlUnitOfWork, synced=False), of
        # this process or another: it is on disk before anyone (a partner, an auditor) gets
        # it. One this process knows is there already needs no sync (each costs a disk
        # flush, and the dashboard polls).
        head = _head(row)
        if self._synced is None or not self._synced.holds(head):
            _sync_log(self.conn)
            if self._synced is not None:
                self._synced.mark(head)
        return head

    def external_head(self) -> TreeHead | None:
        """The head kept outside, as read just before this snapshot began."""
        if isinstance(self._external, MalformedInput):
            raise self._external
        return self._external

    def accumulator(self) -> MerkleAccumulator | None:
        row = self.conn.execute(sa.select(audit_state.c.size, audit_state.c.frontier)
                                .where(audit_state.c.id == 1)).first()
        if row is None:
            return None
        try:
            return MerkleAccumulator(_int(row.size, 0), _frontier(_blob(row.frontier)))
        except MalformedInput:
            return MerkleAccumulator(0, ())  # unusable: shows as a frontier mismatch

    def item_record(self, item_id: str, version: str | None) -> bytes | None:
        if self._items is None:
            self._items = _ItemCursor(self.conn)
        return self._items(item_id, version)

    def stored_items(self) -> Iterator[tuple[str, str | None]]:
        result = self.conn.execute(
            sa.select(items.c.id, items.c.version).execution_options(yield_per=5000))
        yield from ((r[0], r[1]) for r in result)

    def _raw(self, table: sa.Table, *columns: sa.Column[Any]) -> Iterator[Any]:
        """Rows with their times as stored (parsed here, tolerantly): a tampered time must
        be reported, not crash the verifier inside the driver."""
        cols = columns or tuple(table.c)
        select = sa.select(*[sa.type_coerce(c, sa.String).label(c.name)
                             if isinstance(c.type, UTCDateTime) else c for c in cols])
        times = [c.name for c in cols if isinstance(c.type, UTCDateTime)]
        for row in self.conn.execute(select.execution_options(yield_per=2000)):
            values = dict(row._mapping)
            for name in times:
                values[name] = _tolerant_time(values[name])
            yield SimpleNamespace(**values)

    def item_meta(self) -> Iterator[tuple[str, str, str, str, str, int]]:
        for r in self._raw(items, items.c.id, items.c.version, items.c.type,
                           items.c.originator, items.c.added_at, items.c.seq):
            added = stamp(r.added_at) if isinstance(r.added_at, datetime) else r.added_at
            yield r.id, r.version, r.type, r.originator, added, _int(r.seq)

    def record_rows(self) -> Iterator[StoredRecord]:
        def each(table: sa.Table, make: Any, where: Any) -> Iterator[StoredRecord]:
            for row in self._raw(table):
                try:
                    digest = make(row).digest()
                except (MalformedInput, ValueError, KeyError, TypeError,
                        AttributeError) as exc:
                    digest = f"unreadable: {exc}"
                yield StoredRecord(table.name, where(row), _int(row.seq), digest)

        yield from each(custody, _custody, lambda r: f"{r.item_id}@{r.version} #{r.row}")
        yield from each(users, _user, lambda r: f"name={r.name}")
        yield from each(consents, _consent, lambda r: f"{r.item_id} #{r.row}")
        yield from each(classification_notices, _notice, lambda r: f"{r.item_id} #{r.row}")
        yield from each(incidents, _incident, lambda r: f"reference={r.reference}")
        yield from each(receipts, _receipt, lambda r: f"{r.item_id}@{r.version} #{r.row}")
        yield from each(revocations, _revocation, lambda r: f"name={r.name}")
        yield from each(standing_consents, _standing,
                        lambda r: f"{r.kind} {r.consent_id} #{r.row}")
        for table, where in ((envelopes_seen, lambda r: f"nonce={r.nonce}"),
                             (consent_requests, lambda r: f"id={r.id}")):
            yield from each(table, _Register(table.name), where)
        # One table, two registers: each row is digested as its kind's register says, so a
        # kind rewritten makes the row match no record.
        for row in self._raw(outbox):
            register = "outbox" if row.kind == DELIVERY else "notices"
            # The other kind's columns stay empty: a value there was written behind the
            # node's back (no digest covers it, so it is named here).
            stray = (row.reference, row.body) if register == "outbox" else (row.version,)
            try:
                if any(v is not None for v in stray):
                    raise ValueError(f"a {row.kind!r} row holds another kind's values")
                digest = register_digest(register, row.__dict__)
            except (MalformedInput, ValueError, KeyError, TypeError) as exc:
                digest = f"unreadable: {exc}"
            yield StoredRecord(register, _outbox_where(row), _int(row.seq), digest)

    def head_file(self) -> str | None:
        return None if self.head_file_path is None else str(self.head_file_path)

    def deliveries(self) -> Iterator[tuple[str, str, str, Any, Any, str]]:
        for r in self._raw(outbox, outbox.c.kind, outbox.c.item_id, outbox.c.version,
                           outbox.c.recipient, outbox.c.status, outbox.c.next_at):
            if r.kind != DELIVERY:
                continue
            yield (r.item_id, r.version, r.recipient, r.status, r.next_at,
                   f"{r.item_id}@{r.version} to {r.recipient}")

    def notice_states(self) -> Iterator[tuple[str, Any, str]]:
        for r in self._raw(outbox):
            if r.kind == DELIVERY:
                continue
            try:
                key = register_digest("notices", r.__dict__)
            except (MalformedInput, TypeError, ValueError) as exc:
                key = f"unreadable: {exc}"
            yield key, r.status, f"{r.kind} {r.reference} to {r.recipient}"

    def obtained_receipts(self) -> set[tuple[Any, Any, Any]]:
        t = receipts
        return {(r.item_id, r.version, r.peer) for r in self.conn.execute(
            sa.select(t.c.item_id, t.c.version, t.c.peer).where(t.c.direction == "obtained"))}

    def scan_mark(self) -> Any:
        row = self.conn.execute(sa.select(exchange_state.c.scanned_seq)
                                .where(exchange_state.c.id == 1)).first()
        return None if row is None else row[0]

    def identity(self) -> list[tuple[Any, Any]]:
        return [(r.party, r.signing_key) for r in self.conn.execute(
            sa.select(node_identity.c.party, node_identity.c.signing_key))]

    def storage_problems(self) -> list[LogProblem]:
        """Values of the wrong kind (text where bytes belong, NULLs, a number as text) and
        schema objects nobody made (a trigger, a table): named, never read as good."""
        found: list[LogProblem] = []
        if self.conn.dialect.name == "sqlite":
            known = set(TABLE_COVERAGE)
            for kind, name, table in self.conn.exec_driver_sql(
                    "SELECT type, name, tbl_name FROM sqlite_master "
                    "WHERE name NOT LIKE 'sqlite_%'"):
                if kind == "trigger" or kind == "view" or (kind == "table"
                                                           and name not in known):
                    found.append(LogProblem(
                        "schema", f"{kind} {name}",
                        f"the database holds a {kind} {name!r} (on {table}) that no "
                        "migration made: it can change what is stored behind the log's back"))
            from gsomia.shell.taxii_store import taxii_statuses

            present = set(sa.inspect(self.conn).get_table_names())
            for table in [*metadata.sorted_tables, taxii_statuses]:
                if table.name not in present:
                    continue
                # audit_events: only the rows a complete pass of rows() found odd, if any.
                rowids = self._odd_events if table is audit_events else None
                found.extend(_sqlite_type_problems(self.conn, table, rowids))
        else:
            for (name,) in self.conn.execute(sa.text(
                    "SELECT trigger_name FROM information_schema.triggers "
                    "WHERE event_object_schema = current_schema()")):
                found.append(LogProblem(
                    "schema", f"trigger {name}",
                    f"the database holds a trigger {name!r} that no migration made"))
        return found

    def leaf_hashes(self) -> list[bytes]:
        result = self.conn.execute(
            sa.select(audit_events.c.leaf_hash).order_by(audit_events.c.seq)
            .execution_options(yield_per=20000))
        return [bytes(h) for h in result.scalars()]

    def leaf_hashes_from(self, seq: int) -> list[bytes]:
        return [bytes(h) for h in self.conn.execute(
            sa.select(audit_events.c.leaf_hash).where(audit_events.c.seq >= seq)
            .order_by(audit_events.c.seq)).scalars()]

    def events_from(self, seq: int, limit: int,
                    item_id: str | None = None) -> list[dict[str, Any]]:
        t = audit_events
        query = sa.select(t).where(t.c.seq >= seq).order_by(t.c.seq).limit(limit)
        if item_id is not None:
            # Also the batch leaf (items-published) that stored it, which names no one item.
            query = query.where((t.c.item_id == item_id) | t.c.seq.in_(
                sa.select(items.c.seq).where(items.c.id == item_id)))
        return [{"seq": r.seq, "kind": r.kind, "at": r.at, "actor": r.actor,
                 "item_id": r.item_id, "item_version": r.item_version,
                 "content_hash": r.content_hash, "details": json.loads(r.details)}
                for r in self.conn.execute(query)]


def _outbox_where(row: Any) -> str:
    if row.kind == DELIVERY:
        return f"{row.item_id}@{row.version} to {row.recipient}"
    return f"{row.kind} {row.reference} to {row.recipient}"


class _Register:
    """A register row's digest, as :func:`register_digest` made it when it was written."""

    def __init__(self, table: str) -> None:
        self.table = table

    def __call__(self, row: Any) -> Any:
        value = register_digest(self.table, row.__dict__)
        return SimpleNamespace(digest=lambda: value)


# What SQLite's typeof() must say of each column kind (NULL only where the column allows).
def _storage_class(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, sa.LargeBinary):
        return "blob"
    if isinstance(kind, sa.Integer):
        return "integer"
    return "text"  # String, Text and UTCDateTime (SQLite keeps instants as text)


# The one text SQLAlchemy writes for an instant in SQLite. Its reader is lenient (it stops at
# the seconds), so "09:00:00-000000" would read as "09:00:00.000000": an edit no digest sees.
# (with the microseconds, or without them when SQLAlchemy's bulk path had none to write).
_SQLITE_SECONDS = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
_SQLITE_INSTANTS = (_SQLITE_SECONDS, _SQLITE_SECONDS + ".[0-9][0-9][0-9][0-9][0-9][0-9]")


_TYPE_PROBLEMS_SHOWN = 50  # rows named per table


def _sqlite_type_tests(conn: sa.Connection, table: sa.Table) -> str:
    """An SQL condition true of the rows of ``table`` holding a value of the wrong kind."""
    quote = conn.dialect.identifier_preparer.quote
    tests = []
    for c in table.columns:
        allowed = [_storage_class(c)] + (["null"] if c.nullable else [])
        tests.append(f"typeof({quote(c.name)}) NOT IN ({', '.join(repr(a) for a in allowed)})")
    return f"({' OR '.join(tests)})"


def _sqlite_type_problems(conn: sa.Connection, table: sa.Table,
                          rowids: Sequence[int] | None = None) -> Iterator[LogProblem]:
    """The rows of ``table`` (of ``rowids`` only, when a scan already picked them out)
    holding values of the wrong kind, each named."""
    quote = conn.dialect.identifier_preparer.quote
    yield from _sqlite_instant_problems(conn, table)
    if rowids is not None and not rowids:
        return
    names = [c.name for c in table.columns]
    among = "" if rowids is None else \
        f"rowid IN ({', '.join(str(int(r)) for r in rowids)}) AND "
    sql = (f"SELECT rowid, {', '.join('typeof(' + quote(n) + ')' for n in names)} "
           f"FROM {quote(table.name)} WHERE {among}{_sqlite_type_tests(conn, table)} "
           f"LIMIT {_TYPE_PROBLEMS_SHOWN}")
    for row in conn.exec_driver_sql(sql):
        for name, column, stored in zip(names, table.columns, row[1:], strict=True):
            expected = _storage_class(column)
            if stored != expected and not (stored == "null" and column.nullable):
                yield LogProblem(
                    "column-type", f"{table.name}.{name} rowid {row[0]}",
                    f"{table.name} row {row[0]} holds {stored} in column {name}, which holds "
                    f"{expected}{' or NULL' if column.nullable else ''}: it was rewritten "
                    "behind the node's back")


def _sqlite_instant_problems(conn: sa.Connection, table: sa.Table) -> Iterator[LogProblem]:
    quote = conn.dialect.identifier_preparer.quote
    for c in table.columns:
        if not isinstance(c.type, UTCDateTime):
            continue
        spelled = " OR ".join(f"{quote(c.name)} GLOB '{p}'" for p in _SQLITE_INSTANTS)
        sql = (f"SELECT rowid FROM {quote(table.name)} WHERE typeof({quote(c.name)}) = 'text' "
               f"AND NOT ({spelled}) LIMIT 50")
        for (rowid,) in conn.exec_driver_sql(sql):
            yield LogProblem(
                "column-type", f"{table.name}.{c.name} rowid {rowid}",
                f"{table.name} row {rowid} holds in column {c.name} an instant not written "
                "as the node writes them: it was rewritten behind the node's back")


def _tolerant_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _tolerant_time(value: Any) -> datetime | str | None:
    if value is None or isinstance(value, datetime):
        return None if value is None else instant(value)
    try:
        return instant(datetime.fromisoformat(str(value)))
    except ValueError:
        return f"unreadable time {value!r}"


def _head_size(path: Path) -> int:
    """The size the head kept in ``path`` claims; -1 if none or unreadable. A cheap first
    look for the writer, which parses the head in full only when it claims more."""
    try:
        size = json.loads(path.read_bytes()).get("size")
    except (OSError, ValueError, AttributeError):
        return -1
    return size if type(size) is int else -1


def read_external_head(path: Path) -> TreeHead | None:
    """The head copied outside the database; None if there is none yet.

    An unreadable file raises MalformedInput (``audit verify`` reports it).
    """
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:  # there, but not to be read (permissions, the disk)
        raise MalformedInput(f"the tree head kept outside the database is unreadable: {exc}",
                             where=str(path)) from None
    try:
        return TreeHead.from_json(json.loads(text))
    except (ValueError, MalformedInput) as exc:
        raise MalformedInput(f"the tree head kept outside the database is unreadable: {exc}",
                             where=str(path)) from None


# ---- the store ----------------------------------------------------------------------------


class Store:
    """A node's database: engine, migrations, units of work and snapshots for reading."""

    def __init__(self, url: str, *, signer: Ed25519PrivateKey | None = None,
                 head_file: Path | None = None, migrate_schema: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.signer = signer
        self.head_file = head_file
        # Whom the node delivers to, read at each unit of work (set by the node that opens
        # the store: partners.json may change while it runs).
        self.routing: Callable[[], Routing] | None = None
        self._stamp_path = self._revocations_file  # read on every authentication
        self._copier: _HeadCopier | None = None
        self._checkpointer: _Checkpointer | None = None
        # The newest head of an unsynced commit (SqlUnitOfWork, synced=False), not copied
        # beside the database: copied once the log is synced, when the store closes.
        self._uncopied: TreeHead | None = None
        self._uncopied_lock = threading.Lock()
        self._synced_head = _SyncedHead()
        if migrate_schema:
            migrate(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def uow(self, *, synced: bool = True, at_once: bool = False) -> SqlUnitOfWork:
        """A unit of work; ``synced=False``: see :class:`SqlUnitOfWork`. ``at_once``
        (SQLite): raise :class:`WriterBusy` as it begins if another writer holds the lock,
        instead of waiting (elsewhere it waits)."""
        return SqlUnitOfWork(self, synced=synced, at_once=at_once)

    def claim(self, *, deliveries: bool, now: datetime, limit: int,
              recipient: str | None = None, leaving: Collection[int] = (),
              or_not_to: Collection[str] | None = None) -> list[Any]:
        """Outbox rows due at ``now`` (deliveries, or else notices; to ``recipient`` if
        named, or to anyone but ``or_not_to`` if that is given too), oldest first, taken
        for this sender.

        On PostgreSQL several senders share the outbox: the rows are locked with ``FOR
        UPDATE SKIP LOCKED`` (another sender's rows are passed over, never waited for) and
        leased, their next try moved ``LEASE_S`` ahead in the same short transaction, so no
        other sender takes them while this one posts; a sender killed meanwhile leaves
        them due again when the lease ends. Settling (receipt, refusal, backoff) rewrites
        the next try. On SQLite one sender runs: it reads, leaving out its rows in flight
        (``leaving``). The claim is the courier's bookkeeping, not a record: the log holds
        what each row owes and how it ended, and ``audit verify`` bounds a next try."""
        due = [outbox.c.status == "pending", outbox.c.next_at <= now,
               outbox.c.kind == DELIVERY if deliveries else outbox.c.kind != DELIVERY]
        if recipient is not None:
            due.append(_to(recipient, or_not_to))
        if leaving:
            due.append(outbox.c.row.notin_(sorted(leaving)))
        query = outbox.select().where(*due).order_by(outbox.c.row).limit(limit)
        if self.dialect != "postgresql":
            with self.engine.connect() as conn:
                return list(conn.execute(query))
        with self.engine.connect() as conn, conn.begin():
            rows = list(conn.execute(query.with_for_update(skip_locked=True)))
            if rows:
                conn.execute(outbox.update().where(outbox.c.row.in_([r.row for r in rows]))
                             .values(next_at=now + timedelta(seconds=LEASE_S)))
        return rows

    def next_due(self, *, recipients: Collection[str], notices_to: str | None = None,
                 or_not_to: Collection[str] | None = None) -> datetime | None:
        """When the earliest pending row a sender posts is due: a delivery to one of
        ``recipients`` or a notice (to ``notices_to`` if named, as :meth:`claim` takes
        them; None: nothing is queued)."""
        notices = outbox.c.kind != DELIVERY
        if notices_to is not None:
            notices = sa.and_(notices, _to(notices_to, or_not_to))
        query = sa.select(sa.func.min(outbox.c.next_at)).where(
            outbox.c.status == "pending",
            sa.or_(notices, outbox.c.recipient.in_(sorted(recipients))))
        with self.engine.connect() as conn:
            found: datetime | None = conn.execute(query).scalar()  # typed as the column
        return found

    def newest_pending(self) -> dict[str, int]:
        """Each recipient's newest pending outbox row (rows are never deleted, so a larger
        number is a row queued since): whose courier a commit concerns, in one query on
        ``ix_outbox_due``."""
        query = sa.select(outbox.c.recipient, sa.func.max(outbox.c.row)).where(
            outbox.c.status == "pending").group_by(outbox.c.recipient)
        with self.engine.connect() as conn:
            return {str(to): int(row) for to, row in conn.execute(query)}

    def release(self, rows: Collection[int], now: datetime) -> None:
        """Give back rows :meth:`claim` took but this sender will not post now: due at
        ``now`` again for any sender (nothing to give back on SQLite, which has no lease)."""
        if rows and self.dialect == "postgresql":
            with self.engine.connect() as conn, conn.begin():
                conn.execute(outbox.update().where(outbox.c.row.in_(sorted(rows)),
                                                   outbox.c.status == "pending")
                             .values(next_at=now))

    @contextmanager
    def reader(self, *, tolerant: bool = False) -> Iterator[SqlAuditReader]:
        """A read-only snapshot: every query inside sees the same committed state.

        ``tolerant``: on SQLite, text that is not UTF-8 (bytes written into a text column
        behind the node's back) is read with its bad bytes escaped instead of failing the
        query, so ``audit verify`` can name it. Off by default: it costs a Python call per
        text value."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            raw = conn.connection.dbapi_connection if tolerant and \
                conn.dialect.name == "sqlite" else None
            # The copy outside is read before the snapshot begins (at the first query): a
            # head written after a commit the snapshot does not see must not read as the
            # log rolled back.
            external: TreeHead | MalformedInput | None
            try:
                external = read_external_head(self.head_file) if self.head_file else None
            except MalformedInput as exc:
                external = exc
            before = getattr(raw, "text_factory", None)
            if raw is not None:
                raw.text_factory = _tolerant_text
            try:
                with conn.begin() as tx:
                    yield SqlAuditReader(conn, self.head_file, external, self._synced_head)
                    tx.rollback()
            finally:
                if raw is not None:
                    raw.text_factory = before

    @contextmanager
    def repository(self) -> Iterator[SqlRepository]:
        """Read the holdings and registers outside a unit of work (one snapshot)."""
        with self.engine.connect() as conn, conn.begin() as tx:
            yield SqlRepository(conn)
            tx.rollback()

    def node_identity(self) -> dict[str, Any] | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(node_identity.select()).first()
        except (TypeError, ValueError) as exc:
            raise MalformedInput(f"the node's identity row is unreadable: {exc}",
                                 where="node_identity",
                                 expected="the row gsomia node init wrote") from None
        return None if row is None else {"party": row.party, "signing_key": row.signing_key,
                                         "created_at": row.created_at}

    def set_node_identity(self, party: str, signing_key: str, created_at: datetime) -> None:
        with self.engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
            if conn.execute(node_identity.select()).first() is not None:
                raise MalformedInput("the database already belongs to a node", where="db",
                                     expected="an empty database for a new node")
            conn.execute(node_identity.insert(), {"id": 1, "party": party,
                                                  "signing_key": signing_key,
                                                  "created_at": created_at})

    @property
    def _revocations_file(self) -> str | None:
        return None if self.head_file is None else str(
            self.head_file.with_name("revoked.stamp"))

    def mark_revocations(self) -> None:
        """Change the stamp beside the database that tells this node's processes a token
        was revoked (each caches token lookups, and must drop them at once)."""
        path = self._revocations_file
        if path is None:
            return
        with open(path, "ab") as f:
            f.write(b"r")
            f.flush()
            os.fsync(f.fileno())

    def revocations_mark(self) -> tuple[int, int] | None:
        """What :meth:`mark_revocations` last left: changes with every revocation committed
        here; None when it cannot be known (no folder, no stamp yet)."""
        path = self._stamp_path
        if path is None:
            return None
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return (0, 0)
        return (found.st_size, found.st_mtime_ns)

    def copy_heads_behind(self) -> None:
        """From now on a commit returns once the database holds it, and the head's copy
        beside it is written by a thread of its own (:class:`_HeadCopier`), the newest of
        those due at once in one write. For a long-running node process (``node run``,
        ``node serve``): a receipt or a reply then waits for one disk sync, the database's,
        not two. :meth:`dispose` writes what is still due."""
        if self._copier is None and self.head_file is not None:
            self._copier = _HeadCopier(self._write_external_head)

    def checkpoint_behind(self) -> None:
        """From now on a commit returns once its pages are in the write-ahead log, and a
        thread of its own copies them into the database file (:class:`_Checkpointer`). For
        a long-running node process on SQLite; elsewhere nothing changes."""
        path = self.engine.url.database
        if self._checkpointer is not None or self.dialect != "sqlite" \
                or path in (None, "", ":memory:"):
            return

        @sa.event.listens_for(self.engine, "connect")
        def _behind(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={_Checkpointer.BACKSTOP}")

        self.engine.dispose()  # connections made before keep SQLite's inline checkpoints
        self._checkpointer = _Checkpointer(str(path))

    def write_external_head(self, head: TreeHead, *, sync: bool = True,
                            create: bool = False) -> None:
        """Copy ``head`` beside the database (:meth:`_write_external_head`), at once, or
        by the copier thread after :meth:`copy_heads_behind` (the first copy, ``create``,
        is always written at once)."""
        if self._copier is not None and not create:
            self._copier.put(head, sync)
        else:
            self._write_external_head(head, sync=sync, create=create)

    def _write_external_head(self, head: TreeHead, *, sync: bool = True,
                             create: bool = False) -> None:
        """Copy ``head`` beside the database: write, sync, then rename over the old copy.

        The copy is made only by the log's first commit or with ``create`` (``gsomia audit
        accept-head``): a copy that went missing stays missing, and ``audit verify`` fails,
        rather than the next commit of a database restored from an older copy writing a
        fresh one that agrees with it.

        A crash before the rename leaves the previous head, which only lags the database.
        ``sync=False`` (commits of read events only, so a GET waits for one disk sync, the
        database's, not two) skips the sync: after a power cut the copy may then lag the
        database, which it may anyway; a torn copy is refused by ``audit verify``, never
        trusted, and a database rolled back behind the copy still shows.
        """
        if self.head_file is None:
            return
        if not create and not os.path.lexists(self.head_file):
            return
        data = json.dumps(head.to_json(), sort_keys=True).encode("utf-8") + b"\n"
        # One temporary name per process and thread (no two writers share one, and no random
        # name to draw); a leftover of a crashed process is truncated, never trusted.
        tmp = self.head_file.with_name(
            f"{self.head_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        # Several processes of one node commit: the look at the copy and the rename are one
        # step under a lock of the folder, or a later head could be replaced by an earlier.
        folder = os.open(self.head_file.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            if _head_size(self.head_file) > head.size:
                try:  # rarely here: read it in full, as a torn or malformed copy is replaced
                    current = read_external_head(self.head_file)
                except MalformedInput:
                    current = None
                if current is not None and current.size > head.size:
                    os.unlink(tmp)  # another process already wrote a later head
                    return
            os.replace(tmp, self.head_file)
        finally:
            os.close(folder)  # and with it the lock

    def hold_uncopied(self, head: TreeHead) -> None:
        with self._uncopied_lock:
            if self._uncopied is None or head.size > self._uncopied.size:
                self._uncopied = head

    def copy_uncopied(self) -> None:
        """Sync the log, then copy the newest head of an unsynced commit beside the
        database (a later one copied meanwhile stays: an older head never replaces it)."""
        with self._uncopied_lock:
            head, self._uncopied = self._uncopied, None
        if head is None:
            return
        try:
            with self.engine.connect() as conn:
                _sync_log(conn)
            self.write_external_head(head)
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            # The database holds the commit: the copy lags, as it may.
            print(f"gsomia: the tree head's copy was not written: {exc}", file=sys.stderr,
                  flush=True)

    def dispose(self) -> None:
        # A node stopped leaves the copy at its newest head, unsynced commits' included.
        self.copy_uncopied()
        if self._copier is not None:
            self._copier.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()


class _HeadCopier:
    """Writes signed heads beside the database on a thread of its own, so that a commit
    does not wait for that copy's disk sync.

    The copy lags the database, as it may anyway (a crash between a commit and its copy
    leaves the previous head): nothing is lost, the database holds every commit, and a
    database rolled back behind the copy still shows. Heads due while a write is under way,
    or within ``every`` seconds after it, are coalesced: only the newest is written next
    (each covers the ones before it). A head due after a quiet spell is written at once; a
    run of commits (a GET each, audited) costs one write per ``every``, not one each: a
    write and a rename cost a sequential reader more CPU than the rest of its audit commit
    did, and raced its next commit's disk sync for the file system's journal."""

    EVERY = 0.05  # seconds: at most this much more lag behind a run of commits

    def __init__(self, write: Callable[..., None], every: float = EVERY) -> None:
        self._write = write
        self._every = every
        self._cond = threading.Condition()
        self._due: tuple[TreeHead, bool] | None = None
        self._writing = False
        self._closed = False
        self._hurried = 0  # callers of flush waiting: the copier waits out no interval
        self._written = -1  # the size of the newest head this copier wrote
        self._thread = threading.Thread(target=self._run, name="gsomia-head-copy",
                                        daemon=True)
        self._thread.start()

    def put(self, head: TreeHead, sync: bool) -> None:
        with self._cond:
            if not self._closed:
                due = self._due
                if due is None or head.size >= due[0].size:
                    self._due = (head, sync or (due is not None and due[1]))
                self._cond.notify_all()
                return
        self._write(head, sync=sync)  # after close: at once, as without a copier

    def flush(self) -> None:
        """Return once every head put so far is written (or failed)."""
        with self._cond:
            self._hurried += 1
            self._cond.notify_all()
            try:
                while self._due is not None or self._writing:
                    self._cond.wait()
            finally:
                self._hurried -= 1

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._due is None and not self._closed:
                    self._cond.wait()
                if self._due is None:
                    return
                (head, sync), self._due = self._due, None
                if head.size < self._written:
                    # Put late by a slower committer: a newer one is out already.
                    self._cond.notify_all()
                    continue
                self._writing = True
            try:
                self._write(head, sync=sync)
                self._written = head.size
            except OSError as exc:
                # The database holds the commit whatever happens here: the copy lags until
                # a later head is written (a full disk, a folder made read-only).
                print(f"gsomia: the tree head's copy was not written: {exc}",
                      file=sys.stderr, flush=True)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._closed or self._hurried > 0,
                                        timeout=self._every)


class _Checkpointer:
    """Copies committed pages from SQLite's write-ahead log into the database file on a
    thread of its own, so that no commit waits for that copy.

    SQLite checkpoints in the commit that takes the log past 1,000 pages. Each item stored
    makes a page of each of the two indexes by id (``uq_items_id_version``,
    ``ix_custody_item``) dirty: ids are random, and in a store of 1,000,000 items no two of
    a batch share a leaf page. A batch of 100 then wrote 360 pages to the log, not 155 as
    at 5,000 items, and every third commit also wrote 1,000 pages back at random places of
    a 1.7 GB file and synced it: that, not reading the indexes, was most of what made an
    ingest at 1,000,000 slower (0.63 ms per item in the commit against 0.17 at 5,000).

    Here the checkpoint runs behind the commits, at most once every ``every`` seconds
    while commits come (a page changed by several commits meanwhile is written back once),
    ``PASSIVE``: it never blocks a reader or a writer, and what a reader still needs stays
    in the log. The commits' own checkpoint stays as a backstop should this thread fall
    behind or fail (``BACKSTOP`` pages, 64 MB of log). Nothing is lost either way: a commit
    is durable once in the log (synced), the checkpoint only moves it."""

    EVERY = 0.5  # seconds between checkpoints while commits come
    BACKSTOP = 16384  # pages: the log's size at which a commit checkpoints after all

    def __init__(self, path: str, every: float = EVERY) -> None:
        self._path = path
        self._every = every
        self._cond = threading.Condition()
        self._due = False
        self._busy = False
        self._closed = False
        self._warned = False
        self.last: tuple[int, int, int] | None = None  # SQLite's answer to the last one
        self._thread = threading.Thread(target=self._run, name="gsomia-checkpoint",
                                        daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """A commit added pages to the log."""
        with self._cond:
            self._due = True
            self._cond.notify_all()

    def flush(self) -> None:
        """Return once the log as of now has been checkpointed (or the attempt failed)."""
        with self._cond:
            self._cond.wait_for(lambda: (not self._busy and not self._due) or self._closed)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import sqlite3

        db = None
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._due or self._closed)
                    if self._closed:
                        return
                    self._due, self._busy = False, True
                try:
                    if db is None:
                        db = sqlite3.connect(self._path, isolation_level=None,
                                             check_same_thread=False)
                        db.execute("PRAGMA synchronous=FULL")
                        db.execute("PRAGMA mmap_size=0")
                    found = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.last = (int(found[0]), int(found[1]), int(found[2]))
                except sqlite3.Error as exc:
                    # The commits' own checkpoint (BACKSTOP) still bounds the log.
                    if not self._warned:
                        self._warned = True
                        print(f"gsomia: the database's checkpoint failed: {exc}",
                              file=sys.stderr, flush=True)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
                        self._cond.wait_for(lambda: self._closed, timeout=self._every)
        finally:
            if db is not None:
                db.close()


def now_utc() -> datetime:
    """The shell's clock (handlers take ``now`` from their caller)."""
    return datetime.now(UTC)
