"""The TAXII ``ObjectStore`` over the node's database (``gsomia.shell.store`` tables).

Reads are single keyset queries over ``items`` in (``added_at``, ``row``) order, the index
``ix_items_added_at`` (SQLite appends the rowid to every index, so that index *is* the
keyset; PostgreSQL wants ``(added_at, row)``, see below). A version is visible when the
national label of its latest custody record (what Art. 7 is decided on, as in
``handlers.read_item``) is one of the caller's visible label classes, so paging, ``first``
and ``last`` all happen in SQL over what the caller may see, and no hidden version leaves a
trace. Label classes are the distinct national labels; they are read incrementally (custody
rows after the last one seen), so any number of API processes over one database agree.

Writes go through ``handlers.publish_many`` (validate, label, bind, store, audit, queue the
deliveries, one commit, one audit leaf for the batch: ``items-published``); granted reads
are audited (``record_accesses``), one event per request, before the page is returned;
reads by id that find nothing the caller may see (absent or hidden) are queued and written
moments later by a background writer (``record_miss``).

Indexes this wants beyond migration 0001 (not added here; the store's owner decides):
PostgreSQL ``items (added_at, row)`` for the keyset (SQLite already has it implicitly).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import sqlalchemy as sa

from gsomia.core.agreements import Catalogue
from gsomia.core.custody import item_version
from gsomia.core.errors import GsomiaError, MalformedInput, Unavailable
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person
from gsomia.core.taxii import taxii_time
from gsomia.core.types import instant, utc_text
from gsomia.service import handlers
from gsomia.service.ports import BindingSigner, KeyStore, StixValidator, UnitOfWork
from gsomia.service.refusals import OTHER_ACCOUNTS, RefusalWindow
from gsomia.service.taxii import record_accesses
from gsomia.service.taxii_ports import (
    AccessRecord,
    AuditUnavailable,
    Outcome,
    Page,
    PostStatus,
    Query,
    RefusedPost,
    StoredVersion,
    Submission,
)
from gsomia.shell.store import (
    SqlUnitOfWork,
    Store,
    UTCDateTime,
    make_engine,
    revoked_token,
    users,
)

__all__ = ["GroupCommit", "SqlObjectStore", "create_statuses", "taxii_statuses",
           "version_forms"]

# TAXII status resources must be readable from any API process, so they live in the
# database. Created on first use (``checkfirst``) rather than by an Alembic revision, so as not
# to fork the store's migration chain; a later migration may adopt it unchanged.
_meta = sa.MetaData()
taxii_statuses = sa.Table(
    "taxii_statuses", _meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)

_SAVE_STATUS = "INSERT INTO taxii_statuses (id, owner, body, at) VALUES (?, ?, ?, ?)"
_TOKEN_TTL = 5.0  # seconds a token lookup is reused: auth need not hit the database each call
# People refused within one window (a minute) counted apart by name: a window is a few
# counters, forgotten when it closes, so ten thousand of them cost a few megabytes at most.
PEOPLE_APART = 10_000


def _insert_status(conn: sa.Connection, status_id: str, owner: str, body: Mapping[str, Any],
                   now: datetime) -> None:
    # orjson, and on SQLite the driver's own statement: a post's status lists each of its
    # objects, and the json module and Core's insert cost a tenth of the post.
    text = orjson.dumps(dict(body)).decode("utf-8")
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_SAVE_STATUS, (status_id, owner, text, taxii_time(now)))
    else:
        conn.execute(taxii_statuses.insert(), {"id": status_id, "owner": owner,
                                               "at": taxii_time(now), "body": text})


def create_statuses(engine: sa.Engine) -> None:
    """The statuses table, made if missing, under the write lock taken first. Made in a
    read transaction (``create_all``'s own), the CREATE asked for the lock after a read,
    which SQLite refuses at once, with no wait, whenever another connection writes
    meanwhile: ``node run``'s sender, head copier and centre, started before the API's
    store is made, ended KOR's first start with ``database is locked``."""
    with engine.connect() as conn:
        if sa.inspect(conn).has_table(taxii_statuses.name):
            return
    with engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # Two processes of a node making it at once (as the schema's migration).
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72311)")
        _meta.create_all(conn, checkfirst=True)


