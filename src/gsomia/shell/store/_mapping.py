"""Mapping rows to the core's records and back, and bulk writes and lookups."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from gsomia.core.audit import TreeHead
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    CreatedCustody,
    CustodyRecord,
    IncidentReport,
    NodeUser,
    ReceiptRecord,
    Revocation,
    StandingConsentRecord,
    StoredItem,
    record_bytes,
)
from gsomia.core.errors import MalformedInput
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import DELIVERY, NOTICE_KINDS
from gsomia.core.policy import audience
from gsomia.core.types import instant, iso
from gsomia.shell.store._tables import custody, item_audience, outbox, revocations


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


def _insert_columns(table: sa.Table) -> tuple[str, ...]:
    """The columns an INSERT of ``table`` gives, in the table's order: all but the
    autoincremented key."""
    return tuple(c.name for c in table.columns
                 if not (c.primary_key and c.autoincrement is True))


def _in_column_order(table: sa.Table, names: tuple[str, ...]) -> tuple[str, ...]:
    """``names``, checked to be :func:`_insert_columns` of ``table`` in that order: for rows
    laid out by hand as tuples, so that a column added, dropped or moved in the table stops
    the import rather than shifting a value into another column unseen."""
    found = _insert_columns(table)
    if names != found:
        raise RuntimeError(f"rows of {table.name} are laid out as {names}, but its columns "
                           f"are {found}")
    return names


# The values of _created_rows, in this order (checked against the table at import).
_CREATED_COLUMNS = _in_column_order(custody, (
    "item_id", "version", "event", "holder", "provider", "agreement", "original_label",
    "national_label", "at", "envelope_digest", "note", "seq"))


# The values of _audience_rows, in this order (checked against the table at import).
_AUDIENCE_COLUMNS = _in_column_order(item_audience, (
    "item_id", "version", "party", "purpose", "scheme", "level"))


def _created_rows(batch: CreatedCustody, seq: int) -> list[tuple[Any, ...]]:
    """The custody rows of ``batch`` (for :func:`insert_rows`): ``_custody_values`` of each
    of its records, as tuples in the order of ``_CREATED_COLUMNS``."""
    holder, at = batch.holder, batch.at
    return [(item_id, version, "created", holder, None, label.policy, label_bytes,
             label_bytes, at, None, "", seq)
            for item_id, version, label, label_bytes in batch.items]


def _audience_rows(item_id: str, version: str,
                   label: SecurityLabel) -> list[tuple[str, str, str, str, str, str]]:
    """The ``item_audience`` rows of a version whose current national label is ``label``:
    one per party of its audience, in the table's column order."""
    return [(item_id, version, p, label.purpose, label.scheme, label.level)
            for p in sorted(audience(label))]


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
    itself; elsewhere it is Core's executemany (batched by the dialect). Every column but
    the autoincremented key is given (no server default is filled in: a row that leaves one
    out raises KeyError naming it)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    names = _bulk(conn, table)[1]
    insert_rows(conn, table, [tuple([row[n] for n in names]) for row in rows])


def insert_rows(conn: sa.Connection, table: sa.Table, rows: list[tuple[Any, ...]]) -> None:
    """:func:`insert_many` of rows given as tuples of every column's value in the table's
    order (its autoincremented key left out): for a batch's rows built where they are made,
    without a mapping per row."""
    if not rows:
        return
    sql, names, processors = _bulk(conn, table)
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])
        return
    values = []
    last: dict[int, tuple[Any, Any]] = {}  # a batch's rows mostly share their instants
    for row in rows:
        if len(row) != len(names):  # a bug, never input: a value would land in another column
            raise ValueError(f"{len(row)} values for the {len(names)} columns of {table.name}")
        value = list(row)
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


def _bulk(conn: sa.Connection, table: sa.Table
          ) -> tuple[str, tuple[str, ...], tuple[tuple[int, Any], ...]]:
    """The INSERT of every column of ``table`` but its autoincremented key, those columns'
    names, and the bind processor of each that has one (by position), made once."""
    key = (table.name, conn.dialect.name)
    found = _BULK.get(key)
    if found is None:
        quote = conn.dialect.identifier_preparer.quote
        names = _insert_columns(table)
        columns = [table.c[n] for n in names]
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
               f"VALUES ({', '.join('?' for _ in names)})")
        binds = ((i, c.type.bind_processor(conn.dialect)) for i, c in enumerate(columns))
        found = _BULK[key] = (sql, names, tuple((i, b) for i, b in binds if b is not None))
    return found


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


# ---- the courier's reading of an outbox row ------------------------------------------------

# The most tries, and "not now"s in a row, a row is read with: the courier adds one and
# writes it back (PostgreSQL's INTEGER is 32 bits; SQLite refuses a Python int past 64). A
# row tried every 0.1 s for 6 years stays below it; more is a count written behind the
# node's back.
COUNT_BOUND = 2**31 - 2


@dataclass(frozen=True, slots=True)
class CourierRow:
    """An outbox row as the courier reads it, every value of the type it computes with
    (:meth:`gsomia.shell.store.Store.claim` returns no other)."""

    row: int
    kind: str
    recipient: str
    item_id: str | None
    version: str | None
    reference: str | None
    body: str | None
    attempts: int
    not_now: int


