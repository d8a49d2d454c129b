"""The ``AuditLog`` port: events queued, then written with a signed tree head."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gsomia.core.audit import (
    AuditEvent,
    AuditKind,
    AuditRecord,
    MerkleAccumulator,
    TreeHead,
    event_time,
    sign_tree_head,
    stored_details,
)
from gsomia.core.crypto import fingerprint
from gsomia.core.errors import AuditUnavailable
from gsomia.shell.store._mapping import _frontier, _head, insert_many
from gsomia.shell.store._tables import audit_events, audit_state, tree_heads


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
