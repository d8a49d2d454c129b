"""The store: units of work, snapshots, and the tree head's copy beside it."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gsomia.core.audit import TreeHead
from gsomia.core.errors import MalformedInput
from gsomia.core.outbox import LEASE_S, Routing
from gsomia.service.ports import checks_here
from gsomia.shell.signatures import RememberingChecks
from gsomia.shell.store._engine import make_engine, migrate
from gsomia.shell.store._mapping import (
    CourierRow,
    courier_columns,
    courier_readable,
    courier_row,
)
from gsomia.shell.store._reader import (
    SqlAuditReader,
    _head_size,
    _sync_log,
    _SyncedHead,
    _tolerant_text,
    read_external_head,
)
from gsomia.shell.store._repository import SqlRepository
from gsomia.shell.store._tables import NOTICE_ROWS, node_identity, outbox
from gsomia.shell.store._unit_of_work import SqlUnitOfWork

HEAD_FILE = "tree-head.json"
# The lease of the rows a claim took on PostgreSQL (:meth:`Store.claim`), and its end
# for those given back (:meth:`Store.release`), made once.
_LEASE = outbox.update().where(outbox.c.row.in_(sa.bindparam("rows", expanding=True))).values(
    next_at=sa.bindparam("until"))
_RELEASE = outbox.update().where(outbox.c.row.in_(sa.bindparam("rows", expanding=True)),
                                 outbox.c.status == "pending").values(
    next_at=sa.bindparam("now"))


class _ClaimPages(NamedTuple):
    """A claim's select for its shape: its first page, and the pages after a row (when
    rows the courier does not read filled one), ``asked`` rows each (bound parameters)."""

    first: sa.Select[Any]
    after: sa.Select[Any]


def _readable(conn: sa.Connection, pages: _ClaimPages, limit: int,
              values: dict[str, Any]) -> list[CourierRow]:
    """Up to ``limit`` rows of ``pages`` (ordered by row, their parameters ``values``) that
    the courier reads right (:func:`courier_row`); the others are passed over, each time,
    and never fill the limit: the rows after them are read instead."""
    out: list[CourierRow] = []
    after: int | None = None
    while len(out) < limit:
        asked = limit - len(out)
        page = pages.first if after is None else pages.after
        rows = list(conn.execute(page, {**values, "asked": asked, "after": after}))
        out.extend(r for r in map(courier_row, rows) if r is not None)
        if len(rows) < asked:
            break
        after = rows[-1].row
    return out


# The first link's claim names the recipients of stray notices one by one up to this many;
# beyond it (only rows written behind the node's back make so many) it says "not to these".
STRAYS_LISTED_AT_MOST = 1000


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
        # beside the database: copied once the log is synced, when the store closes (a
        # node process's copier holds them instead, and copies them within a bound).
        self._uncopied: TreeHead | None = None
        self._uncopied_lock = threading.Lock()
        self._synced_head = _SyncedHead()
        # Commits of :meth:`uow` ``(sync_outside=True)`` visible to readers and not yet
        # synced (their log sync runs after the write lock is released): what this process
        # sends meanwhile is held to :meth:`synced_for_sending`.
        self._syncing = 0
        self._syncing_lock = threading.Lock()
        # next_due's statements, made once a shape (:meth:`_due_query`), and the notices'
        # recipients they read (:meth:`_notice_recipients_cte`).
        self._next_due: dict[tuple[int, int, bool], Any] = {}
        self._recipients_cte: Any = None
        self._notices_to_query: Any = None
        self._claims: dict[tuple[bool, ...], _ClaimPages] = {}  # :meth:`_claim_query`
        # The node's signature checks said yes in this process (UnitOfWork.remembered):
        # one keeping per opened store, so per node per process, in memory only.
        self.remembered = RememberingChecks(checks_here)
        if migrate_schema:
            migrate(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def uow(self, *, synced: bool = True, at_once: bool = False,
            sync_outside: bool = False) -> SqlUnitOfWork:
        """A unit of work; ``synced=False`` and ``sync_outside``: see
        :class:`SqlUnitOfWork`. ``at_once`` (SQLite): raise :class:`WriterBusy` as it begins
        if another writer holds the lock, instead of waiting (elsewhere it waits)."""
        return SqlUnitOfWork(self, synced=synced, at_once=at_once, sync_outside=sync_outside)

    def syncing(self, change: int) -> None:
        """A commit synced outside the lock (:class:`SqlUnitOfWork`) begins (+1), or has
        synced or failed (-1)."""
        with self._syncing_lock:
            self._syncing += change

    def synced_for_sending(self) -> None:
        """Before anything leaves this process for a partner: if a commit synced outside the
        write lock is visible and not yet synced (a received item, the relay it queued), the
        log is synced here first, so nothing goes out that a power cut could take back. A
        sync of the log syncs every commit in it; none pending (nearly always): nothing.

        In this process only: a commit of that kind is SQLite's, whose node sends from the
        process that serves its API (several processes share a PostgreSQL database, where
        every commit is synced in the lock)."""
        if self._syncing:
            with self.engine.connect() as conn:
                _sync_log(conn)

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
        # The notices to anyone outside ``or_not_to`` (the first link's strays): to each
        # recipient with notices pending outside it, those read one index entry each.
        # ``NOT IN`` read every pending row, deliveries and all, on each of that link's
        # passes (with a partner down, thousands).
        strays = not deliveries and recipient is not None and or_not_to is not None
        values: dict[str, Any] = {"now": now, "to": recipient, "leaving": sorted(leaving),
                                  "or_not_to": sorted(or_not_to or ())}

        def bound(conn: sa.Connection) -> _ClaimPages:
            listed = False
            if strays and recipient is not None:
                tos = sorted({recipient, *(
                    to for to in self._notice_recipients(conn)
                    if to not in (or_not_to or ()))})
                # Recipients are whatever the outbox holds: rows written behind the node's
                # back with more distinct ones than a statement takes variables (SQLite:
                # 32,766) would make this claim raise at every pass, the link stalled.
                listed = len(tos) <= STRAYS_LISTED_AT_MOST
                if listed:
                    values["tos"] = tos
            return self._claim_query(deliveries, recipient is not None,
                                     or_not_to is not None, bool(leaving), listed)

        if self.dialect != "postgresql":
            with self.engine.connect() as conn:
                return _readable(conn, bound(conn), limit, values)
        with self.engine.connect() as conn, conn.begin():
            rows = _readable(conn, bound(conn), limit, values)
            if rows:
                conn.execute(_LEASE, {"rows": [r.row for r in rows],
                                      "until": now + timedelta(seconds=LEASE_S)})
        return rows

    def _claim_query(self, deliveries: bool, to: bool, or_not_to: bool, leaving: bool,
                     listed: bool = False) -> _ClaimPages:
        """:meth:`claim`'s select for its shape, made once a store, its values bound at each
        claim (the limit too: a ``.limit(n)`` made at a claim cost 20 us more): made at each
        claim, it cost as much CPU as the read (0.3 of the 0.6-0.75 ms of a claim that finds
        nothing; a courier's every pass claims twice, and at the hub each relayed item is a
        batch of its own, 3-4 claims an item). On PostgreSQL locked as :meth:`claim` says."""
        shape = (deliveries, to, or_not_to, leaving, listed)
        known = self._claims.get(shape)
        if known is not None:
            return known
        due = [outbox.c.status == "pending", outbox.c.next_at <= sa.bindparam("now"),
               *courier_readable(self.dialect, deliveries=deliveries, every=False)]
        if not deliveries:  # said as the index says it, for SQLite to read ix_outbox_notices
            due.insert(0, NOTICE_ROWS)
        if to and or_not_to and not deliveries and listed:  # the strays, found at the claim
            due.append(outbox.c.recipient.in_(sa.bindparam("tos", expanding=True)))
        elif to:  # to the recipient, or also to anyone outside or_not_to if given
            named = outbox.c.recipient == sa.bindparam("to")
            due.append(named if not or_not_to else sa.or_(
                named, outbox.c.recipient.notin_(sa.bindparam("or_not_to", expanding=True))))
        if leaving:
            due.append(outbox.c.row.notin_(sa.bindparam("leaving", expanding=True)))
        asked = sa.bindparam("asked", type_=sa.Integer)
        first = sa.select(*courier_columns(self.dialect)).where(*due).order_by(outbox.c.row)
        after = first.where(outbox.c.row > sa.bindparam("after", type_=sa.Integer))
        first, after = first.limit(asked), after.limit(asked)
        if self.dialect == "postgresql":
            first = first.with_for_update(skip_locked=True)
            after = after.with_for_update(skip_locked=True)
        pages = self._claims[shape] = _ClaimPages(first, after)
        return pages

    def next_due(self, *, recipients: Collection[str], notices_to: str | None = None,
                 or_not_to: Collection[str] | None = None) -> datetime | None:
        """When the earliest pending row a sender posts is due: a delivery to one of
        ``recipients`` or a notice (to ``notices_to`` if named, as :meth:`claim` takes
        them; None: nothing is queued)."""
        # Each recipient's rows read from the earliest on, the full check of
        # :func:`courier_readable` in the query (only rows the courier takes, as
        # :meth:`claim`; one written behind the node's back must not read as due now, every
        # pass): the first row but for such rows. The min over every row that passes cost
        # that check on each pending row (review22), paid on every idle or backoff pass of
        # each link. A recipient named: its deliveries and notices at once, on
        # ``ix_outbox_due`` in order (the first row of either kind that passes ends the
        # read, however many of the other are queued); one whose notices alone this
        # sender posts: on ``ix_outbox_notices`` (migrations 0021-0022), which holds no
        # delivery. A link reads its own rows alone, however many are queued to a partner
        # that is down. One statement whatever the number of recipients (tidy27: a query
        # for each recipient of stray notices, on each pass of the first link).
        named = sorted(set(recipients))
        # Whose notices this sender posts, as :meth:`claim` takes them: ``notices_to``, and
        # with ``or_not_to`` anyone outside it; all of them if neither; a recipient named
        # is read with its deliveries.
        direct = [] if notices_to is None or notices_to in named else [notices_to]
        strays = notices_to is None or or_not_to is not None
        if not named and not direct and not strays:
            return None
        known = set(named) if notices_to is None else {*named, notices_to, *(or_not_to or ())}
        values: dict[str, Any] = {f"named{n}": to for n, to in enumerate(named)}
        values.update({f"direct{n}": to for n, to in enumerate(direct)})
        values["known"] = sorted(known)
        query = self._due_query(len(named), len(direct), strays)
        with self.engine.connect() as conn:
            due: datetime | None = conn.execute(query, values).scalar()  # aware UTC
        return due

    def _notice_recipients(self, conn: sa.Connection) -> list[str]:
        """The recipients of the pending notices, one entry of ``ix_outbox_notices`` read
        for each (a partner down with thousands queued costs one), in one statement. Text
        only, as the courier takes them: SQLite sorts a number before any text, bytes
        after."""
        recipients = self._notice_recipients_cte()
        query = self._notices_to_query
        if query is None:
            query = self._notices_to_query = sa.select(recipients.c.recipient).where(
                recipients.c.recipient.is_not(None))
        return [to for to in conn.execute(query).scalars() if isinstance(to, str)]

    def _notice_recipients_cte(self) -> Any:
        """The recipients of the pending notices, each the next entry of
        ``ix_outbox_notices`` after the one before (a skip scan: one entry read for each
        recipient, however many notices are queued to it), the last row NULL."""
        if self._recipients_cte is not None:
            return self._recipients_cte
        pending = outbox.c.status == "pending"

        def after(previous: Any) -> Any:
            return sa.select(outbox.c.recipient).where(
                NOTICE_ROWS, pending, outbox.c.recipient > previous
            ).order_by(outbox.c.recipient).limit(1).scalar_subquery()

        first = sa.select(after(sa.literal("", sa.String)).label("recipient"))
        recipients = first.cte("notice_recipients", recursive=True)
        self._recipients_cte = recipients.union_all(
            sa.select(after(recipients.c.recipient).label("recipient"))
            .where(recipients.c.recipient.is_not(None)))
        return self._recipients_cte

    def _due_query(self, named: int, direct: int, strays: bool) -> Any:
        """:meth:`next_due`'s statement for its shape (how many recipients named, a
        recipient of notices apart from them or not, the strays read or not), made once a
        store: making the full check's terms cost as much CPU a call as running them on the
        earliest rows."""
        shape = (named, direct, strays)
        query = self._next_due.get(shape)
        if query is not None:
            return query
        pending = outbox.c.status == "pending"

        def either(to: Any) -> Any:
            return sa.select(outbox.c.next_at).where(pending, outbox.c.recipient == to, sa.or_(
                sa.and_(*courier_readable(self.dialect, deliveries=True)),
                sa.and_(*courier_readable(self.dialect, deliveries=False)))
            ).order_by(outbox.c.next_at).limit(1).scalar_subquery()

        def notice(to: Any) -> Any:
            return sa.select(outbox.c.next_at).where(
                NOTICE_ROWS, pending, outbox.c.recipient == to,
                *courier_readable(self.dialect, deliveries=False)
            ).order_by(outbox.c.next_at).limit(1).scalar_subquery()

        parts = [sa.select(either(sa.bindparam(f"named{n}", type_=sa.String)).label("due"))
                 for n in range(named)]
        parts += [sa.select(notice(sa.bindparam(f"direct{n}", type_=sa.String)).label("due"))
                  for n in range(direct)]
        if strays:
            recipients = self._notice_recipients_cte()
            parts.append(sa.select(notice(recipients.c.recipient).label("due")).where(
                recipients.c.recipient.is_not(None),
                recipients.c.recipient.notin_(sa.bindparam("known", expanding=True))))
        each = sa.union_all(*parts).subquery("each_due")
        query = sa.select(sa.func.min(each.c.due))
        self._next_due[shape] = query
        return query

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
                conn.execute(_RELEASE, {"rows": sorted(rows), "now": now})

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
            self._copier = _HeadCopier(self._write_external_head, copy_held=self._copy_held)

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
        """Keep the head of an unsynced commit (``SqlUnitOfWork``, ``synced=False``) to be
        copied once the log is synced: by the copier thread within :attr:`_HeadCopier.HOLD`
        seconds in a long-running node (:meth:`copy_heads_behind`), else at :meth:`dispose`.
        The commit itself waits for neither."""
        if self._copier is not None:
            self._copier.hold(head)
            return
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

    def _copy_held(self, head: TreeHead) -> None:
        """Sync the log, then copy ``head`` (of a commit made before the sync) beside the
        database: the copy is never ahead of what the disk holds. For the copier thread."""
        try:
            with self.engine.connect() as conn:
                _sync_log(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise OSError(f"the log could not be synced: {exc}") from exc
        self._synced_head.mark(head)  # a reader handing it out need not sync again
        self._write_external_head(head)

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
    did, and raced its next commit's disk sync for the file system's journal.

    A head of an unsynced commit is held (:meth:`hold`), not put: it is copied only once the
    log is synced, by this thread, within ``HOLD`` seconds (plus at most an ``every``) unless
    a synced commit's head covers it first."""

    # Seconds: at most this much more lag behind a run of commits. At a delivery's pace (20
    # items/s) each commit's copy came after the interval and was written and synced alone,
    # one on each node per item, racing the next item's own syncs for the file system's
    # journal (a commit that met one took half as long again, latency20); a quarter second
    # writes one in five, and a lone commit after a quiet spell is still copied at once.
    EVERY = 0.25
    # Seconds: at most this long after an unsynced commit (:meth:`hold`) its head is copied,
    # if no synced commit's head has superseded it by then. A node whose last commit was
    # unsynced (a partner's receipts settled, a partner's tree head recorded) and that then
    # idled kept its copy behind the database until it stopped: a rollback of those commits
    # on the host's disk did not show. The run of unsynced commits within it costs one sync
    # of the log and one write, off the commits' way (they are unsynced for latency).
    HOLD = 1.0

    def __init__(self, write: Callable[..., None], every: float = EVERY,
                 wait: Callable[[threading.Condition, Callable[[], bool], float], object] =
                 threading.Condition.wait_for, *,
                 copy_held: Callable[[TreeHead], None] | None = None,
                 hold: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._every = every
        # Sync the log, then write a held head (Store._copy_held); None: held heads are
        # written as they are (a test's copier, whose heads are of no log).
        self._copy_held = copy_held if copy_held is not None else \
            (lambda head: write(head, sync=True))
        self._hold = self.HOLD if hold is None else hold
        self._clock = clock
        self._held: TreeHead | None = None
        self._held_until = 0.0  # by the clock: when the held head is copied at the latest
        # How the interval after a write is waited out, holding the condition as its
        # ``wait_for`` does: until the predicate holds or ``every`` seconds pass. A test
        # passes a clock of its own, so that the interval ends when it says, not when a
        # loaded machine gets round to it.
        self._wait = wait
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
                if self._held is not None and head.size >= self._held.size:
                    # A synced commit's head covers the held one (and its commit synced the
                    # log, the held commit's pages with it): no sync, no write of its own.
                    self._held = None
                self._cond.notify_all()
                return
        self._write(head, sync=sync)  # after close: at once, as without a copier

    def hold(self, head: TreeHead) -> None:
        """``head`` is of a commit not yet synced: copy it, the log synced first, within
        ``hold`` seconds of the oldest head held and not yet copied (a later one held
        meanwhile is copied in its place), unless a head put meanwhile covers it."""
        with self._cond:
            if not self._closed:
                if head.size <= max(self._written, -1 if self._due is None
                                    else self._due[0].size):
                    return  # a synced commit's head, later than this one, is out already
                if self._held is None:
                    self._held_until = self._clock() + self._hold
                if self._held is None or head.size > self._held.size:
                    self._held = head
                self._cond.notify_all()
                return
        self._copy_held(head)  # after close: at once, as a store's dispose would

    def flush(self) -> None:
        """Return once every head put so far is written (or failed)."""
        with self._cond:
            self._hurried += 1
            self._cond.notify_all()
            try:
                while self._due is not None or self._held is not None or self._writing:
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
                held = False
                while self._due is None and not self._closed:
                    if self._held is None:
                        self._cond.wait()
                        continue
                    left = self._held_until - self._clock()
                    if left <= 0 or self._hurried > 0:
                        break
                    # The held head waits out its bound, unless a head is put, or the
                    # copier is hurried or closed.
                    self._wait(self._cond, lambda: self._due is not None or self._closed
                               or self._hurried > 0, left)
                if self._due is not None:
                    (head, sync), self._due = self._due, None
                elif self._held is not None:  # its bound is over, or hurried, or closing
                    head, sync, self._held, held = self._held, True, None, True
                else:
                    return
                if head.size < self._written:
                    # Put late by a slower committer: a newer one is out already.
                    self._cond.notify_all()
                    continue
                self._writing = True
            try:
                if held:
                    self._copy_held(head)
                else:
                    self._write(head, sync=sync)
                self._written = head.size
            except Exception as exc:
                # The database holds the commit whatever happens here: the copy lags until
                # a later head is written (a full disk, a folder made read-only, the log's
                # sync refused). Whatever it is, the thread goes on: dead, it would leave
                # every later head uncopied and the node's stop waiting for its flush.
                print(f"gsomia: the tree head's copy was not written: {exc!r}",
                      file=sys.stderr, flush=True)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
                    self._wait(self._cond, lambda: self._closed or self._hurried > 0,
                               self._every)


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
