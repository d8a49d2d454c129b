"""When a courier's next row is due (``Store.next_due``, each link's idle or backoff pass)
with a backlog: courier23's reading (each part's earliest row first, the full check of
``courier_readable`` on the rows in that order until one passes) against courier22's (the
min over every pending row that passes the full check: 3-4x main's CPU, review22) and
main's before courier22 (the min over the pending rows with no check of what they hold: a
row retyped on disk read as due, every pass), side by side in one process: CPU per call,
median of 5 alternated rounds, on one SQLite store whose outbox holds N pending deliveries
an hour ahead (half to JPN, half to USA, as a partner down with a backlog leaves them) and
a few notices. The rows go straight into the table (a bench shortcut). Two calls: a link's
loop (JPN's deliveries and notices, as ``Sender._pause`` asks) and one loop for every
partner. Each reading's answer is checked against courier22's. Not a test, not part of
``python -m bench``:

notices26: ``Store.next_due`` reads the notices per recipient on ``ix_outbox_notices``
rebuilt with the recipient (migration 0022), against courier23's reading (main before
notices26: every pending notice in order of next try, its recipient checked in Python),
each on a store of its schema (the same rows; courier23's with the index as migration
0021 left it). A second outbox: N pending notices to a partner that is down (USA), due
within the hour, and a few to the link asking (JPN), due after them; asked by JPN's link,
USA's own, the first link (which posts the notices to recipients without a link too) and
one loop for every partner. Then the claim of the notices due, main's (the first link's
strays said ``recipient NOT IN`` its links) against notices26's (said by recipient).

tidy27: ``next_due`` in one statement whatever the number of recipients of notices
(``--strays``: 1, 10, 100 recipients without a link, five notices each), against
notices26's (a query for each recipient and one to find each).

    PYTHONPATH=src:. python bench/next_due_ab.py [--save-as KEY] [N ...]   # 5000 50000
    PYTHONPATH=src:. python bench/next_due_ab.py [--save-as KEY] --strays [N ...]  # 1 10 100
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gsomia.core.outbox import DELIVERY
from gsomia.shell.store import Store
from gsomia.shell.store._mapping import courier_columns, courier_readable, courier_row
from gsomia.shell.store._tables import NOTICE_ROWS, outbox

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
NOTICES = 20
CLAIM_AT = NOW + timedelta(hours=2)


def _to(recipient: str, or_not_to: Collection[str] | None) -> Any:
    """Outbox rows to ``recipient``, or also to anyone outside ``or_not_to`` if given (as
    main's claim said it before notices26; a copy, the readings below frozen with it)."""
    if or_not_to is None:
        return outbox.c.recipient == recipient
    return sa.or_(outbox.c.recipient == recipient,
                  outbox.c.recipient.notin_(sorted(or_not_to)))


def courier22(store: Store, recipients: Collection[str], notices_to: str | None,
              or_not_to: Collection[str] | None = None) -> datetime | None:
    """``Store.next_due`` as courier22 left it."""
    notices = outbox.c.kind != DELIVERY
    if notices_to is not None:
        notices = sa.and_(notices, _to(notices_to, or_not_to))
    readable = sa.or_(sa.and_(*courier_readable(store.dialect, deliveries=True)),
                      sa.and_(*courier_readable(store.dialect, deliveries=False)))
    query = sa.select(sa.func.min(outbox.c.next_at)).where(
        outbox.c.status == "pending", readable,
        sa.or_(notices, outbox.c.recipient.in_(sorted(recipients))))
    with store.engine.connect() as conn:
        found: datetime | None = conn.execute(query).scalar()
    return found


def main_before(store: Store, recipients: Collection[str], notices_to: str | None,
                or_not_to: Collection[str] | None = None) -> datetime | None:
    """``Store.next_due`` before courier22 (no check of the rows' values)."""
    notices = outbox.c.kind != DELIVERY
    if notices_to is not None:
        notices = sa.and_(notices, _to(notices_to, or_not_to))
    query = sa.select(sa.func.min(outbox.c.next_at)).where(
        outbox.c.status == "pending",
        sa.or_(notices, outbox.c.recipient.in_(sorted(recipients))))
    with store.engine.connect() as conn:
        found: datetime | None = conn.execute(query).scalar()
    return found


_COURIER23: dict[int, tuple[Any, Any]] = {}


def courier23(store: Store, recipients: Collection[str], notices_to: str | None,
              or_not_to: Collection[str] | None = None) -> datetime | None:
    """``Store.next_due`` as courier23 left it (main before notices26), its two queries
    made once a store."""
    if id(store) not in _COURIER23:
        pending = outbox.c.status == "pending"
        _COURIER23[id(store)] = (
            sa.select(outbox.c.next_at).where(
                pending, outbox.c.recipient == sa.bindparam("to"),
                *courier_readable(store.dialect, deliveries=True)
            ).order_by(outbox.c.next_at).limit(1),
            sa.select(outbox.c.recipient, outbox.c.next_at).where(
                NOTICE_ROWS, pending, *courier_readable(store.dialect, deliveries=False)
            ).order_by(outbox.c.next_at))
    first, notices = _COURIER23[id(store)]
    named = set(recipients)
    found: list[datetime] = []
    with store.engine.connect() as conn:
        for to in sorted(named):
            earliest = conn.execute(first, {"to": to}).scalar()
            if earliest is not None:
                found.append(earliest)
        for to, at in conn.execute(notices):
            if notices_to is None or to == notices_to or to in named or \
                    (or_not_to is not None and to not in or_not_to):
                found.append(at)
                break
    return min(found, default=None)


_NOTICES26: dict[int, tuple[Any, Any, Any]] = {}


def notices26(store: Store, recipients: Collection[str], notices_to: str | None,
              or_not_to: Collection[str] | None = None) -> datetime | None:
    """``Store.next_due`` as notices26 left it (main before tidy27): a query for each
    recipient named or of notices, and one more to find each recipient of notices."""
    if id(store) not in _NOTICES26:
        pending = outbox.c.status == "pending"
        to = outbox.c.recipient == sa.bindparam("to")
        _NOTICES26[id(store)] = (
            sa.select(outbox.c.next_at).where(pending, to, sa.or_(
                sa.and_(*courier_readable(store.dialect, deliveries=True)),
                sa.and_(*courier_readable(store.dialect, deliveries=False)))
            ).order_by(outbox.c.next_at).limit(1),
            sa.select(outbox.c.next_at).where(
                NOTICE_ROWS, pending, to, *courier_readable(store.dialect, deliveries=False)
            ).order_by(outbox.c.next_at).limit(1),
            sa.select(outbox.c.recipient).where(
                NOTICE_ROWS, pending, outbox.c.recipient > sa.bindparam("after")
            ).order_by(outbox.c.recipient).limit(1))
    either, notice, recipient_after = _NOTICES26[id(store)]
    named = set(recipients)
    notified = set() if notices_to is None else {notices_to}
    found: list[datetime] = []
    with store.engine.connect() as conn:
        if notices_to is None or or_not_to is not None:
            after: Any = ""
            while (of_notices := conn.execute(recipient_after, {"after": after}).scalar()) \
                    is not None:
                if isinstance(of_notices, str) and (notices_to is None
                                                    or of_notices not in (or_not_to or ())):
                    notified.add(of_notices)
                after = of_notices
        for query, tos in ((either, named), (notice, notified - named)):
            for recipient in sorted(tos):
                earliest = conn.execute(query, {"to": recipient}).scalar()
                if earliest is not None:
                    found.append(earliest)
    return min(found, default=None)


def tidy27(store: Store, recipients: Collection[str], notices_to: str | None,
           or_not_to: Collection[str] | None = None) -> datetime | None:
    return store.next_due(recipients=recipients, notices_to=notices_to, or_not_to=or_not_to)


def _as_main(store: Store) -> None:
    """``ix_outbox_notices`` as migration 0021 left it: the schema courier23 read."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_outbox_notices")
        conn.exec_driver_sql("CREATE INDEX ix_outbox_notices ON outbox (status, next_at) "
                             "WHERE kind != 'delivery'")


def _fill_notices(store: Store, count: int) -> None:
    """``count`` notices to USA (down: due within the hour), a few to JPN due after."""
    later = NOW + timedelta(hours=1)

    def notice(to: str, n: int, at: datetime) -> dict[str, Any]:
        return {"kind": "incident", "item_id": None, "version": None, "recipient": to,
                "reference": f"ref-{to}-{n}", "body": "{}", "status": "pending",
                "attempts": 3, "not_now": 0, "next_at": at, "queued_at": NOW, "seq": n}

    rows = [notice("USA", i, NOW + timedelta(seconds=i % 3600)) for i in range(count)]
    rows += [notice("JPN", count + i, later + timedelta(minutes=i)) for i in range(5)]
    with store.engine.begin() as conn:
        conn.execute(outbox.delete())
        conn.execute(outbox.insert(), rows)


def _fill(store: Store, count: int) -> None:
    later = NOW + timedelta(hours=1)
    rows: list[dict[str, Any]] = [
        {"kind": DELIVERY, "item_id": f"indicator--{i}", "version": "v1",
         "recipient": "JPN" if i % 2 else "USA", "reference": None, "body": None,
         "status": "pending", "attempts": 3, "not_now": 0,
         "next_at": later + timedelta(seconds=i % 600), "queued_at": NOW, "seq": i}
        for i in range(count)]
    rows += [{"kind": "incident", "item_id": None, "version": None,
              "recipient": "JPN" if i % 2 else "USA", "reference": f"ref-{i}", "body": "{}",
              "status": "pending", "attempts": 1, "not_now": 0,
              "next_at": later + timedelta(minutes=5 + i), "queued_at": NOW, "seq": count + i}
             for i in range(NOTICES)]
    with store.engine.begin() as conn:
        conn.execute(outbox.delete())
        conn.execute(outbox.insert(), rows)
        # Delivered rows stay in the outbox (never deleted): as many again, out of the way.
        conn.execute(outbox.insert(), [
            {**r, "status": "delivered", "item_id": f"old--{n}", "reference": f"old-{n}"}
            for n, r in enumerate(rows)])


def _cpu(call: Callable[[], Any], repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - start) / repeat * 1000


def claim_main(store: Store, link: str, strays: set[str] | None) -> list[Any]:
    """``Store.claim`` of the notices due as main before notices26 left it (SQLite: no
    lease): ``recipient NOT IN`` the links for the first link's strays."""
    due = [outbox.c.status == "pending", outbox.c.next_at <= CLAIM_AT,
           *courier_readable(store.dialect, deliveries=False, every=False),
           _to(link, strays)]
    query = sa.select(*courier_columns(store.dialect)).where(*due).order_by(outbox.c.row)
    with store.engine.connect() as conn:  # fewer than 64 rows due: one page
        return [r for r in map(courier_row, conn.execute(query.limit(64))) if r is not None]


def claim_notices26(store: Store, link: str, strays: set[str] | None) -> list[Any]:
    return store.claim(deliveries=False, now=CLAIM_AT, limit=64, recipient=link,
                       or_not_to=strays)


@contextmanager
def _two_stores(folder: Path, count: int) -> Iterator[dict[str, Store]]:
    """A store of each schema compared (main's index as migration 0021 left it, and
    notices26's), disposed of afterwards."""
    stores = {schema: Store(f"sqlite:///{folder / f'{schema}-{count}.db'}")
              for schema in ("main", "notices26")}
    try:
        _as_main(stores["main"])
        yield stores
    finally:
        for store in stores.values():
            store.dispose()


def _alternated_cpu(calls: Mapping[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Each call's CPU in ms (``repeat`` calls a round), the median of five rounds in which
    the calls take turns: the machine's load falls on each alike."""
    rounds: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(5):
        for key, call in calls.items():
            rounds[key].append(_cpu(call, repeat))
    return {k: round(statistics.median(v), 3) for k, v in rounds.items()}


def run_claims(sizes: list[int]) -> dict[str, Any]:
    """The claim of the notices due at CLAIM_AT (the notices_down outbox: every one, JPN's
    five among them), by JPN's link and by the first link, main's against notices26's."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="notices26-claim-") as name:
        for count in sizes:
            with _two_stores(Path(name), count) as stores:
                for store in stores.values():
                    _fill_notices(store, count)
                figures: dict[str, Any] = {}
                for ask, strays in {"link": None, "first_link": {"JPN", "USA"}}.items():
                    calls = {"main": partial(claim_main, stores["main"], "JPN", strays),
                             "notices26": partial(claim_notices26, stores["notices26"],
                                                  "JPN", strays)}
                    answers = {k: [r.row for r in call()] for k, call in calls.items()}
                    assert answers["main"] == answers["notices26"], answers
                    cpu = _alternated_cpu(calls, max(3, 100_000 // count))
                    figures[ask] = {"cpu_ms": cpu, "rows": len(answers["main"]),
                                    "notices26_vs_main": round(cpu["notices26"] / cpu["main"],
                                                               3)}
                    print(f"{count:>7,} pending notices_down claim {ask:<10}: CPU a call main "
                          f"{cpu['main']:.3f} ms, notices26 {cpu['notices26']:.3f} (x"
                          f"{figures[ask]['notices26_vs_main']}), "
                          f"{len(answers['main'])} rows", flush=True)
                results[str(count)] = figures
    return results


Ask = tuple[list[str], str | None, set[str] | None]
READINGS: dict[str, tuple[Callable[..., datetime | None], str]] = {
    "main": (main_before, "main"), "courier22": (courier22, "main"),
    "courier23": (courier23, "main"), "notices26": (notices26, "notices26")}
OUTBOXES: dict[str, tuple[Callable[[Store, int], None], dict[str, Ask]]] = {
    "deliveries": (_fill, {"link": (["JPN"], "JPN", None),
                           "one_loop": (["JPN", "USA"], None, None)}),
    "notices_down": (_fill_notices, {"link": (["JPN"], "JPN", None),
                                     "down_link": (["USA"], "USA", None),
                                     "first_link": (["JPN"], "JPN", {"JPN", "USA"}),
                                     "one_loop": (["JPN", "USA"], None, None)})}


def run(sizes: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="notices26-next-due-") as name:
        for count in sizes:
            with _two_stores(Path(name), count) as stores:
                for outbox_name, (fill, asks) in OUTBOXES.items():
                    for store in stores.values():
                        fill(store, count)
                    figures: dict[str, Any] = {}
                    for ask, (recipients, notices_to, strays) in asks.items():
                        calls = {k: partial(f, stores[schema], recipients, notices_to, strays)
                                 for k, (f, schema) in READINGS.items()}
                        answers = {k: call() for k, call in calls.items()}
                        assert answers["notices26"] == answers["courier23"] == \
                            answers["courier22"] is not None, answers
                        cpu = _alternated_cpu(calls, max(3, 100_000 // count))
                        figures[ask] = {
                            "cpu_ms": cpu,
                            "notices26_vs_courier23": round(
                                cpu["notices26"] / cpu["courier23"], 3),
                            "notices26_vs_main": round(cpu["notices26"] / cpu["main"], 3)}
                        print(f"{count:>7,} pending {outbox_name:<12} {ask:<10}: CPU a call "
                              f"main {cpu['main']:.3f} ms, courier22 {cpu['courier22']:.3f}, "
                              f"courier23 {cpu['courier23']:.3f}, "
                              f"notices26 {cpu['notices26']:.3f}  (x"
                              f"{figures[ask]['notices26_vs_courier23']} of courier23, "
                              f"x{figures[ask]['notices26_vs_main']} of main)", flush=True)
                    results.setdefault(str(count), {})[outbox_name] = figures
    return results


def _fill_strays(store: Store, strays: int) -> None:
    """Five pending notices to each of ``strays`` recipients without a link (due within
    the hour), and five to JPN's link and five deliveries to it, due after them."""
    later = NOW + timedelta(hours=1)

    def row(kind: str, to: str, n: int, at: datetime) -> dict[str, Any]:
        delivery = kind == DELIVERY
        return {"kind": kind, "item_id": f"indicator--{n}" if delivery else None,
                "version": "v1" if delivery else None, "recipient": to,
                "reference": None if delivery else f"ref-{to}-{n}",
                "body": None if delivery else "{}", "status": "pending", "attempts": 3,
                "not_now": 0, "next_at": at, "queued_at": NOW, "seq": n}

    rows = [row("incident", f"S{s:03}", s * 5 + i, NOW + timedelta(seconds=s * 5 + i))
            for s in range(strays) for i in range(5)]
    rows += [row(kind, "JPN", 100_000 + i, later + timedelta(minutes=i))
             for kind in ("incident", DELIVERY) for i in range(5)]
    with store.engine.begin() as conn:
        conn.execute(outbox.delete())
        conn.execute(outbox.insert(), rows)


STRAY_ASKS: dict[str, Ask] = {"link": (["JPN"], "JPN", None),
                              "first_link": (["JPN"], "JPN", {"JPN", "USA"}),
                              "one_loop": (["JPN", "USA"], None, None)}


def run_strays(counts: list[int]) -> dict[str, Any]:
    """tidy27: ``next_due`` with 1, 10, 100 recipients of stray notices, notices26's (a
    query for each) against tidy27's (one statement), CPU a call, median of 5 alternated
    rounds, on one store; each answer checked against courier22's."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tidy27-next-due-") as name:
        store = Store(f"sqlite:///{Path(name) / 'strays.db'}")
        try:
            for count in counts:
                _fill_strays(store, count)
                figures: dict[str, Any] = {}
                for ask, (recipients, notices_to, strays) in STRAY_ASKS.items():
                    calls = {k: partial(f, store, recipients, notices_to, strays)
                             for k, f in (("notices26", notices26), ("tidy27", tidy27))}
                    answers = {k: call() for k, call in calls.items()}
                    assert answers["notices26"] == answers["tidy27"] == courier22(
                        store, recipients, notices_to, strays) is not None, answers
                    cpu = _alternated_cpu(calls, 200)
                    figures[ask] = {"cpu_ms": cpu, "tidy27_vs_notices26": round(
                        cpu["tidy27"] / cpu["notices26"], 3)}
                    print(f"{count:>4} stray recipients {ask:<10}: CPU a call notices26 "
                          f"{cpu['notices26']:.3f} ms, tidy27 {cpu['tidy27']:.3f} (x"
                          f"{figures[ask]['tidy27_vs_notices26']})", flush=True)
                results[str(count)] = figures
        finally:
            store.dispose()
    return results


if __name__ == "__main__":
    args = sys.argv[1:]
    key = None
    if args[:1] == ["--save-as"]:
        key, args = args[1], args[2:]
    if args[:1] == ["--strays"]:  # tidy27: PYTHONPATH=src:. python bench/next_due_ab.py
        out = {"strays": run_strays([int(a) for a in args[1:]] or [1, 10, 100])}
    else:
        sizes = [int(a) for a in args] or [5_000, 50_000]
        out = {**run(sizes), "claims": run_claims(sizes)}
    print(json.dumps(out, indent=1))
    if key is not None:
        from bench import save_record

        save_record(key, {"sizes": out})
