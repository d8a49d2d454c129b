"""The sending node killed with SIGKILL in the middle of a stream of deliveries, restarted
in the same folder on the same port, several times: its partner ends up holding every item
exactly once, one receipt is given and one obtained per (item, version, partner), the
outbox ends all delivered, and every node's audit log verifies.

Three real node processes (``gsomia federation up``, direct topology). KOR publishes a
stream of items released to JPN from this process (its publishes are acknowledged, so
none may be lost) while KOR's ``node run`` process, the one running the sender, is killed:
some kills land while JPN has stored and receipted a batch that KOR has not yet recorded
(KOR resends, and JPN must answer the duplicate without recording anything twice), others
after a random delay (seeded; the seed is in every failure message).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federating import one_pass
from gsomia import bootstrap
from gsomia.core import crypto
from gsomia.service import handlers
from gsomia.shell import exchange, federation, notices
from gsomia.shell.commands import node as node_commands
from gsomia.shell.node import Node
from gsomia.shell.store import envelopes_seen, items, now_utc, outbox, receipts

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

LABEL = handlers.LabelRequest("군사III급비밀", ("KOR", "JPN"), "dprk-missile")
MID_DELIVERY_KILLS, DELAYED_KILLS, EXTRA_MID_KILLS = 2, 1, 3


def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"launch preparation {n}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}


class Publisher(threading.Thread):
    """Publishes small batches at KOR until stopped; ``acknowledged`` holds every item whose
    publish returned (committed, deliveries queued)."""

    def __init__(self, node: Node, rng: random.Random) -> None:
        super().__init__(name="publisher", daemon=True)
        self.node, self.rng = node, rng
        self.acknowledged: list[tuple[str, str]] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        try:
            while not self.halt.is_set():
                batch = [indicator(n + i) for i in range(self.rng.randint(1, 6))]
                n += len(batch)
                exchange.publish(self.node, entries=[(o, LABEL) for o in batch])
                self.acknowledged += [(o["id"], o["modified"]) for o in batch]
                self.halt.wait(self.rng.uniform(0.02, 0.06))
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def count(node: Node, query: Any) -> int:
    with node.store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def given_count(jpn: Node) -> int:
    return count(jpn, sa.select(sa.func.count()).select_from(receipts)
                 .where(receipts.c.direction == "given"))


def delivered_count(kor: Node) -> int:
    return count(kor, sa.select(sa.func.count()).select_from(outbox)
                 .where(outbox.c.status == exchange.DELIVERED))


def kor_pid(folder: Path) -> int:
    return int((folder / "KOR" / federation.PID_FILE).read_text().strip())


def kill_kor(folder: Path) -> None:
    os.kill(kor_pid(folder), signal.SIGKILL)
    assert exchange.wait_until(lambda: federation.running_pid(folder / "KOR") is None, 10)


def kill_mid_delivery(folder: Path, kor: Node, jpn: Node, timeout: float = 15) -> bool:
    """SIGKILL KOR's node process as soon as JPN holds a receipted batch that KOR has not
    recorded yet (the answer is on its way back). False if that moment never came."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if given_count(jpn) > delivered_count(kor):
            kill_kor(folder)
            return True
        time.sleep(0.0005)
    return False


def duplicates(node: Node, table: sa.Table, *keys: sa.Column[Any]) -> list[Any]:
    with node.store.engine.connect() as conn:
        return list(conn.execute(sa.select(*keys, sa.func.count()).select_from(table)
                                 .group_by(*keys).having(sa.func.count() != 1)))


