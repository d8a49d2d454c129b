"""The standing consents a relay rests on, read by what is in force (standing20: migration
0018's ``not_after`` column and indexes; standing22: migration 0020's ``revoked`` mark and
the receive path's read of the revocations its envelopes name) against the reading of the
whole history (as before), side by side in one process: wall and CPU per call, median of 5
alternated rounds, on one SQLite node whose ``standing_consents`` table holds N rows of
history: grants long expired, grants revoked with their revocations, revocations of
consents never held (older than the window), and 20 grants in force. The rows go straight
into the table (a bench shortcut: the reads do not check signatures or the log). Not a
test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/standing_current_ab.py [N ...]   # default 1000 10000 100000
    PYTHONPATH=src:. python bench/standing_current_ab.py --revoked-half [N ...]

Each pair: the outbox's ``standing_held`` (every commit that queues relayed items), the
bound on consents in force (each standing consent a partner sends), the bound on
revocations of consents not held (each such revocation); standing22's: ``standing_current``
against standing20's query of it (grants sought by end, each revocation looked up, on
migration 0018's index, made again here for it), and a receive's read of the revocations
(every one ever recorded, before; those of the batch's one consent, after).
``--revoked-half``: the history's grants half revoked before their end (a year's
validity), half expired, no revocations of consents never held.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gsomia.core import crypto
from gsomia.core.custody import StandingConsentRecord
from gsomia.core.errors import MalformedInput
from gsomia.core.types import instant
from gsomia.service import standing
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node, init_node
from gsomia.shell.store._tables import standing_consents

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ORIGINATORS = ("KOR", "USA", "AUS")
WINDOW = timedelta(hours=24)


def _signed_pair() -> tuple[dict[str, Any], dict[str, Any]]:
    """One signed grant and its revocation, the documents every row of a history copies."""
    grant = crypto.grant_standing_consent(
        consent_id="standing-consent--0", originator="KOR", recipient="JPN",
        categories=["sensor-report"], purpose="dprk-missile", not_before=NOW - timedelta(
            days=400), not_after=NOW, granted_at=NOW, key=KEY).to_json()
    revoke = crypto.revoke_standing_consent(consent_id="standing-consent--0", originator="KOR",
                                            revoked_at=NOW, key=KEY).to_json()
    return grant, revoke


def _grant(grant: dict[str, Any], cid: str, who: str, ends: datetime,
           at: datetime) -> StandingConsentRecord:
    """A grant obtained from ``who`` (``grant`` copied under its id), ending at ``ends``."""
    return StandingConsentRecord(cid, who, "JPN", "obtained", "grant", dict(
        grant, id=cid, originator=who, not_after=ends.isoformat()), at)


def _revoke(revoke: dict[str, Any], cid: str, who: str, at: datetime,
            recipient: str | None = "JPN") -> StandingConsentRecord:
    """A revocation obtained from ``who`` (``revoke`` copied under its consent id)."""
    return StandingConsentRecord(cid, who, recipient, "obtained", "revoke",
                                 dict(revoke, consent_id=cid, originator=who), at)


def history(n: int) -> list[StandingConsentRecord]:
    grant, revoke = _signed_pair()
    rows: list[StandingConsentRecord] = []
    for i in range(n - 20):
        who = ORIGINATORS[i % 3]
        cid, at = f"standing-consent--{i}", NOW - timedelta(days=30, minutes=i)
        shape = i % 10
        if shape < 4:  # expired
            rows.append(_grant(grant, cid, who, NOW - timedelta(days=1 + i % 300), at))
        elif shape < 7:  # revoked while in force: the grant and, next, its revocation
            rows.append(_grant(grant, cid, who, NOW + timedelta(days=1 + i % 300), at))
            rows.append(_revoke(revoke, cid, who, at))
        else:  # a revocation of a consent never held, long ago
            rows.append(_revoke(revoke, cid, who, at, recipient=None))
    rows = rows[:n - 20]
    for i in range(20):
        rows.append(_grant(grant, f"standing-consent--current-{i}", ORIGINATORS[i % 3],
                           NOW + timedelta(days=10), NOW))
    return rows


def history_revoked_half(n: int) -> list[StandingConsentRecord]:
    """Half the grants revoked before their end (a year ahead), with their revocations;
    the other half long expired; no revocations of consents never held."""
    grant, revoke = _signed_pair()
    rows: list[StandingConsentRecord] = []
    for i in range(n):
        who = ORIGINATORS[i % 3]
        cid, at = f"standing-consent--{i}", NOW - timedelta(days=30, minutes=i)
        ends = NOW + timedelta(days=365) if i % 2 else NOW - timedelta(days=1 + i % 300)
        rows.append(_grant(grant, cid, who, ends, at))
        if i % 2:
            rows.append(_revoke(revoke, cid, who, at))
        if len(rows) >= n - 20:
            break
    current = [r for r in history(20) if r.consent_id.startswith("standing-consent--current")]
    return rows[:n - 20] + current


def fill(node: Node, rows: list[StandingConsentRecord]) -> None:
    revoked = {(r.consent_id, r.originator) for r in rows if r.kind == "revoke"}
    with node.store.engine.begin() as conn:
        conn.execute(standing_consents.insert(), [
            {"consent_id": r.consent_id, "originator": r.originator, "recipient": r.recipient,
             "direction": r.direction, "kind": r.kind,
             "document": json.dumps(dict(r.document), sort_keys=True), "at": r.at,
             "seq": 0, "not_after": r.ends,
             "revoked": r.kind == "grant" and (r.consent_id, r.originator) in revoked}
            for r in rows])
        # standing20's index, for its query (the before side of standing_current):
        # migration 0020 replaced it.
        conn.exec_driver_sql("CREATE INDEX ix_standing_consents_ends "
                             "ON standing_consents (kind, not_after)")


# ---- before standing20 ------------------------------------------------------------------

def old_held(node: Node) -> int:
    with node.store.repository() as repo:
        return len(standing.in_force(repo.standing_consents()))


def old_in_force_from(node: Node) -> int:
    with node.store.repository() as repo:
        rows = repo.standing_consents()
    revoked = {r.consent_id for r in rows if r.kind == "revoke" and r.originator == "KOR"}
    count = 0
    for r in rows:
        if r.kind != "grant" or r.originator != "KOR" or r.direction != "obtained" \
                or r.consent_id in revoked:
            continue
        try:
            count += instant(r.document["not_after"], where="not_after") > NOW
        except (KeyError, TypeError, MalformedInput):
            count += 1
    return count


def old_orphans(node: Node) -> int:
    with node.store.repository() as repo:
        rows = repo.standing_consents()
    granted = {(r.consent_id, r.originator) for r in rows if r.kind == "grant"}
    return sum(r.kind == "revoke" and r.originator == "KOR" and r.direction == "obtained"
               and r.recipient is None and (r.consent_id, r.originator) not in granted
               for r in rows)


# ---- before standing22 (standing20's reads) ----------------------------------------------

def _standing20_current(conn: sa.Connection) -> list[Any]:
    t = standing_consents
    revoked = t.alias("revoked")
    query = t.select().where(
        sa.or_(sa.and_(t.c.kind == "grant", t.c.not_after > NOW),
               sa.and_(t.c.kind == "grant", t.c.not_after.is_(None))),
        ~sa.exists().where(revoked.c.consent_id == t.c.consent_id,
                           revoked.c.originator == t.c.originator,
                           revoked.c.kind == "revoke")).order_by(t.c.row)
    return list(conn.execute(query))


def standing20_current(node: Node) -> int:
    with node.store.engine.connect() as conn:
        return len(_standing20_current(conn))


def standing20_revoked(node: Node) -> int:
    t = standing_consents
    with node.store.repository() as repo:
        every = {(r[0], r[1]) for r in repo.conn.execute(
            sa.select(t.c.consent_id, t.c.originator).where(t.c.kind == "revoke"))}
    return len(every & NAMED)


# A batch of relays under one consent in force, and one whose revocation is held.
NAMED = {("standing-consent--current-0", "KOR"), ("standing-consent--4", "AUS")}


# ---- after -------------------------------------------------------------------------------

def new_current(node: Node) -> int:
    with node.store.repository() as repo:
        return len(repo.standing_current(NOW))


def new_revoked(node: Node) -> int:
    with node.store.repository() as repo:
        return len(repo.revoked_standing(NAMED))


def new_held(node: Node) -> int:
    with node.store.repository() as repo:
        return len(standing.in_force(repo.standing_current(NOW)))


def new_in_force_from(node: Node) -> int:
    with node.store.repository() as repo:
        return standing._in_force_from(repo.standing_current(NOW), "KOR", NOW)


def new_orphans(node: Node) -> int:
    with node.store.repository() as repo:
        return repo.standing_orphans("KOR", NOW - WINDOW)


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        call()
    return ((time.perf_counter() - wall) / repeat * 1e3,
            (time.process_time() - cpu) / repeat * 1e3)


def measure(n: int, revoked_half: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="standing22-") as tmp:
        node = init_node(Path(tmp) / "jpn", "JPN", catalogue=load_catalogue(), now=NOW)
        try:
            rows = (history_revoked_half if revoked_half else history)(n)
            fill(node, rows)
            revocations = {(r.consent_id, r.originator) for r in rows if r.kind == "revoke"}
            # What standing20's read walked and dropped: grants revoked before their end.
            walked = sum(r.kind == "grant" and (r.consent_id, r.originator) in revocations
                         and (r.ends is None or r.ends > NOW) for r in rows)
            with node.store.repository() as repo:
                usable = [c for c in standing.in_force(repo.standing_consents())
                          if not c.revoked and c.not_after > NOW]
                assert standing.in_force(repo.standing_current(NOW)) == usable
            assert len(usable) == new_held(node) >= 20
            assert old_in_force_from(node) == new_in_force_from(node)
            with node.store.engine.connect() as conn, node.store.repository() as repo:
                assert [r.row for r in _standing20_current(conn)] == [
                    r.row for r in conn.execute(standing_consents.select().where(
                        standing_consents.c.kind == "grant",
                        standing_consents.c.revoked == sa.false(),
                        standing_consents.c.not_after > NOW).order_by(standing_consents.c.row))]
                assert len(repo.standing_current(NOW)) == standing20_current(node) >= 20
            assert standing20_revoked(node) == new_revoked(node)
            with node.store.repository() as repo:
                assert repo.revoked_standing(NAMED) == NAMED & {
                    (r.consent_id, r.originator) for r in repo.standing_consents()
                    if r.kind == "revoke"}
            repeat = max(1, 20000 // n)
            out: dict[str, Any] = {"rows": n, "history": "revoked_half" if revoked_half
                                   else "standing20",
                                   "grants_revoked_before_their_end": walked}
            for name, old, new in (("standing_held", old_held, new_held),
                                   ("consents_in_force_bound", old_in_force_from,
                                    new_in_force_from),
                                   ("orphan_revocations_bound", old_orphans, new_orphans),
                                   ("standing_current_vs_standing20", standing20_current,
                                    new_current),
                                   ("receive_revoked_read", standing20_revoked, new_revoked)):
                rounds: list[tuple[float, float, float, float]] = []
                for _ in range(5):
                    rounds.append(timed(partial(old, node), repeat)
                                  + timed(partial(new, node), repeat))
                ow, oc, nw, nc = (statistics.median(r[k] for r in rounds) for k in range(4))
                out[name] = {"before_ms": round(ow, 3), "before_cpu_ms": round(oc, 3),
                             "after_ms": round(nw, 3), "after_cpu_ms": round(nc, 3),
                             "cpu_ratio": round(oc / nc, 1) if nc else None}
            return out
        finally:
            node.close()


def main(argv: list[str]) -> int:
    half = "--revoked-half" in argv
    sizes = [int(a) for a in argv if a != "--revoked-half"] or [1000, 10000, 100000]
    results = [measure(n, half) for n in sizes]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
