"""A partner's heads read by index (million20: ``held_head_of`` largest first, by migration
0017's index; ``_recorded_base`` newest first, stopping at the last consistent head) against
the query the reading of every head in the log began with (before: every head record
fetched, none parsed; a lower bound of that reading, so the ratios are "at least";
million20's figures in the README timed the whole reading, each row parsed and the largest
head verified), side by side in one process: wall and CPU per call, median of 5 alternated
rounds, on one SQLite node whose log holds H records of partners' heads (three partners in
turn, each head larger than its last, one in 500 found inconsistent). The records go
straight into the log's table (a bench shortcut: the reads do not check the log). Not a
test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/partner_heads_ab.py [H ...]   # default 10000 100000
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gsomia.core.audit import AuditKind, TreeHead, sign_tree_head
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node, init_node
from gsomia.shell.notices import _recorded_base, head_events
from gsomia.shell.partner_check import held_head_of

PARTNERS = ("KOR", "USA", "AUS")
AT = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def every_head_query(node: Node) -> int:
    """The query the reading of every head began with before million20 (every head
    record of the log, fetched): a lower bound of that reading's cost. The reading itself
    (each row parsed, the largest head verified; the base, newest first) is kept once, as
    the oracle of ``tests/integration/test_partner_head_reads.py``, which checks that the
    reads by index answer as it did."""
    with node.store.repository() as repo:
        return len(head_events(repo))


def _fill(node: Node, count: int, keys: dict[str, Ed25519PrivateKey]) -> None:
    # One signature per partner, reused with its size changed after: the reads verify only
    # the heads they pick, and the bench's own CPU is then not the fill's.
    signed = {p: sign_tree_head(1, bytes(32), AT, k).to_json() for p, k in keys.items()}
    rows: list[dict[str, Any]] = []
    for n in range(count):
        partner = PARTNERS[n % len(PARTNERS)]
        head = {**signed[partner], "size": n // len(PARTNERS) + 1}
        inconsistent = n % 500 == 499
        kind = (AuditKind.PARTNER_LOG_INCONSISTENT if inconsistent
                else AuditKind.TREE_HEAD_EXCHANGED).value
        details = {"consistent": not inconsistent, "head": head, "partner": partner}
        rows.append({"seq": 1_000_000 + n, "kind": kind, "leaf": bytes(32),
                     "details": json.dumps(details, sort_keys=True, separators=(",", ":"))})
    # The newest head of each partner, signed for real: the one held_head_of must find.
    for partner, key in keys.items():
        row = max((r for r in rows if f'"partner":"{partner}"' in r["details"]
                   and r["kind"] == AuditKind.TREE_HEAD_EXCHANGED.value),
                  key=lambda r: r["seq"])
        details = json.loads(row["details"])
        details["head"] = sign_tree_head(details["head"]["size"], bytes(32), AT, key).to_json()
        row["details"] = json.dumps(details, sort_keys=True, separators=(",", ":"))
    with node.store.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO audit_events (seq, kind, at, actor, details, leaf_hash) "
            "VALUES (:seq, :kind, '2024-03-01T09:00:00Z', 'KOR', :details, :leaf)"), rows)


def _time(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        out = call()
    return ((time.perf_counter() - wall) / repeat * 1e3,
            (time.process_time() - cpu) / repeat * 1e3, out)


def main(sizes: list[int]) -> dict[str, Any]:
    keys = {p: Ed25519PrivateKey.generate() for p in PARTNERS}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="million20-heads-") as name:
        for count in sizes:
            node = init_node(Path(name) / f"jpn-{count}", "JPN", catalogue=load_catalogue(),
                             now=AT)
            try:
                _fill(node, count, keys)
                public = keys["KOR"].public_key()
                calls: dict[str, Callable[[], Any]] = {
                    "held_before": partial(every_head_query, node),
                    "held_after": partial(held_head_of, node, "KOR", public),
                    "base_before": partial(every_head_query, node),
                    "base_after": partial(_base, node),
                }
                # What the reads find (the test holds them to the old reading's answers).
                assert calls["held_after"]() is not None and calls["base_after"]() is not None
                repeat = {"before": max(1, 20_000 // count), "after": 50}
                rounds: dict[str, list[tuple[float, float]]] = {k: [] for k in calls}
                for _ in range(5):
                    for key, call in calls.items():
                        wall, cpu, _out = _time(call, repeat[key.split("_")[1]])
                        rounds[key].append((wall, cpu))
                figures: dict[str, Any] = {k: {"ms": round(statistics.median(w for w, _ in v), 3),
                               "cpu_ms": round(statistics.median(c for _, c in v), 3)}
                           for k, v in rounds.items()}
                for what in ("held", "base"):
                    before, after = figures[f"{what}_before"], figures[f"{what}_after"]
                    figures[f"{what}_ratio"] = round(before["cpu_ms"] / max(after["cpu_ms"],
                                                                          1e-6), 1)
                    print(f"{count:>7,} head records  {what:<4}: before {before['ms']:8.3f} ms "
                          f"({before['cpu_ms']:.3f} CPU)   after {after['ms']:.3f} ms "
                          f"({after['cpu_ms']:.3f} CPU)   x{figures[f'{what}_ratio']} less CPU",
                          flush=True)
                results[str(count)] = figures
            finally:
                node.close()
    return results


def _base(node: Node) -> TreeHead | None:
    with node.store.repository() as repo:
        return _recorded_base(repo, "KOR")


if __name__ == "__main__":
    out = main([int(a) for a in sys.argv[1:]] or [10_000, 100_000])
    print(json.dumps(out, indent=1))
