"""The CPU of each stage of an item's delivery, in one process (deliver22): KOR and JPN of
a ``direct`` federation opened here (not started), KOR publishing 100 items, its sender
sealing them (``Sender._seal``), JPN parsing the batch's JSON as its peer API does and
receiving it (``NodeInbox.deliver_many``: verify, open, screen, store, audit, receipts),
its answer written and read back, KOR's sender settling it (verify the receipts, record,
audit). No HTTP, no TLS, no other thread: ``time.process_time`` per stage, per item, the
first round not counted. ``stage`` (optional): a cProfile of that stage (``all``: each).
Not a test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/exchange_stages.py [rounds of 100] [stage]
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_exchange import _obj
from gsomia import bootstrap
from gsomia.core import crypto
from gsomia.service import handlers
from gsomia.shell import exchange, federation
from gsomia.shell.peer_inbox import NodeInbox
from gsomia.shell.store import now_utc

STAGES = ("publish", "seal", "parse", "receive", "answer", "settle")


def main(rounds: int, profile: str) -> None:
    spent = dict.fromkeys(STAGES, 0.0)
    profiles = {s: cProfile.Profile(time.process_time) for s in STAGES}
    counted = 0
    with tempfile.TemporaryDirectory(prefix="gsomia-exchange-stages-") as tmp:
        folder = Path(tmp) / "direct"
        federation.configure(folder, "direct", federation.free_base_port())
        kor, jpn = bootstrap.open_node(folder / "KOR"), bootstrap.open_node(folder / "JPN")
        label = handlers.LabelRequest("군사III급비밀", ("KOR", "JPN"), "dprk-missile")
        peer = exchange.require_partners(kor).peer("JPN")
        sender = exchange.Sender(kor, batch=100, link="JPN")
        inbox = NodeInbox(jpn)
        try:
            for r in range(rounds + 1):
                took: dict[str, float] = {}

                def timed(stage: str, work: Callable[..., Any], *args: Any,
                          took: dict[str, float] = took) -> Any:
                    prof = profiles[stage] if profile in (stage, "all") else None
                    start = time.process_time()
                    if prof is not None:
                        prof.enable()
                    try:
                        return work(*args)
                    finally:
                        if prof is not None:
                            prof.disable()
                        took[stage] = time.process_time() - start

                entries = [(_obj(i), label) for i in range(100)]
                timed("publish", lambda e: exchange.publish(kor, entries=e), entries)
                batch = timed("seal", sender._seal, peer)
                if batch is None or len(batch.bodies) != 100:
                    raise RuntimeError("the sender sealed no batch of 100")
                body = '{"envelopes":[' + ",".join(batch.bodies) + "]}"
                envelopes = timed("parse", lambda b: [
                    crypto.Envelope.from_json(e) for e in json.loads(b)["envelopes"]], body)
                results = timed("receive", inbox.deliver_many, envelopes, "KOR", now_utc())
                answer = timed("answer", lambda rs: json.loads(json.dumps(
                    {"results": [x.to_json() for x in rs]}))["results"], results)
                report = exchange.SendReport()
                timed("settle", sender._settle, peer, batch.sealed, answer, report,
                      batch.unsent, batch.digests)
                if report.delivered != 100:
                    raise RuntimeError(f"{report.delivered} of 100 receipted")
                if r:  # the first round fills the caches
                    counted += 100
                    for stage in STAGES:
                        spent[stage] += took[stage]
        finally:
            sender.close()
            kor.close()
            jpn.close()
    for stage in STAGES:
        print(f"{stage:8s} {spent[stage] / counted * 1e6:7.1f} µs per item")
    print(f"total    {sum(spent.values()) / counted * 1e6:7.1f} µs per item")
    for stage in STAGES:
        if profile in (stage, "all"):
            print(f"---- {stage}")
            pstats.Stats(profiles[stage]).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6, sys.argv[2] if len(sys.argv) > 2 else "")