def test_sender_killed_mid_delivery_resumes_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("GSOMIA_CRASH_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    why = f"(seed {seed}; GSOMIA_CRASH_SEED={seed} reproduces the kill delays)"
    folder = tmp_path / "direct"
    base = federation.free_base_port()
    federation.up(folder, "direct", base)
    kor, jpn = bootstrap.open_node(folder / "KOR"), bootstrap.open_node(folder / "JPN")
    publisher = Publisher(kor, rng)
    kills: list[str] = []
    try:
        publisher.start()
        plan = ["mid", "delay"] * DELAYED_KILLS + ["mid"] * (MID_DELIVERY_KILLS - DELAYED_KILLS)
        plan += ["mid-extra"] * EXTRA_MID_KILLS
        for kind in plan:
            resent = count(jpn, sa.select(sa.func.count()).select_from(envelopes_seen)) > \
                count(jpn, sa.select(sa.func.count()).select_from(items))
            if kind == "mid-extra" and resent:
                break  # a kill already caught an answer in flight, and it was resent
            if kind == "delay":
                pause = rng.uniform(0.0, 0.4)
                time.sleep(pause)
                kill_kor(folder)
                kills.append(f"after {pause * 1000:.0f} ms")
            else:
                assert kill_mid_delivery(folder, kor, jpn), f"deliveries stalled {why}"
                kills.append("mid-delivery")
            # KOR is down; publishes go on queueing; then the same folder, the same port.
            time.sleep(rng.uniform(0.05, 0.3))
            status = federation.up(folder, "direct", base)
            assert status["nodes"]["KOR"]["running"], why
            with kor.store.reader() as reader:
                size_at_restart = reader.latest_head().size
        publisher.halt.set()
        publisher.join(30)
        assert publisher.error is None, publisher.error
        sent = publisher.acknowledged
        assert len(sent) >= 50, f"only {len(sent)} items published {why}"
        assert exchange.wait_until(lambda: exchange.pending(kor) == 0, 60), \
            f"{exchange.pending(kor)} deliveries still pending {why}"

        # The kills did land mid-delivery: JPN was sent some envelope again.
        seen = count(jpn, sa.select(sa.func.count()).select_from(envelopes_seen))
        assert seen > len(sent), f"no resend happened in {kills} {why}"

        # Nothing lost, nothing twice: items at JPN.
        with jpn.store.engine.connect() as conn:
            held = {(r.id, r.version) for r in conn.execute(sa.select(items.c.id,
                                                                      items.c.version))}
        assert set(sent) <= held, f"{len(set(sent) - held)} items lost {why}"
        assert duplicates(jpn, items, items.c.id, items.c.version) == [], why
        # One receipt given by JPN per (item, version, sender), one obtained by KOR per
        # (item, version, recipient), and they are the same receipts.
        for node, direction, peer in ((jpn, "given", "KOR"), (kor, "obtained", "JPN")):
            with node.store.engine.connect() as conn:
                rows = conn.execute(sa.select(receipts.c.item_id, receipts.c.version,
                                              receipts.c.peer, receipts.c.document)
                                    .where(receipts.c.direction == direction)).all()
            keys = [(r.item_id, r.version) for r in rows]
            assert len(keys) == len(set(keys)), f"{direction} recorded twice {why}"
            assert {r.peer for r in rows} == {peer}
            assert set(keys) == set(sent), f"{direction}: {len(set(sent) ^ set(keys))} off"
            if direction == "obtained":
                # Each is JPN's signature (for the envelope that got through, when resent).
                for r in rows:
                    crypto.verify_receipt(crypto.Receipt.from_json(json.loads(r.document)),
                                          jpn.keys.public_signing_key())
        # The outbox ends all delivered, once per item, none refused or left.
        queue = exchange.outbox_rows(kor)
        assert {r["status"] for r in queue} == {exchange.DELIVERED}, why
        assert sorted((r["item_id"], r["version"]) for r in queue) == sorted(sent)
        assert count(jpn, sa.text("select count(*) from audit_events "
                                  "where kind = 'envelope-refused'")) == 0, why

        # The partners' exchanged tree heads: KOR's log, grown across the kills, still
        # extends every head of it JPN recorded (one checked after the last restart), and
        # the other way round.
        def heads_settled() -> bool:
            seen = {p["partner"]: p for p in notices.partner_heads(jpn)}
            back = {p["partner"]: p for p in notices.partner_heads(kor)}
            return ((seen.get("KOR") or {}).get("checked_size") or 0) > size_at_restart and \
                (back.get("JPN") or {}).get("consistent") is True

        assert exchange.wait_until(heads_settled, 60, interval=0.5), \
            f"{notices.partner_heads(jpn)} {why}"
        for node in (kor, jpn):
            assert all(p["consistent"] is True for p in notices.partner_heads(node)), why
            assert count(node, sa.text("select count(*) from audit_events "
                                       "where kind = 'partner-log-inconsistent'")) == 0, why
    finally:
        publisher.halt.set()
        publisher.join(30)
        kor.close()
        jpn.close()
        stopped = federation.down(folder)
    assert set(stopped.values()) <= {"stopped"}, stopped
    runner, group = CliRunner(), click.Group()
    node_commands.register(group)
    for code in ("JPN", "KOR", "USA"):
        result = runner.invoke(group, ["audit", "verify", "--node", str(folder / code)])
        assert result.exit_code == 0, f"{code}: {result.output} {why}"
        assert "intact" in result.output


# ---- the invariant, in one process: answers lost at any point ------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """KOR and JPN of a direct federation, opened in this process (no node processes)."""
    folder = tmp_path_factory.mktemp("pair")
    federation.configure(folder, "direct", federation.free_base_port())
    kor, jpn = bootstrap.open_node(folder / "KOR"), bootstrap.open_node(folder / "JPN")
    yield kor, jpn
    kor.close()
    jpn.close()


class LossyLink:
    """JPN's peer API as a transport that, as told, loses JPN's answer after JPN committed
    (what a sender killed before recording it sees). Keeps every receipt JPN gave."""

    def __init__(self, jpn: Node, losses: list[bool]) -> None:
        self.jpn, self.losses = jpn, list(losses)
        self.answered: list[tuple[crypto.Envelope, dict[str, Any]]] = []

    def __call__(self, request: Any) -> Any:
        import httpx

        body = json.loads(request.content)
        envelopes = [crypto.Envelope.from_json(e) for e in body["envelopes"]]
        results = exchange.receive(self.jpn, exchange.require_partners(self.jpn),
                                   envelopes, "KOR", now_utc())
        docs = [r.to_json() for r in results]
        self.answered += list(zip(envelopes, docs, strict=True))
        if self.losses and self.losses.pop(0):
            raise httpx.ReadError("the answer was lost", request=request)
        return httpx.Response(202, json={"results": docs})


def _clock() -> Any:
    from datetime import UTC, datetime, timedelta

    ticks = iter(range(10**9))
    start = datetime.now(UTC)
    # Ten seconds a reading: every backoff has run out by the next pass.
    return lambda: start + timedelta(seconds=10 * next(ticks))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(n=st.integers(1, 7), batch=st.integers(1, 4),
       losses=st.lists(st.booleans(), max_size=8), push_back=st.booleans())
def test_lost_answers_never_lose_or_double_anything(pair: Any, n: int, batch: int,
                                                    losses: list[bool],
                                                    push_back: bool) -> None:
    import httpx

    from gsomia.shell.peer_inbox import NodeInbox

    kor, jpn = pair
    objs = [indicator(i) for i in range(n)]
    exchange.publish(kor, entries=[(o, LABEL) for o in objs])
    sent = {(o["id"], o["modified"]) for o in objs}
    link = LossyLink(jpn, losses)
    sender = exchange.Sender(kor, batch=batch, clock=_clock(),
                             client=httpx.Client(transport=httpx.MockTransport(link)))
    try:
        for _ in range(4 * (n + len(losses)) + 4):
            if not any(r["status"] == exchange.PENDING for r in exchange.outbox_rows(kor)
                       if (r["item_id"], r["version"]) in sent):
                break
            sender.step()
    finally:
        sender.close()
    rows = [r for r in exchange.outbox_rows(kor) if (r["item_id"], r["version"]) in sent]
    assert sorted(r["status"] for r in rows) == [exchange.DELIVERED] * n
    # Every envelope JPN answered, resends included, carried JPN's receipt for it.
    jpn_key = jpn.keys.public_signing_key()
    for envelope, doc in link.answered:
        crypto.verify_receipt(crypto.Receipt.from_json(doc["receipt"]), jpn_key,
                              envelope=envelope)
    if push_back:
        # JPN also pushes its receipts over the peer API: KOR keeps what it holds.
        inbox = NodeInbox(kor)
        for _, doc in link.answered:
            inbox.receipt(crypto.Receipt.from_json(doc["receipt"]), "JPN", now_utc())
    ids = sorted({i for i, _ in sent})
    for node, direction in ((jpn, "given"), (kor, "obtained")):
        with node.store.engine.connect() as conn:
            kept = [(r.item_id, r.version) for r in conn.execute(
                sa.select(receipts.c.item_id, receipts.c.version).where(
                    receipts.c.item_id.in_(ids), receipts.c.direction == direction))]
        assert sorted(kept) == sorted(sent), (direction, losses)
    with jpn.store.engine.connect() as conn:
        held = [(r.id, r.version) for r in conn.execute(
            sa.select(items.c.id, items.c.version).where(items.c.id.in_(ids)))]
    assert sorted(held) == sorted(sent)
    for node in (kor, jpn):
        with node.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        assert verdict.ok, [p.to_json() for p in verdict.problems]


def test_the_same_batch_delivered_twice_at_once_is_stored_once(pair: Any) -> None:
    """The peer API answers each delivery on a worker thread of its own, so a batch and a
    copy of it (a partner's duplicate, or a replay) may be received at the same time: each
    envelope is stored and receipted once, the other copy answered 409, nothing lost."""
    import httpx

    from gsomia.shell.peer_inbox import NodeInbox

    kor, jpn = pair
    objs = [indicator(i) for i in range(6)]
    exchange.publish(kor, entries=[(o, LABEL) for o in objs])
    sent = {(o["id"], o["modified"]) for o in objs}
    inbox, both = NodeInbox(jpn), threading.Barrier(2)
    answers: list[list[exchange.Delivered]] = []

    def twice(request: Any) -> Any:
        envelopes = [crypto.Envelope.from_json(e)
                     for e in json.loads(request.content)["envelopes"]]
        copies: list[list[exchange.Delivered]] = [[], []]

        def receive(k: int) -> None:
            both.wait(timeout=10)
            copies[k] = inbox.deliver_many(envelopes, "KOR", now_utc())

        threads = [threading.Thread(target=receive, args=(k,)) for k in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        answers.extend(copies)
        # The sender hears the copy that was stored (the other is the duplicate's answer).
        won = [a if a.receipt is not None else b for a, b in zip(*copies, strict=True)]
        return httpx.Response(202, json={"results": [r.to_json() for r in won]})

    one_pass(kor, twice, batch=len(objs), clock=_clock())
    first, second = answers[:2]
    assert len(first) == len(second) == len(objs)
    # Per envelope: one copy receipted, the other refused as a replay.
    for a, b in zip(first, second, strict=True):
        assert sorted([a.receipt is None, b.receipt is None]) == [False, True]
        assert (a.status if a.receipt is None else b.status) == 409
    _each_held_once_and_delivered(kor, jpn, sent)


def test_overlapping_batches_at_once_refuse_only_the_shared_envelopes(
        pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two batches sharing some envelopes, received at once, both having read the replay
    register before either committed: the one that commits second loses the race on the
    shared nonces only. Its new envelopes are stored and receipted all the same (a refusal
    is final to the sender: refused with the shared ones, they would never be delivered)."""
    import httpx

    from gsomia.shell.peer_inbox import NodeInbox

    kor, jpn = pair
    objs = [indicator(i) for i in range(6)]
    exchange.publish(kor, entries=[(o, LABEL) for o in objs])
    sent = {(o["id"], o["modified"]) for o in objs}
    inbox, both = NodeInbox(jpn), threading.Barrier(2)
    reads, lock = [0], threading.Lock()
    real_seen = exchange._receiving._seen_nonces

    def seen_then_wait(node: Any, nonces: list[str]) -> set[str]:
        # Both first reads happen before either commit: the race, every run.
        found = real_seen(node, nonces)
        with lock:
            reads[0] += 1
            first = reads[0] <= 2
        if first:
            both.wait(timeout=10)
        return found

    monkeypatch.setattr(exchange._receiving, "_seen_nonces", seen_then_wait)
    answers: list[list[exchange.Delivered]] = []

    def overlapping(request: Any) -> Any:
        envelopes = [crypto.Envelope.from_json(e)
                     for e in json.loads(request.content)["envelopes"]]
        batches = [envelopes[:4], envelopes[2:]]  # envelopes 2 and 3 in both
        got: list[list[exchange.Delivered]] = [[], []]

        def receive(k: int) -> None:
            got[k] = inbox.deliver_many(batches[k], "KOR", now_utc())

        threads = [threading.Thread(target=receive, args=(k,)) for k in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        answers.extend(got)
        a, b = got
        shared = [x if x.receipt is not None else y for x, y in zip(a[2:], b[:2], strict=True)]
        won = a[:2] + shared + b[2:]
        return httpx.Response(202, json={"results": [r.to_json() for r in won]})

    one_pass(kor, overlapping, batch=len(objs), clock=_clock())
    assert reads[0] >= 2, "the two deliveries did not race"
    a, b = answers[:2]
    assert len(a) == len(b) == 4
    for new in a[:2] + b[2:]:
        assert new.receipt is not None, f"a new envelope was refused: {new.to_json()}"
    for x, y in zip(a[2:], b[:2], strict=True):
        assert sorted([x.receipt is None, y.receipt is None]) == [False, True]
        assert (x.status if x.receipt is None else y.status) == 409
    _each_held_once_and_delivered(kor, jpn, sent)


def _each_held_once_and_delivered(kor: Any, jpn: Any, sent: set[tuple[str, str]]) -> None:
    """JPN holds each version sent once, with one receipt given each; KOR's outbox has them
    all delivered; JPN's log verifies."""
    ids = sorted({i for i, _ in sent})
    with jpn.store.engine.connect() as conn:
        held = [(r.id, r.version) for r in conn.execute(
            sa.select(items.c.id, items.c.version).where(items.c.id.in_(ids)))]
        given_ = [(r.item_id, r.version) for r in conn.execute(
            sa.select(receipts.c.item_id, receipts.c.version).where(
                receipts.c.item_id.in_(ids), receipts.c.direction == "given"))]
    assert sorted(held) == sorted(given_) == sorted(sent)
    rows = [r for r in exchange.outbox_rows(kor) if (r["item_id"], r["version"]) in sent]
    assert sorted(r["status"] for r in rows) == [exchange.DELIVERED] * len(sent)
    with jpn.store.reader() as reader:
        verdict = handlers.verify_audit(reader, public_key=jpn.keys.public_signing_key())
    assert verdict.ok, [p.to_json() for p in verdict.problems]
