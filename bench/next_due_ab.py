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

    PYTHONPATH=src:. python bench/next_due_ab.py [--save-as KEY] [N ...]   # 5000 50000
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gsomia.core.outbox import DELIVERY
from gsomia.shell.store import Store
from gsomia.shell.store._mapping import _to, courier_readable
from gsomia.shell.store._tables import outbox

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
NOTICES = 20


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


def courier23(store: Store, recipients: Collection[str], notices_to: str | None,
              or_not_to: Collection[str] | None = None) -> datetime | None:
    return store.next_due(recipients=recipients, notices_to=notices_to, or_not_to=or_not_to)


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


def run(sizes: list[int]) -> dict[str, Any]:
    readings = {"main": main_before, "courier22": courier22, "courier23": courier23}
    asks: dict[str, tuple[list[str], str | None]] = {
        "link": (["JPN"], "JPN"), "one_loop": (["JPN", "USA"], None)}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="courier23-next-due-") as name:
        for count in sizes:
            store = Store(f"sqlite:///{Path(name) / f'node-{count}.db'}")
            try:
                _fill(store, count)
                figures: dict[str, Any] = {}
                for ask, (recipients, notices_to) in asks.items():
                    answers = {k: f(store, recipients, notices_to) for k, f in readings.items()}
                    assert answers["courier23"] == answers["courier22"] is not None, answers
                    repeat = max(3, 100_000 // count)
                    rounds: dict[str, list[float]] = {k: [] for k in readings}
                    for _ in range(5):
                        for key, f in readings.items():
                            rounds[key].append(_cpu(
                                partial(f, store, recipients, notices_to), repeat))
                    cpu = {k: round(statistics.median(v), 3) for k, v in rounds.items()}
                    figures[ask] = {
                        "cpu_ms": cpu,
                        "courier23_vs_courier22": round(cpu["courier23"] / cpu["courier22"], 3),
                        "courier23_vs_main": round(cpu["courier23"] / cpu["main"], 3)}
                    print(f"{count:>7,} pending, {ask:<8}: CPU a call main {cpu['main']:.3f} ms, "
                          f"courier22 {cpu['courier22']:.3f}, courier23 {cpu['courier23']:.3f}"
                          f"  (x{figures[ask]['courier23_vs_courier22']} of courier22, "
                          f"x{figures[ask]['courier23_vs_main']} of main)", flush=True)
                results[str(count)] = figures
            finally:
                store.dispose()
    return results


if __name__ == "__main__":
    args = sys.argv[1:]
    key = None
    if args[:1] == ["--save-as"]:
        key, args = args[1], args[2:]
    out = run([int(a) for a in args] or [5_000, 50_000])
    print(json.dumps(out, indent=1))
    if key is not None:
        path = Path(__file__).resolve().parent / "results" / "latest.json"
        saved = json.loads(path.read_text())
        if key in {"machine", "measured_at", "results", "before_after"}:
            raise SystemExit(f"{key}: a reserved record of latest.json")
        saved[key] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                      "sizes": out}
        path.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n")