def courier_columns(dialect: str) -> list[Any]:
    """The outbox columns the courier reads, the next try as stored on SQLite (text, read
    by :func:`courier_row`): a time no parser reads must not fail the whole read."""
    return [sa.type_coerce(c, sa.String).label(c.name)
            if c.name == "next_at" and dialect == "sqlite" else c
            for c in outbox.c if c.name in _COURIER_READS]


_COURIER_READS = ("row", "kind", "recipient", "item_id", "version", "reference", "body",
                  "attempts", "not_now", "next_at", "status")


# How SQLAlchemy keeps a time on SQLite ("2024-03-01 09:00:00.000000"), as a GLOB.
_STORED_TIME = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:*"


def courier_readable(dialect: str, *, deliveries: bool, every: bool = True) -> list[Any]:
    """SQL: the outbox rows :func:`courier_row` reads (and more: their next try reads as a
    time), so that rows written behind the node's back never read as due (the courier's
    loop would wake for them at once, again and again). SQLite keeps whatever type is
    written into a column: there each value's type is checked too; PostgreSQL keeps the
    column's type. Not ``every``: the counts' bounds and the kind only, which keep out text,
    bytes and NULL counts (SQLite sorts them after any number) at a fraction of the cost per
    row due: the claim, which reads each row it returns with :func:`courier_row` (a check
    of every type and time cost it twice main's CPU, on every row due, not only those
    returned: the query sorts them all by row)."""
    counts = [outbox.c.attempts.between(0, COUNT_BOUND),
              outbox.c.not_now.between(0, COUNT_BOUND)]
    kinds = [outbox.c.kind == DELIVERY] if deliveries else \
        [outbox.c.kind.in_(sorted(NOTICE_KINDS))]
    if not every:
        return [*kinds, *counts]
    # Empty texts no node writes (courier_row leaves them), on either database.
    c = outbox.c
    nonempty = [c.recipient != "", *([c.item_id != "", c.version != ""] if deliveries else
                                      [c.reference != "",
                                       sa.or_(c.item_id.is_(None), c.item_id != "")])]
    if dialect != "sqlite":
        return [*kinds, *counts, *nonempty]
    typeof = sa.func.typeof
    texts = ("item_id", "version") if deliveries else ("reference", "body")
    # A number, bytes or a text of another shape is not a time SQLAlchemy wrote.
    shaped = sa.type_coerce(outbox.c.next_at, sa.String).op("GLOB")(_STORED_TIME)
    return [*kinds, *counts, shaped,
            typeof(outbox.c.attempts) == "integer", typeof(outbox.c.not_now) == "integer",
            typeof(outbox.c.recipient) == "text", typeof(outbox.c.next_at) == "text",
            sa.func.datetime(outbox.c.next_at).is_not(None),
            *[typeof(outbox.c[name]) == "text" for name in texts],
            *([] if deliveries else [typeof(outbox.c.item_id).in_(["text", "null"])]),
            *nonempty]


def outbox_row_problem(values: Mapping[Any, Any]) -> str | None:
    """Why the courier must not take an outbox row (``values``: its columns as stored, the
    next try as text on SQLite), or None if it is pending and every value it computes with
    reads right: counts in bounds, the kind one it sends, texts where it posts text."""
    if values.get("status") != "pending":
        return f"its status {values.get('status')!r} is not one the courier knows"
    kind = values.get("kind")
    if kind != DELIVERY and kind not in NOTICE_KINDS:
        return f"its kind {kind!r} is not one the courier sends"
    for name in ("attempts", "not_now"):
        value = values.get(name)
        if type(value) is not int or not 0 <= value <= COUNT_BOUND:
            return f"its {name} {value!r} is not a count from 0 to {COUNT_BOUND}"
    texts = ("recipient", "item_id", "version") if kind == DELIVERY else \
        ("recipient", "reference", "body")
    for name in texts:
        if type(values.get(name)) is not str or (name != "body" and not values.get(name)):
            return f"its {name} {values.get(name)!r} is not a non-empty text"
    if kind != DELIVERY and values.get("item_id") is not None and \
            (type(values.get("item_id")) is not str or not values.get("item_id")):
        return f"its item_id {values.get('item_id')!r} is not a non-empty text"
    next_at = values.get("next_at")
    if not isinstance(next_at, datetime):
        try:  # as SQLite keeps it (SQLAlchemy's text), read as the audit reader does
            datetime.fromisoformat(next_at if isinstance(next_at, str) else "")
        except ValueError:
            return f"its next try {next_at!r} is not a time"
    return None


def courier_row(row: Any) -> CourierRow | None:
    """The row (:func:`courier_columns`) as the courier reads it, or None if a value it
    computes with does not read right: judged by :func:`outbox_row_problem`, the one account
    of what the node writes, which doctor reads too (two copies of it drifted once: an empty
    item id passed the claim's and raised at the settle)."""
    if outbox_row_problem(row._mapping) is not None:
        return None
    return CourierRow(row.row, row.kind, row.recipient, row.item_id, row.version,
                      row.reference, row.body, row.attempts, row.not_now)
