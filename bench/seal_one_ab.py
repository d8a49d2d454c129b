"""One report's seal at KOR, as its couriers seal a sensor report (korside27): the CPU of
``Sender._seal`` of a batch of one item just published, on one SQLite node KOR federated
with JPN (``seal_recheck_ab.kor_federated_with_jpn``). Each report is sealed once per
partner link, one link after the other (the links share ``Sender.sealing``), so the
second link's report waits for this much CPU more. Median of ``N`` seals, thread CPU (the
machine's load moves wall time, much less this). Not a test, not part of ``python -m bench``;
run it in both trees, alternated, to compare:

    PYTHONPATH=src:. python bench/seal_one_ab.py [N]          # default N 200
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time

from bench.seal_recheck_ab import indicator, kor_federated_with_jpn
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.store import now_utc


def measure(n: int) -> float:
    with kor_federated_with_jpn("sealone27-") as (kor, peers, _):
        sender = exchange.Sender(kor, link="JPN")
        sender._recovered = True
        ids = itertools.count(1)
        cpu: list[float] = []
        for _ in range(n + 20):
            handlers.publish_many(
                kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=now_utc(),
                entries=[(indicator(next(ids)), handlers.LabelRequest(
                    "군사II급비밀", ("KOR", "JPN"), "dprk-missile"))])
            began = time.thread_time()
            batch = sender._seal(peers["JPN"])
            cpu.append(time.thread_time() - began)
            if batch is None or len(batch.bodies) != 1:
                raise SystemExit("the seal did not take the one item just published")
            # As if settled: out of the next claim, as the courier's settle leaves it.
            with kor.store.engine.begin() as conn:
                conn.exec_driver_sql("UPDATE outbox SET status = 'delivered' "
                                     "WHERE status = 'pending'")
        return statistics.median(cpu[20:]) * 1000.0


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(f"one-item seal CPU, median of {n}: {measure(n):.3f} ms")
