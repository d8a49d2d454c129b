"""A seal's CPU on a holder that keeps many standing consents for recipients other than the
batch's (hub26): before, every seal read and parsed every standing consent in force, then
dropped those for other recipients; now the query reads the batch's recipient's alone, and
those are parsed once (``Sender._standing_parsed``, keyed by the document's text).

One SQLite node KOR federated with JPN, N standing consents obtained from USA and AUS in
force for NZL (and one for JPN, which every seal reads), straight into the table (a bench
shortcut, as bench/standing_current_ab.py); one item of KOR's own queued to JPN, sealed and
released again: CPU per ``Sender._seal`` of a batch of one (the hub's per-item consent round
trip seals one item a batch), median of 7 rounds of 20 seals. Runs on main's code too; the
two sides alternated in separate processes:

    PYTHONPATH=src:. python bench/seal_standing_ab.py [N]                 # this tree
    PYTHONPATH=MAIN/src:. python bench/seal_standing_ab.py [N]            # main
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.seal_recheck_ab import kor_federated_with_jpn, publish_indicators
from bench.standing_current_ab import KEY, fill
from gsomia.core import crypto
from gsomia.core.custody import StandingConsentRecord
from gsomia.shell import exchange


def consents(n: int, now: datetime) -> list[StandingConsentRecord]:
    grant = crypto.grant_standing_consent(
        consent_id="standing-consent--0", originator="USA", recipient="NZL",
        categories=["sensor-report"], purpose="dprk-missile",
        not_before=now - timedelta(days=1), not_after=now + timedelta(days=30),
        granted_at=now, key=KEY).to_json()
    rows = [StandingConsentRecord(f"standing-consent--{i}", who, to, "obtained", "grant",
                                  dict(grant, id=f"standing-consent--{i}", originator=who,
                                       recipient=to), now)
            for i, (who, to) in enumerate([("USA" if i % 2 else "AUS", "NZL")
                                           for i in range(n)] + [("USA", "JPN")])]
    return rows


def measure(n: int) -> dict[str, float | int]:
    with kor_federated_with_jpn("hub26-seal-") as (kor, peers, now):
        fill(kor, consents(n, now))
        publish_indicators(kor, 1, now)
        sender = exchange.Sender(kor, batch=1)
        sender._deliver_to = ("JPN",)

        def seal() -> None:
            batch = sender._seal(peers["JPN"])
            assert batch is not None and len(batch.bodies) == 1, "sealed"
            kor.store.release([r.row for r, _ in batch.sealed], datetime.now(UTC))

        seal()
        rounds = []
        for _ in range(7):
            cpu = time.process_time()
            for _ in range(20):
                seal()
            rounds.append((time.process_time() - cpu) / 20)
        sender.close()
        return {"standing_for_others": n,
                "seal_cpu_ms": round(statistics.median(rounds) * 1000, 3)}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
