"""The CPU of each statement a receive's commit runs to plan onward deliveries (recvplan27):
as the store built them at each call up to 4e2c089 (written out here) against the
statements it now makes once (``shell/store/_repository.py``), alternated in one process
on one SQLite node holding a few items, inside one transaction (rolled back). Median of
30 rounds of 100 calls each, under whatever else the machine runs (compare the ratio).
Not a test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/plan_statements_ab.py [--save]

``--save``: the figures go to bench/results/latest.json under ``recvplan27_statements_ab``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.seal_recheck_ab import LATEST, indicator
from gsomia.service import handlers
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node
from gsomia.shell.store import _repository as repository
from gsomia.shell.store._tables import consents, exchange_state, items, standing_consents

ROUNDS, CALLS = 30, 100


def built_per_call(conn: sa.Connection, now: datetime, mark: int
                   ) -> dict[str, Callable[[], Any]]:
    """The statements as 4e2c089 built them, at each call."""
    def consents_of() -> Any:
        return conn.execute(consents.select().where(consents.c.item_id.in_(["indicator--x"]))
                            .order_by(consents.c.row)).all()

    def standing_current() -> Any:
        t = standing_consents
        revoked = t.alias("revoked")
        live = (t.c.kind == "grant", t.c.revoked == sa.false())
        return conn.execute(t.select().where(
            sa.or_(sa.and_(*live, t.c.not_after > now), sa.and_(*live, t.c.not_after.is_(None))),
            ~sa.exists().where(revoked.c.consent_id == t.c.consent_id,
                               revoked.c.originator == t.c.originator,
                               revoked.c.kind == "revoke")).order_by(t.c.row)).all()

    def scan() -> Any:  # advance_scan's mark, then the items after it: two statements
        conn.execute(sa.select(exchange_state.c.scanned_seq)
                     .where(exchange_state.c.id == 1)).first()
        return conn.execute(sa.select(sa.func.count(), sa.func.max(items.c.seq))
                            .where(items.c.seq > mark)).one()

    def set_mark() -> Any:
        return conn.execute(exchange_state.update().where(exchange_state.c.id == 1)
                            .values(scanned_seq=mark))

    return {"consents_of": consents_of, "standing_current": standing_current,
            "scan_mark_and_newer": scan, "set_scan_mark": set_mark}


def made_once(conn: sa.Connection, now: datetime, mark: int) -> dict[str, Callable[[], Any]]:
    """The same reads through the statements the store now makes once."""
    standing = repository._standing_current_query(False, False)
    return {
        "consents_of": lambda: conn.execute(repository._CONSENTS_OF,
                                            {"ids": ["indicator--x"]}).all(),
        "standing_current": lambda: conn.execute(standing, {"now": now}).all(),
        "scan_mark_and_newer": lambda: conn.execute(repository._SCAN_MARK_AND_NEWER).first(),
        "set_scan_mark": lambda: conn.execute(repository._SET_SCAN_MARK, {"seq": mark}),
    }


def main(save: bool) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="gsomia-plan-statements-") as tmp:
        node = init_node(Path(tmp) / "kor", "KOR", catalogue=load_catalogue(), now=now)
        try:
            handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                                  now=now, entries=[(indicator(i), handlers.LabelRequest(
                                      "군사II급비밀", ("KOR", "JPN"), "dprk-missile"))
                                      for i in range(20)])
            with node.store.engine.connect() as conn, conn.begin():
                conn.execute(exchange_state.insert(), {"id": 1, "scanned_seq": 5})
                sides = {"before": built_per_call(conn, now, 5),
                         "after": made_once(conn, now, 5)}
                took: dict[tuple[str, str], list[float]] = {}
                for _ in range(ROUNDS):
                    for side, calls in sides.items():
                        for name, call in calls.items():
                            start = time.thread_time()
                            for _ in range(CALLS):
                                call()
                            took.setdefault((name, side), []).append(
                                (time.thread_time() - start) / CALLS)
                conn.rollback()
        finally:
            node.close()
    out: dict[str, Any] = {"rounds": ROUNDS, "calls": CALLS}
    for name in sides["before"]:
        before, after = (statistics.median(took[(name, s)]) * 1e6 for s in ("before", "after"))
        out[name] = {"before_us": round(before, 1), "after_us": round(after, 1),
                     "ratio": round(before / after, 2)}
        print(f"{name:22s} {before:7.1f} µs -> {after:6.1f} µs CPU  ({before / after:.1f}x)")
    total = [sum(out[n][k] for n in sides["before"]) for k in ("before_us", "after_us")]
    out["total"] = {"before_us": round(total[0], 1), "after_us": round(total[1], 1),
                    "ratio": round(total[0] / total[1], 2)}
    print(f"{'total':22s} {total[0]:7.1f} µs -> {total[1]:6.1f} µs CPU "
          f"({total[0] / total[1]:.1f}x)")
    if save:
        doc = json.loads(LATEST.read_text()) if LATEST.exists() else {}
        doc["recvplan27_statements_ab"] = out
        LATEST.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main("--save" in sys.argv[1:])