def version_forms(at: datetime) -> list[str]:
    """Every way STIX may write the instant ``at`` (Z, 0-9 fraction digits): the exact
    ``match[version]`` filter compares the stored text with these."""
    base = utc_text(at)[:-1]  # whole seconds, without its Z
    micro = f"{at.microsecond:06d}".rstrip("0")
    out = [] if micro else [base + "Z"]
    for digits in range(max(len(micro), 1), 10):
        out.append(f"{base}.{f'{at.microsecond:06d}'.ljust(9, '0')[:digits]}Z")
    return out


class SqlObjectStore:
    """``ObjectStore`` over a :class:`Store` (SQLite or PostgreSQL)."""

    def __init__(self, store: Store, *, keys: KeyStore, catalogue: Catalogue,
                 validate: StixValidator | None,
                 clock: Callable[[], float] = time.monotonic,
                 audit_reads: str = "sync", signer: BindingSigner | None = None) -> None:
        if audit_reads not in ("sync", "batched"):
            raise MalformedInput(f"{audit_reads!r} is not a read-audit mode",
                                 where="--audit-reads", expected="sync or batched")
        self.audit_reads = audit_reads
        self._group = GroupCommit(lambda batch: record_accesses(self.store.uow(), batch))
        self._queue: list[AccessRecord] = []
        self._queue_lock = threading.Lock()
        self._queued = threading.Condition(self._queue_lock)
        # Held for a whole flush: a caller finding the queue empty because the writer thread
        # has just taken it waits for that commit, so that on return every event queued
        # before the call is in the log (a test read the log while the writer's commit ran).
        self._flush_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._flush_error: str | None = None
        self._closing = False
        self.store = store
        self.keys = keys
        self.catalogue = catalogue
        self.validate = validate
        self.signer = signer  # the bindings' signatures; None: in the publishing thread
        self._clock = clock
        self._lock = threading.Lock()
        self._labels: dict[str, SecurityLabel] = {}
        self._custody_seen = 0
        self._tokens: dict[bytes, tuple[float, tuple[str, Person] | None,
                                        tuple[int, int] | None]] = {}
        self._statements: dict[tuple[Any, ...], Any] = {}
        self._statuses: sa.Engine | None = None
        # People's refused posts: ten a minute each on record one by one, the rest counted,
        # so an account probing what it may write is traced without growing the log freely.
        # Counted apart by name up to PEOPLE_APART accounts refused within one window (a
        # partner's fifty left the 51st person nameless), beyond them as OTHER_ACCOUNTS.
        self.refusals = RefusalWindow(per_window=10, max_partners=PEOPLE_APART,
                                      overflow=OTHER_ACCOUNTS)
        create_statuses(store.engine)
        self.label_classes()  # read them all now, not on the first request

    # ---- label classes ---------------------------------------------------------------------
    def _class_sql(self, column: str) -> str:
        """SQL for a label's class: its canonical JSON without ``created``, which every
        publication sets anew but no access decision reads (so classes stay few)."""
        if self.store.dialect == "postgresql":
            return f"((convert_from({column}, 'UTF8')::jsonb - 'created')::text)"
        return f"json_remove(CAST({column} AS TEXT), '$.created')"

    def _current_sql(self, alias: str) -> str:
        """The class of the national label of the latest custody record of a version."""
        return (f"(SELECT {self._class_sql('c.national_label')} FROM custody AS c "
                f"WHERE c.item_id = {alias}.id AND c.version = {alias}.version "
                f'ORDER BY c."row" DESC LIMIT 1)')

    def _text(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        # Statements are plain SQL, built once per shape: constructing them with the
        # expression language costs milliseconds per request, more than running them.
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    def label_classes(self) -> Mapping[str, SecurityLabel]:
        with self.store.engine.connect() as conn:
            return self._classes(conn)

    def _classes(self, conn: sa.Connection) -> Mapping[str, SecurityLabel]:
        """:meth:`label_classes`, read on ``conn`` (in its transaction)."""
        # The class is computed on each distinct stored label, not on each custody row: a
        # node's first look at a million rows then groups bytes instead of parsing JSON.
        stmt = self._text(("classes",), lambda: sa.text(
            f"SELECT {self._class_sql('national_label')} AS cls, max(last) AS last FROM "
            f'(SELECT national_label, max("row") AS last FROM custody WHERE "row" > :seen '
            f"GROUP BY national_label) AS labels GROUP BY cls"))
        with self._lock:
            seen = {"seen": self._custody_seen}
            if self.store.dialect == "sqlite":
                # Asked on every read and nearly always empty: SQLAlchemy's statement path
                # cost more than the query. The driver's own, in the same transaction.
                if not conn.in_transaction():
                    conn.begin()
                found = conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    stmt.text, seen).fetchall()
            else:
                found = conn.execute(stmt, seen).all()
            for key, last in found:
                if key not in self._labels:
                    self._labels[key] = SecurityLabel.from_stored(json.loads(key))
                self._custody_seen = max(self._custody_seen, int(last))
            return dict(self._labels)

    # ---- reads -----------------------------------------------------------------------------
    def _page_sql(self, shape: tuple[bool, bool, bool, bool, bool, bool, bool, bool],
                  sizes: tuple[int, int, int, int]) -> sa.TextualSelect:
        content, ids, types, last, first, exact, added_after, after = shape
        cur_i, cur_j = self._current_sql("i"), self._current_sql("j")
        latest = ""
        if self.store.dialect == "sqlite":
            # The latest custody record joined once by its row (found in the index alone),
            # not looked up twice, for the filter and for the answer: at 1,000,000 items
            # each lookup is a walk to cold pages (a page of 1,000: 20-50% less CPU).
            cur_i = self._class_sql("c.national_label")
            latest = (' JOIN custody AS c ON c."row" = (SELECT max(m."row") FROM custody AS m'
                      " WHERE m.item_id = i.id AND m.version = i.version)")
        params: list[sa.BindParameter[Any]] = []

        def among(name: str, size: int) -> str:
            # A short list is bound item by item (``:visible_0, …``) in a statement kept
            # for its length; an expanding parameter is rewritten on every execution.
            if size:
                return "(" + ", ".join(f":{name}_{k}" for k in range(size)) + ")"
            params.append(sa.bindparam(name, expanding=True))
            return f":{name}"

        visible = among("visible", sizes[0])
        where = [f"{cur_i} IN {visible}"]
        if ids:
            where.append(f"i.id IN {among('ids', sizes[1])}")
        if types:
            # SQLite: unary + keeps the planner off ix_items_type, which would read every
            # object of the type and sort them; the keyset index serves the order instead.
            plus = "+" if self.store.dialect == "sqlite" else ""
            where.append(f"{plus}i.type IN {among('types', sizes[2])}")
        choices = []
        if last:
            choices.append("NOT EXISTS (SELECT 1 FROM items AS j WHERE j.id = i.id AND "
                           f"j.version > i.version AND {cur_j} IN {visible})")
        if first:
            choices.append("NOT EXISTS (SELECT 1 FROM items AS j WHERE j.id = i.id AND "
                           f"j.version < i.version AND {cur_j} IN {visible})")
        if exact:
            choices.append(f"i.version IN {among('forms', sizes[3])}")
        if choices:
            where.append("(" + " OR ".join(choices) + ")")
        if added_after:
            where.append("i.added_at > :added_after")
            params.append(sa.bindparam("added_after", type_=UTCDateTime))
        if after:
            # The bare ``>=`` is the keyset's seek: without it the planner reads the index
            # from its first entry on every page, so the pages of a large store cost more
            # the further in they are (page 290 of 300,000 items: 120 ms instead of 0.5).
            where.append('i.added_at >= :after_at AND (i.added_at > :after_at '
                         'OR i."row" > :after_row)')
            params.append(sa.bindparam("after_at", type_=UTCDateTime))
        sql = (f'SELECT i."row" AS row_key, i.id, i.version, i.added_at, {cur_i} AS label'
               + (", i.content" if content else "")
               + " FROM items AS i" + latest + " WHERE " + " AND ".join(where)
               + ' ORDER BY i.added_at, i."row" LIMIT :limit')
        # added_at comes back raw and is read by _added_at: SQLAlchemy's own SQLite
        # DateTime parsing cost more per row than the rest of a page.
        return sa.text(sql).bindparams(*params).columns(
            sa.column("row_key"), sa.column("id"), sa.column("version"),
            sa.column("added_at"), sa.column("label"),
            *([sa.column("content")] if content else []))

    def page(self, query: Query) -> Page:
        with self.store.engine.connect() as conn:
            return self._page(conn, query)

    def page_by(self, query_of: Callable[[Mapping[str, SecurityLabel]], Query]) -> Page:
        # A read transaction costs a GET by id more than the statements run in it.
        with self.store.engine.connect() as conn:
            return self._page(conn, query_of(self._classes(conn)))

    def _page(self, conn: sa.Connection, query: Query) -> Page:
        f = query.filters
        vm = f.versions
        if not query.visible or "2.1" not in f.spec_versions:
            return Page([], False)  # nothing visible; the store holds STIX 2.1 only
        forms = [form for at in sorted(vm.at) for form in version_forms(at)]
        if not vm.all and not (vm.last or vm.first or forms):
            return Page([], False)
        ids = sorted({query.object_id} if query.object_id is not None else f.ids)
        params: dict[str, Any] = {"limit": query.limit + 1}
        # Item by item: the reader's label classes (a few, the same on every request) and
        # the one id of a GET by id. The lists a request picks stay expanding, so that the
        # statements kept stay few whatever is asked.
        sizes = (_bind_list(params, "visible", sorted(query.visible), 8),
                 _bind_list(params, "ids", ids, 1),
                 _bind_list(params, "types", sorted(f.types), 0),
                 _bind_list(params, "forms", forms if not vm.all else [], 0))
        if f.added_after is not None:
            params["added_after"] = f.added_after
        if query.after is not None:
            try:
                params["after_row"] = int(query.after.key)
            except ValueError:
                return Page([], False)
            params["after_at"] = query.after.date_added
        shape = (query.with_content, bool(ids), bool(f.types), vm.last and not vm.all,
                 vm.first and not vm.all, bool(forms) and not vm.all,
                 f.added_after is not None, query.after is not None)
        stmt = self._text(("page", *shape, *sizes), lambda: self._page_sql(shape, sizes))
        rows = conn.execute(stmt, params).all()
        more = len(rows) > query.limit
        content = query.with_content
        out = [StoredVersion(r[1], r[2], _added_at(r[3]), str(r[0]), r[4],
                             bytes(r[5]) if content else None)
               for r in rows[:query.limit]]
        return Page(out, more)

    def labels_of(self, object_id: str) -> Sequence[SecurityLabel]:
        stmt = self._text(("labels_of",), lambda: sa.text(
            f"SELECT {self._current_sql('i')} FROM items AS i WHERE i.id = :id"))
        with self.store.engine.connect() as conn:
            rows = conn.execute(stmt, {"id": object_id}).scalars().all()
        return [SecurityLabel.from_stored(json.loads(r)) for r in rows if r is not None]

    # ---- writes ----------------------------------------------------------------------------
    def add_objects(self, submissions: Sequence[Submission], publisher: Person,
                    now: datetime, *, status: PostStatus | None = None,
                    kept_as_is: Callable[[bytes], str | None] | None = None
                    ) -> Sequence[Outcome]:
        outcomes: dict[int, Outcome] = {}
        checked: dict[handlers.LabelRequest, str | None] = {}  # a label's problem, if any
        entries: list[tuple[int, dict[str, Any], handlers.LabelRequest]] = []
        seen: set[tuple[str, str]] = set()
        # The objects of a request share a few label objects: each is asked for once.
        # (label, its request, the request's problem): looked up by the label's identity,
        # not by hashing the request anew for each object.
        requests: dict[int, tuple[SecurityLabel, handlers.LabelRequest, str | None]] = {}
        for n, sub in enumerate(submissions):
            obj = dict(sub.obj)  # stored as posted: it reads back with its own marking refs
            version = _version_text(obj)
            known = requests.get(id(sub.label))
            if known is None or known[0] is not sub.label:
                request = handlers.LabelRequest(
                    sub.label.level, tuple(sorted(sub.label.rel_to)), sub.label.purpose,
                    frozenset(sub.label.caveats), sub.label.policy, sub.label.category)
                if request not in checked:  # equal labels of distinct objects: asked once
                    try:
                        handlers.make_label(request, originator=self.keys.party,
                                            catalogue=self.catalogue, now=now)
                        checked[request] = None
                    except GsomiaError as exc:
                        checked[request] = str(exc)
                known = requests[id(sub.label)] = (sub.label, request, checked[request])
            request, problem = known[1], known[2]
            if problem is None and self.validate is not None:
                try:
                    self.validate(obj)
                except GsomiaError as exc:
                    problem = str(exc)
            if problem is not None:
                outcomes[n] = Outcome(str(obj["id"]), version, False, problem)
                continue
            if (obj["id"], version) in seen:
                outcomes[n] = Outcome(str(obj["id"]), version, False,
                                      "the same version appears twice in this request")
                continue
            seen.add((obj["id"], version))
            entries.append((n, obj, request))
        # Whether each may be added, and whether it is held already, is decided inside the
        # batch's transaction (``skipped``): one read of each, not one before and one in it.
        if not self._publish(entries, publisher, now, outcomes, status, kept_as_is) \
                and status is not None:
            # Nothing committed by the batch (nothing to write, or one commit per object):
            # the status on its own, once the objects it reports on are committed.
            self.save_status(status.status_id, status.owner,
                             status.make([outcomes[n] for n in sorted(outcomes)]), now)
        return [outcomes[n] for n in sorted(outcomes)]

    def _publish(self, ready: list[tuple[int, dict[str, Any], handlers.LabelRequest]],
                 publisher: Person, now: datetime, outcomes: dict[int, Outcome],
                 status: PostStatus | None = None,
                 kept_as_is: Callable[[bytes], str | None] | None = None) -> bool:
        """Publish ``ready`` in one commit, filling ``outcomes``; True when ``status`` was
        saved in that commit."""
        if not ready:
            return False
        skipped: dict[int, str] = {}
        saving: list[dict[int, Outcome]] = []  # the outcomes the saved status reports

        def save_with_batch(uow: UnitOfWork, published: Sequence[handlers.Published]) -> None:
            assert status is not None
            every = dict(outcomes)
            self._settle(ready, published, skipped, every)
            _insert_status(cast("SqlUnitOfWork", uow).repo.conn, status.status_id,
                           status.owner, status.make([every[n] for n in sorted(every)]), now)
            saving.append(every)

        try:
            published = handlers.publish_many(
                self.store.uow(), keys=self.keys, catalogue=self.catalogue,
                entries=[(o, r) for _, o, r in ready], now=now, actor=publisher.name,
                validate=None, publisher=publisher, as_posted=True, one_leaf=True,
                signer=self.signer, skipped=skipped,
                before_commit=None if status is None else save_with_batch,
                # Each submission passed the service's checks (spec version, extension
                # properties, the STIX check): see Submission.
                stix_checked=True, kept_as_is=kept_as_is)
        except Unavailable:
            raise  # no signatures: the whole batch is refused, not each object in turn
        except GsomiaError:
            if len(ready) == 1:
                raise
            # Someone else stored one of these meanwhile: fall back to one commit each, so
            # each object gets its own outcome.
            for entry in ready:
                try:
                    self._publish([entry], publisher, now, outcomes, None, kept_as_is)
                except Unavailable:
                    raise
                except GsomiaError as exc:
                    outcomes[entry[0]] = Outcome(entry[1]["id"], _version_text(entry[1]),
                                                 False, str(exc))
            return False
        if saving:  # settled once already, for the status committed with the batch
            outcomes.update(saving[-1])
        else:
            self._settle(ready, published, skipped, outcomes)
        return bool(saving)

    @staticmethod
    def _settle(ready: list[tuple[int, dict[str, Any], handlers.LabelRequest]],
                published: Sequence[handlers.Published], skipped: Mapping[int, str],
                outcomes: dict[int, Outcome]) -> None:
        """The outcome of each of ``ready``: published, or skipped for its reason."""
        done = iter(published)
        for i, (n, obj, _) in enumerate(ready):
            reason = skipped.get(i)
            if reason is None:
                stored = next(done)
                outcomes[n] = Outcome(stored.item_id, stored.version, True)
            else:  # held: a success that stores nothing; else refused by the access rule
                outcomes[n] = Outcome(obj["id"], _version_text(obj),
                                      reason == handlers.ALREADY_HELD, reason)

    def record_miss(self, record: AccessRecord) -> None:
        self._enqueue(record)

    def record_refused(self, refused: RefusedPost) -> None:
        try:
            handlers.refuse_bounded(
                self.store.uow(), refusals=self.refusals, actor=refused.person,
                action="taxii-post", reasons=refused.reasons, now=refused.at,
                item_id=refused.item_ids[0][:300] if refused.item_ids else None,
                details={"collection": refused.collection, "refused": refused.count,
                         "item_ids": [i[:300] for i in refused.item_ids[:10]]})
        except Exception as exc:  # counted again (refuse_bounded gave it back): written later
            print(f"gsomia: a refused TAXII post of {refused.person} is counted, not yet on "
                  f"record: {exc}", file=sys.stderr)

    def record_access(self, record: AccessRecord) -> None:
        if self.audit_reads == "batched":
            self._enqueue(record)
            return
        try:
            self._group.commit(record)
        except Exception as exc:  # unaudited means unread: the API answers 503
            raise AuditUnavailable(f"the audit log cannot be written: {exc}") from exc

    def record_access_now(self, record: AccessRecord, *, alone: bool) -> bool:
        """:meth:`record_access` on the caller's thread, if it waits for no other reader
        there: batched, while the queue has room; sync, when the caller is ``alone`` (no
        other reader could share the commit) and no commit is under way. False: nothing
        was recorded, and the caller calls :meth:`record_access` where it may wait."""
        if self.audit_reads == "batched":
            return self._enqueue(record, may_flush=False)
        if not alone:
            return False
        try:
            return self._group.commit_unless_busy(record)
        except Exception as exc:  # unaudited means unread: the API answers 503
            raise AuditUnavailable(f"the audit log cannot be written: {exc}") from exc

    # Batched read auditing: reads wait for no fsync; a writer thread commits the queued
    # access events together at most FLUSH_EVERY seconds later. The price is a window: a
    # node killed in it loses the record of reads it already served. A failed flush stops
    # all reads (AuditUnavailable, 503) until one succeeds: fail closed, never unaudited.
    # Refused reads by id (absent or hidden) always take this path, whatever the mode. The
    # queue is bounded: past MAX_QUEUED the request that finds it full writes it out itself,
    # so a flood costs its sender time, alike for absent and hidden items, and no memory.
    FLUSH_EVERY = 0.05
    MAX_QUEUED = 10_000

    def _enqueue(self, record: AccessRecord, *, may_flush: bool = True) -> bool:
        """Queue ``record`` for the writer thread; the caller that fills the queue flushes
        it. Without ``may_flush``, False (nothing queued) where that would be this caller:
        the room is checked and taken under one lock, so another reader filling the queue
        in between cannot make this caller wait for a commit."""
        with self._queue_lock:
            if self._flush_error is not None:
                raise AuditUnavailable(f"the audit log cannot be written: {self._flush_error}")
            if not may_flush and len(self._queue) + 1 >= self.MAX_QUEUED:
                return False
            self._queue.append(record)
            full = len(self._queue) >= self.MAX_QUEUED
            if self._writer is None:
                self._writer = threading.Thread(target=self._flush_loop, daemon=True,
                                                name="gsomia-access-audit")
                self._writer.start()
            self._queued.notify()
        if full:
            try:
                self.flush_access()
            except Exception as exc:
                raise AuditUnavailable(f"the audit log cannot be written: {exc}") from exc
        return True

    def _flush_loop(self) -> None:
        while True:
            with self._queue_lock:
                while not self._queue and not self._closing:
                    self._queued.wait()
                if not self._queue and self._closing:
                    return
            time.sleep(self.FLUSH_EVERY)
            try:
                self.flush_access()
            except Exception:  # kept in _flush_error: reads refuse until it clears
                time.sleep(self.FLUSH_EVERY)

    def flush_access(self) -> None:
        """Commit every queued access event now (also called on shutdown); on return, every
        event queued before the call is committed, whoever's flush wrote it."""
        with self._flush_lock:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if not batch:
                return
            try:
                record_accesses(self.store.uow(), batch)
            except Exception as exc:  # any failure to write the log must stop reads
                with self._queue_lock:
                    self._flush_error = f"{type(exc).__name__}: {exc}"
                    self._queue = batch + self._queue
                raise
            with self._queue_lock:
                self._flush_error = None

    def close(self) -> None:
        with self._queue_lock:
            self._closing = True
            self._queued.notify()
        self.flush_access()
        try:
            handlers.record_action_summaries(self.store.uow(), refusals=self.refusals,
                                             now=None)
        except Exception as exc:  # the node still stops; the operator is told
            print(f"gsomia: could not audit the people's refused posts still counted: {exc}",
                  file=sys.stderr)
        close_signer = getattr(self.signer, "close", None)
        if close_signer is not None:
            close_signer()
        if self._statuses is not None:
            self._statuses.dispose()
            self._statuses = None

    # ---- statuses and people ---------------------------------------------------------------
    def _status_engine(self) -> sa.Engine:
        """Where statuses are written. On SQLite, its own connections with
        ``synchronous=NORMAL``: a status commit then waits for no disk sync of its own (the
        objects it reports on were committed, synced, just before). The WAL is one file, so
        the node's next synced commit, a read's audit event or a publish, syncs the status
        too; only a power cut before that loses it, and a lost status is a 404, never a
        wrong answer."""
        if self.store.dialect != "sqlite":
            return self.store.engine
        with self._lock:
            if self._statuses is None:
                engine = make_engine(self.store.url)

                @sa.event.listens_for(engine, "connect")
                def _relaxed(dbapi_conn: Any, _record: Any) -> None:
                    dbapi_conn.execute("PRAGMA synchronous=NORMAL")

                self._statuses = engine
            return self._statuses

    def save_status(self, status_id: str, owner: str, body: Mapping[str, Any],
                    now: datetime) -> None:
        engine = self._status_engine()
        with engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
            _insert_status(conn, status_id, owner, body, now)

    def status(self, status_id: str) -> tuple[str, Mapping[str, Any]] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(taxii_statuses.c.owner, taxii_statuses.c.body)
                               .where(taxii_statuses.c.id == status_id)).first()
        return None if row is None else (row.owner, json.loads(row.body))

    def person_by_token(self, token_hash: bytes) -> tuple[str, Person] | None:
        """The person holding this token, None if nobody does or it is revoked. Lookups are
        reused for a few seconds, but never across a revocation (the store's mark)."""
        now = self._clock()
        mark = self.store.revocations_mark()
        cached = self._tokens.get(token_hash)
        if cached is not None and mark is not None and cached[2] == mark \
                and now - cached[0] < _TOKEN_TTL:
            return cached[1]
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(users.c.name, users.c.party, users.c.clearance,
                                         users.c.need_to_know)
                               .where(users.c.token_hash == token_hash,
                                      ~revoked_token(users.c.token_hash))).first()
        found = None if row is None else (row.name, Person(
            row.name, row.party, row.clearance, frozenset(json.loads(row.need_to_know))))
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[token_hash] = (now, found, mark)
        return found


