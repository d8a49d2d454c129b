"""The ``UnitOfWork`` port: one write transaction, committed with its log."""

from __future__ import annotations

from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Self

import sqlalchemy as sa

from gsomia.core.audit import TreeHead
from gsomia.core.errors import MalformedInput
from gsomia.core.outbox import DomainEvent, Routing
from gsomia.shell.store._audit_log import _WRITER_LOCK, SqlAuditLog
from gsomia.shell.store._reader import _sync_log, _synchronous
from gsomia.shell.store._repository import SqlOutbox, SqlRepository
from gsomia.shell.store._signal import _QUEUED, _QUEUEING, COMMIT_CHANNEL, signal_commit

if TYPE_CHECKING:
    from gsomia.service.ports import RememberedChecks
    from gsomia.shell.store._store import Store


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
    signed head is not copied beside the database until the log is synced (the copy lags,
    as it may: :meth:`Store.hold_uncopied`, by a node process within a second), and a head
    read through :meth:`SqlAuditReader.latest_head` is synced before it is handed to
    anyone (:func:`_sync_log`): no head leaves the node for a log a power cut could
    shorten.

    ``sync_outside=True`` (SQLite only): synced, but the log's sync runs once the commit has
    released the write lock, and :meth:`commit` returns only after it. The next writer
    (a partner's second batch, received while this one's sync runs) then takes the lock and
    writes at once instead of waiting for this sync, and the disk syncs of the two overlap.
    Nothing waits for this commit before its sync (the commit's wake-ups and its head's
    copy come after it; the caller answers after it), and what the node sends meanwhile is
    held to :meth:`Store.synced_for_sending`; a reader in between may see the commit before
    a power cut could take it back, as the readers of a ``synced=False`` one may."""

    repo: SqlRepository
    audit: SqlAuditLog
    outbox: SqlOutbox

    def __init__(self, store: Store, *, synced: bool = True, at_once: bool = False,
                 sync_outside: bool = False) -> None:
        self._store = store
        self._synced = synced
        self._sync_outside = sync_outside and synced
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

    @property
    def remembered(self) -> RememberedChecks:
        return self._store.remembered

    def __enter__(self) -> Self:
        conn = self._store.engine.connect().execution_options(
            gsomia_write=True, gsomia_at_once=self._at_once)
        self._conn = conn
        if (not self._synced or self._sync_outside) and conn.dialect.name == "sqlite":
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
        self.outbox = SqlOutbox(conn, lambda: self.audit.size)
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
        queued_to = frozenset(self.outbox.queued_to)
        # Told while the write lock is held (see on_queueing); then, whatever happens, told
        # once it is over, or the couriers' progress would wait on it for good.
        asked = _QUEUEING.get(str(self._store.engine.url)) if queued_to else None
        if asked is not None:
            with suppress(Exception):
                asked(queued_to)
        told = False
        outside = self._sync_outside and self._relaxed
        try:
            if outside:
                self._store.syncing(+1)  # before readers can see it
            try:
                self._conn.commit()
                self._tx = None
                relaxed = self._relaxed and head is not None
                if outside or (relaxed and self.audit.first):
                    # The log's first commit creates the head's copy beside the database,
                    # which must not get ahead of what the disk holds: this one is synced
                    # now. So is one synced outside the lock, which the lock's next holder
                    # did not wait for.
                    _sync_log(self._conn)
                    relaxed = False
            finally:
                if outside:
                    self._store.syncing(-1)
            if self.repo.revoked:
                self._store.mark_revocations()
                self.repo.revoked = False
            self.outbox.queued_to = set()
            if queued_to:
                woken = _QUEUED.get(str(self._store.engine.url))
                if woken is not None:
                    with suppress(Exception):  # a wake-up missed: the signal names them
                        woken(queued_to)
                        told = True
        finally:
            if asked is not None and not told:
                woken = _QUEUED.get(str(self._store.engine.url))
                if woken is not None:
                    with suppress(Exception):
                        woken(queued_to)
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
