"""JPN's start on a second batch posted while the first is being received (answerstart29,
issue 12): JPN a real ``node run`` of a ``direct`` federation over mutual TLS, started here
(KOR and USA not started), KOR in this process posting as its sender does (its own client,
its kept connections). Each round KOR publishes FIRST + 1 sensor reports and seals them in
one batch, split in two posts: the first FIRST reports on a thread, the last one ``LAG_MS``
later on another connection, while the first is being received (a report sent beside one in
flight); every other round the last one alone, then the first ones. Medians and 90th
percentiles (ms) of each post until its answer: the second (behind the first), the same
report alone, the first; N rounds of each (the first 10 not counted). Runs on main's code
too, for an A/B alternated between trees:

    for r in 1 2 3; do for t in MAIN .; do
      PYTHONPATH=$t/src:. python bench/answer_start_ab.py 60 4; done; done

Not a test, not part of ``python -m bench``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.receive_plan_ab import SENSOR_REPORT, report
from gsomia import bootstrap
from gsomia.shell import exchange, federation

WARM = 10
LAG_MS = 4.0  # the first report's receive (verify, screen, write, sync) takes longer


def _await_jpn(client: Any, url: str, within: float = 120.0) -> None:
    until = time.monotonic() + within
    while time.monotonic() < until:
        try:
            if client.get(url + "/taxii2/").status_code < 500:
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise RuntimeError("JPN's node did not answer")


def main(n: int, first_size: int = 1) -> dict[str, Any]:
    took: dict[str, list[float]] = {"first_ms": [], "second_ms": [], "alone_ms": []}
    with tempfile.TemporaryDirectory(prefix="gsomia-answer-start-") as tmp:
        folder = Path(tmp) / "direct"
        doc = federation.configure(folder, "direct", federation.free_base_port())
        home = Path(doc["nodes"]["JPN"]["dir"])
        url = doc["nodes"]["JPN"]["url"].rstrip("/")
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        log = open(home / "node.log", "ab")  # noqa: SIM115 - the child keeps it
        jpn = subprocess.Popen(
            [sys.executable, "-m", "gsomia", "node", "run", "--dir", str(home),
             "--host", "127.0.0.1", "--port", str(doc["nodes"]["JPN"]["port"])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        kor = bootstrap.open_node(folder / "KOR")
        sender = exchange.Sender(kor, batch=100, link="JPN")
        one, two = (exchange.peer_client(folder / "KOR") for _ in range(2))
        try:
            _await_jpn(one, url)
            peer = exchange.require_partners(kor).peer("JPN")
            target = url + "/peer/v1/envelopes/"

            def seal(i: int) -> Any:
                # One batch sealed, split in two posts: rows sealed apart would be claimed
                # again by the second seal while the first is unanswered.
                exchange.publish(kor, entries=[(report(i * 100 + k), SENSOR_REPORT)
                                               for k in range(first_size + 1)])
                batch = sender._seal(peer)
                if batch is None or len(batch.bodies) != first_size + 1:
                    raise RuntimeError("KOR did not seal the round's reports for JPN")
                return batch

            def post(client: Any, bodies: list[str], out: dict[str, Any], name: str) -> None:
                began = time.perf_counter()
                got = client.post(target, content='{"envelopes":[' + ",".join(bodies) + "]}")
                out[name] = (time.perf_counter() - began) * 1e3
                results = got.json().get("results") if got.status_code == 202 else None
                if not results or any("receipt" not in x for x in results):
                    raise RuntimeError(f"not receipted: {got.status_code} {got.text[:300]}")
                out[name + "_results"] = results

            for r in range(2 * (n + WARM)):
                batch = seal(r)
                first, second = batch.bodies[:first_size], batch.bodies[first_size:]
                ended: dict[str, Any] = {}
                time.sleep(0.15)  # JPN's work after the last round (its centre) done
                if r % 2:
                    post(two, second, ended, "alone")
                    post(one, first, ended, "first")  # posted so the rows are settled
                else:
                    thread = threading.Thread(target=post, args=(one, first, ended, "first"))
                    thread.start()
                    time.sleep(LAG_MS / 1e3)
                    post(two, second, ended, "second")
                    thread.join()
                answers = ended["first_results"] + ended.get("second_results",
                                                             ended.get("alone_results", []))
                sender._settle(peer, batch.sealed, answers, exchange.SendReport(),
                               batch.unsent, batch.digests)
                if r >= 2 * WARM:
                    for name in ("second", "alone") if r % 2 == 0 else ("alone",):
                        if name in ended:
                            took[f"{name}_ms"].append(ended[name])
                    if r % 2 == 0:
                        took["first_ms"].append(ended["first"])
        finally:
            one.close()
            two.close()
            sender.close()
            kor.close()
            jpn.terminate()
            jpn.wait(30)
    out: dict[str, Any] = {k: {"p50": round(float(np.percentile(v, 50)), 2),
                               "p90": round(float(np.percentile(v, 90)), 2)}
                           for k, v in took.items()}
    out["second/alone_p50"] = round(out["second_ms"]["p50"] / out["alone_ms"]["p50"], 2)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60,
         int(sys.argv[2]) if len(sys.argv) > 2 else 1)
