"""JPN's receive of one sensor report from KOR (one envelope, as the report bench's light
load sends them), in one process, no HTTP (recvplan27): KOR and JPN of a ``direct``
federation opened here (not started), KOR publishing a report REL TO JPN, KOR, USA and
sealing it, JPN receiving it (``NodeInbox.deliver_many``), KOR settling the answer. Per
receive, medians over N receives (the first 20 not counted), in ms: the thread's CPU of the
whole receive; the wall and CPU time under the write lock (the unit of work entered until
its commit returned: the head's copy beside the database included, written after the lock
is let go); and the commit's planning of onward deliveries (``service.outbox.commit`` until
it commits). Runs on main's code too, for an A/B alternated between two trees:

    for r in 1 2 3; do for t in MAIN .; do
      PYTHONPATH=$t/src:. python bench/receive_plan_ab.py 150; done; done

Not a test, not part of ``python -m bench``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gsomia.service.exchange as exchange_handlers
from gsomia import bootstrap
from gsomia.core import crypto
from gsomia.service import handlers
from gsomia.shell import exchange, federation
from gsomia.shell.peer_inbox import NodeInbox
from gsomia.shell.store import now_utc
from gsomia.shell.store._unit_of_work import SqlUnitOfWork

WARM = 20


def report(i: int) -> dict[str, Any]:
    """A note carrying six measurements of one radar, the shape the intake publishes."""
    stamp = f"2026-11-01T00:00:{i % 60:02d}.000Z"
    measured = {"sensor": "KOR-R1", "epoch": stamp, "reference": [38.0, 127.0, 0.0],
                "t": [round(0.5 * k, 6) for k in range(6)],
                "z": [[812345.123 + k, 45.123456789, 12.123456789] for k in range(6)],
                "cov": [[1.0e4, 1.2, 0.3, 0.01, 0.001, 0.02] for _ in range(6)]}
    return {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
            "created": stamp, "modified": stamp, "abstract": "R1: 6 radar measurements",
            "content": "R1: 6 radar measurements", "x_gsomia_sensor_report": measured}

SENSOR_REPORT = handlers.LabelRequest("군사III급비밀", ("JPN", "KOR", "USA"), "dprk-missile",
                                      category="sensor-report")


@contextmanager
def direct_pair(prefix: str) -> Iterator[tuple[Any, Any, Any, Any]]:
    """KOR and JPN of a ``direct`` federation in a folder of their own, in this process: KOR,
    JPN, KOR's sender to JPN (no HTTP: its batches are handed to JPN's inbox, the last)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp) / "direct"
        federation.configure(folder, "direct", federation.free_base_port())
        kor, jpn = bootstrap.open_node(folder / "KOR"), bootstrap.open_node(folder / "JPN")
        sender = exchange.Sender(kor, batch=100, link="JPN")
        try:
            yield kor, jpn, sender, NodeInbox(jpn)
        finally:
            sender.close()
            kor.close()
            jpn.close()


def envelopes_of(batch: Any) -> list[crypto.Envelope]:
    """The envelopes of a sealed ``batch`` as the partner reads them from the posted body."""
    if batch is None:
        raise RuntimeError("KOR sealed nothing for JPN")
    body = '{"envelopes":[' + ",".join(batch.bodies) + "]}"
    return [crypto.Envelope.from_json(e) for e in json.loads(body)["envelopes"]]



def main(n: int) -> dict[str, float]:
    now: dict[str, float] = {}
    enter, commit = SqlUnitOfWork.__enter__, SqlUnitOfWork.commit

    def entered(uow: SqlUnitOfWork) -> SqlUnitOfWork:
        got = enter(uow)
        now["lock_wall"], now["lock_cpu"] = time.perf_counter(), time.thread_time()
        return got

    def committed(uow: SqlUnitOfWork) -> None:
        try:
            commit(uow)
        finally:
            now["lock_wall"] = time.perf_counter() - now["lock_wall"]
            now["lock_cpu"] = time.thread_time() - now["lock_cpu"]

    plan = exchange_handlers.commit  # type: ignore[attr-defined]

    def planned(uow: Any, at: Any) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        own = uow.commit

        def planning_done() -> None:
            now["plan_wall"] = time.perf_counter() - wall
            now["plan_cpu"] = time.thread_time() - cpu
            uow.commit = own
            own()

        uow.commit = planning_done
        plan(uow, at)

    # Plain functions for the methods (one typed to return Self, which mypy cannot say
    # outside the class), and for the plan where the receive looks it up, a name its module
    # imports from gsomia.service.outbox.
    SqlUnitOfWork.__enter__ = entered  # type: ignore[method-assign, assignment]
    SqlUnitOfWork.commit = committed  # type: ignore[method-assign, assignment]
    exchange_handlers.commit = planned  # type: ignore[attr-defined, assignment]
    took: dict[str, list[float]] = {}
    with direct_pair("gsomia-receive-plan-") as (kor, _, sender, inbox):
        peer = exchange.require_partners(kor).peer("JPN")
        for r in range(n + WARM):
            exchange.publish(kor, entries=[(report(r), SENSOR_REPORT)])
            batch = sender._seal(peer)
            envelopes = envelopes_of(batch)
            now.clear()
            wall, cpu = time.perf_counter(), time.thread_time()
            results = inbox.deliver_many(envelopes, "KOR", now_utc())
            got = {"recv_wall": time.perf_counter() - wall,
                   "recv_cpu": time.thread_time() - cpu, **now}  # before KOR's settle
            if len(results) != 1 or results[0].receipt is None:
                raise RuntimeError(f"not receipted: {results}")
            answer = json.loads(json.dumps({"results": [x.to_json() for x in results]}))
            sender._settle(peer, batch.sealed, answer["results"], exchange.SendReport(),
                           batch.unsent, batch.digests)
            if r >= WARM:
                for key, value in got.items():
                    took.setdefault(key, []).append(value)
    out = {k: round(statistics.median(v) * 1e3, 3) for k, v in took.items()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 150)