def _bind_list(params: dict[str, Any], name: str, values: Sequence[Any], most: int) -> int:
    """Put ``values`` into ``params`` for :meth:`SqlObjectStore._page_sql`'s ``IN`` list
    ``name``: item by item if there are at most ``most`` (their number returned), else as
    one expanding parameter (0 returned). Nothing for an empty list (no such list)."""
    if not values:
        return 0
    if len(values) <= most:
        params.update((f"{name}_{k}", v) for k, v in enumerate(values))
        return len(values)
    params[name] = list(values)
    return 0


class GroupCommit:
    """Durable commits of read events shared by the requests that wait at the same time.

    :meth:`commit` returns only once an audit commit holding its record has returned (so a
    read is on record, synced, before its body is sent), or raises what that commit raised.
    The first caller to find no commit under way writes everything queued by then, itself
    included, in one commit and one disk sync; callers arriving meanwhile queue and wait, and
    the next of them writes their lot. One caller alone commits its own record at once: no
    thread, no wait, as many commits as before. Records are never dropped: a failed write
    fails every caller whose record it held, and none of them is served."""

    def __init__(self, write: Callable[[list[AccessRecord]], None]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._queued: list[tuple[AccessRecord, list[BaseException | None]]] = []
        self._writing = False

    def commit(self, record: AccessRecord) -> None:
        # A one-element list per caller: empty while waiting, then [None] or [the error].
        outcome: list[BaseException | None] = []
        with self._lock:
            self._queued.append((record, outcome))
            while self._writing and not outcome:
                self._done.wait()
            if outcome:
                self._raise(outcome)
                return
            self._writing = True
        self._write_queued(outcome)

    def commit_unless_busy(self, record: AccessRecord) -> bool:
        """:meth:`commit`, when no commit is under way or waited for; else False at once,
        and nothing is queued (the caller commits from a thread that may wait)."""
        outcome: list[BaseException | None] = []
        with self._lock:
            if self._writing or self._queued:
                return False
            self._queued.append((record, outcome))
            self._writing = True
        self._write_queued(outcome)
        return True

    def _write_queued(self, outcome: list[BaseException | None]) -> None:
        """As the writer: everything queued by now in one write, then ``outcome`` raised."""
        error: BaseException | None = None
        batch: list[tuple[AccessRecord, list[BaseException | None]]] = []
        try:
            with self._lock:
                batch, self._queued = self._queued, []  # ours and whoever queued before
            try:
                self._write([r for r, _ in batch])
            except BaseException as exc:  # every caller whose record it held must know
                error = exc
        finally:
            with self._lock:
                for _, waiting in batch:
                    waiting.append(error)
                self._writing = False  # a caller queued meanwhile writes the next lot
                self._done.notify_all()
        self._raise(outcome)

    @staticmethod
    def _raise(outcome: list[BaseException | None]) -> None:
        if outcome[0] is not None:
            raise outcome[0]


def _added_at(value: Any) -> datetime:
    """An ``added_at`` as the database returns it: SQLite text in SQLAlchemy's storage form
    (naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``), or a PostgreSQL timestamptz."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return instant(value)


def _version_text(obj: Mapping[str, Any]) -> str:
    return item_version(obj)
