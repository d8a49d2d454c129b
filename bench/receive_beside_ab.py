"""Two of KOR's batches received by JPN at once (behind29): the second, one sensor report,
posted while the first (one report) is being received, as a report sent beside one in
flight reaches JPN at the report bench. In one process, no HTTP: KOR and JPN of a ``direct``
federation opened here (not started), JPN's inbox called on two threads, the second started
as the first takes the write lock. Per round, the wall time of each from its start until
its answer (ms), medians and 90th percentiles over N rounds (the first 10 not counted).
Runs on main's code too, for an A/B alternated between two trees:

    for r in 1 2 3; do for t in MAIN .; do
      PYTHONPATH=$t/src:. python bench/receive_beside_ab.py 60; done; done

Not a test, not part of ``python -m bench``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import numpy as np

from bench.receive_plan_ab import SENSOR_REPORT, direct_pair, envelopes_of, report
from gsomia.shell import exchange
from gsomia.shell.store import now_utc
from gsomia.shell.store._unit_of_work import SqlUnitOfWork

WARM = 10


def main(n: int) -> dict[str, Any]:
    enter = SqlUnitOfWork.__enter__
    locked = threading.Event()

    def entered(uow: SqlUnitOfWork) -> SqlUnitOfWork:
        got = enter(uow)
        locked.set()
        return got

    # A plain function for a method typed to return Self: mypy can say neither.
    SqlUnitOfWork.__enter__ = entered  # type: ignore[method-assign, assignment]
    took: dict[str, list[float]] = {"first_ms": [], "second_ms": []}
    with direct_pair("gsomia-receive-beside-") as (kor, _, sender, inbox):
        peer = exchange.require_partners(kor).peer("JPN")
        for r in range(n + WARM):
            exchange.publish(kor, entries=[(report(2 * r), SENSOR_REPORT),
                                           (report(2 * r + 1), SENSOR_REPORT)])
            batch = sender._seal(peer)
            first, second = envelopes_of(batch)
            ended: dict[str, float] = {}

            def receive(name: str, envelope: Any, ended: dict[str, float]) -> None:
                got = inbox.deliver_many([envelope], "KOR", now_utc())
                ended[name] = time.perf_counter()
                if got[0].receipt is None:
                    raise RuntimeError(f"not receipted: {got}")

            locked.clear()
            began = time.perf_counter()
            one = threading.Thread(target=receive, args=("first", first, ended))
            one.start()
            locked.wait(10)
            second_began = time.perf_counter()
            receive("second", second, ended)
            one.join()
            answer: dict[str, list[dict[str, Any]]] = {"results": [{}, {}]}
            sender._settle(peer, batch.sealed, answer["results"], exchange.SendReport(),
                           batch.unsent, batch.digests)  # refused here: the rows are done
            if r >= WARM:
                took["first_ms"].append((ended["first"] - began) * 1e3)
                took["second_ms"].append((ended["second"] - second_began) * 1e3)
    out = {k: {"p50": round(float(np.percentile(v, 50)), 2),
               "p90": round(float(np.percentile(v, 90)), 2)} for k, v in took.items()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
