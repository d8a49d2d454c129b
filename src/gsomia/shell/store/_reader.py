"""The read side: the ``AuditReader`` port over a snapshot, and its checks."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from gsomia.core.audit import LogProblem, MerkleAccumulator, TreeHead
from gsomia.core.custody import StandingConsentRecord, register_digest, stamp
from gsomia.core.errors import MalformedInput
from gsomia.core.outbox import DELIVERY
from gsomia.core.types import instant
from gsomia.shell.store._mapping import (
    _audience_rows,
    _blob,
    _chunks,
    _consent,
    _custody,
    _frontier,
    _head,
    _incident,
    _int,
    _label,
    _notice,
    _receipt,
    _revocation,
    _standing,
    _user,
)
from gsomia.shell.store._tables import (
    TABLE_COVERAGE,
    UTCDateTime,
    audit_events,
    audit_state,
    classification_notices,
    consent_requests,
    consents,
    custody,
    envelopes_seen,
    exchange_state,
    incidents,
    item_audience,
    items,
    metadata,
    node_identity,
    outbox,
    receipts,
    revocations,
    standing_consents,
    tree_heads,
    users,
)

_SCANNER = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


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
        astray = self._standing_revoked_astray()
        yield from each(standing_consents, lambda r: _standing_checked(r, astray),
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

    def _standing_revoked_astray(self) -> set[int]:
        """The rows of ``standing_consents`` whose ``revoked`` (which no digest covers) is
        not what the revocations held say: a grant's is set if and only if a revocation by
        its originator is held (each one checked against its event), a revocation's never."""
        t = standing_consents
        revocation = t.alias("revocation")
        held = sa.and_(t.c.kind == "grant", sa.exists().where(
            revocation.c.consent_id == t.c.consent_id,
            revocation.c.originator == t.c.originator, revocation.c.kind == "revoke"))
        return {r[0] for r in self.conn.execute(sa.select(t.c.row).where(sa.or_(
            sa.and_(held, t.c.revoked != sa.true()),
            sa.and_(~held, t.c.revoked != sa.false()))))}

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
        found.extend(self._audience_problems())
        return found

    def _audience_problems(self) -> list[LogProblem]:
        """The versions whose ``item_audience`` rows (which no digest covers) are not those
        of the audience of their latest custody record's label (each record checked
        against its event): a row lost hides a version from the dashboard's readers, a row
        added or changed shows nothing (the policy decides on the custody label) but is
        written behind the node's back all the same."""
        latest: dict[tuple[str, str], Any] = {}
        for item_id, version, data in self.conn.execute(
                sa.select(custody.c.item_id, custody.c.version, custody.c.national_label)
                .order_by(custody.c.row).execution_options(yield_per=5000)):
            latest[(item_id, version)] = data
        expected: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for key, data in latest.items():
            try:
                label = _label(bytes(data))
            except (MalformedInput, ValueError, TypeError):
                continue  # the custody record itself is reported unreadable
            expected[key] = sorted(row[2:] for row in _audience_rows(*key, label))
        a = item_audience.c
        held: dict[tuple[Any, Any], list[tuple[Any, ...]]] = {}
        for found_row in self.conn.execute(
                sa.select(a.item_id, a.version, a.party, a.purpose, a.scheme, a.level)
                .execution_options(yield_per=5000)):
            held.setdefault((found_row[0], found_row[1]), []).append(tuple(found_row[2:]))
        found = []
        for key in sorted(set(expected) | set(held), key=repr):
            rows = sorted(held.get(key, []), key=repr)
            if rows != sorted(expected.get(key, []), key=repr):
                found.append(LogProblem(
                    "modified", f"item_audience {key[0]}@{key[1]}",
                    f"the audience rows of {key[0]}@{key[1]} ({rows}) are not those of its "
                    f"latest custody label ({expected.get(key, [])}): written behind the "
                    "node's back"))
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
    if isinstance(kind, sa.Integer | sa.Boolean):  # SQLite keeps a boolean as 0 or 1
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


def _standing_checked(row: Any, revoked_astray: Collection[int]) -> StandingConsentRecord:
    """The row as its record, if its ``not_after`` and ``revoked`` (which no digest covers)
    are what its document and the revocations held say: the reads of what is in force go
    by those columns, so one edited on disk is named here (an end moved earlier or a grant
    marked revoked hides a consent; an end moved later or a mark cleared, the policy still
    reads the document and the revocation, but the row is no longer what the node wrote)."""
    record = _standing(row)
    if row.not_after != record.ends:
        raise ValueError(f"not_after {row.not_after!r} is not the end its document says "
                         f"({record.ends!r})")
    if row.row in revoked_astray:
        raise ValueError(f"revoked {row.revoked!r} is not what the revocations held say "
                         f"of this {record.kind}")
    return record


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
