"""A partner's batch is synced to disk after the receive lets go of the write lock
(``Store.uow(sync_outside=True)``): a second batch, arriving while the first's sync runs,
takes the lock and writes meanwhile (behind29: at the report bench a report sent beside one
in flight waited there for the first batch's lock and sync). Each batch is still on disk
before it is answered, both are receipted, a bad envelope in one costs the other nothing,
and nothing leaves the node from a commit whose sync has not ended."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import gsomia.shell.store._store as store_module
import gsomia.shell.store._unit_of_work as uow_module
from gsomia import bootstrap
from gsomia.core import crypto
from gsomia.service import handlers
from gsomia.shell import exchange, federation
from gsomia.shell.peer_inbox import NodeInbox
from gsomia.shell.store import envelopes_seen, items, now_utc

SENSOR_REPORT = handlers.LabelRequest("군사III급비밀", ("JPN", "KOR", "USA"), "dprk-missile",
                                      category="sensor-report")


def _report(i: int) -> dict[str, Any]:
    stamp = f"2026-11-01T00:00:{i % 60:02d}.000Z"
    return {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
            "created": stamp, "modified": stamp, "abstract": "R1: 1 radar measurement",
            "content": "R1: 1 radar measurement",
            "x_gsomia_sensor_report": {"sensor": "KOR-R1", "epoch": stamp,
                                       "reference": [38.0, 127.0, 0.0], "t": [0.0],
                                       "z": [[812345.0 + i, 45.1, 12.1]],
                                       "cov": [[1.0e4, 1.2, 0.3, 0.01, 0.001, 0.02]]}}


@contextmanager
def _pair(folder: Path) -> Iterator[tuple[Any, Any, exchange.Sender]]:
    """KOR and JPN of a ``direct`` federation, in this process, and KOR's sender to JPN."""
    federation.configure(folder, "direct", federation.free_base_port())
    kor, jpn = bootstrap.open_node(folder / "KOR"), bootstrap.open_node(folder / "JPN")
    sender = exchange.Sender(kor, batch=100, link="JPN")
    try:
        yield kor, jpn, sender
    finally:
        sender.close()
        kor.close()
        jpn.close()


def _envelopes(kor: Any, sender: exchange.Sender, n: int) -> list[crypto.Envelope]:
    """``n`` reports published at KOR and sealed for JPN, as JPN reads them."""
    exchange.publish(kor, entries=[(_report(i), SENSOR_REPORT) for i in range(n)])
    batch = sender._seal(exchange.require_partners(kor).peer("JPN"))
    assert batch is not None and len(batch.bodies) == n
    return [crypto.Envelope.from_json(json.loads(b)) for b in batch.bodies]


def _forged(envelope: crypto.Envelope) -> crypto.Envelope:
    signature = bytes([envelope.signature[0] ^ 1]) + envelope.signature[1:]
    return dataclasses.replace(envelope, signature=signature)


def _database(node: Any) -> str:
    return str(node.store.engine.url.database)


def _writer_free(database: str) -> bool:
    """Whether another writer could take the write lock now (it is let go again)."""
    conn = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def _held(node: Any) -> tuple[set[str], int]:
    with node.store.engine.connect() as conn:
        ids = {str(i) for i in conn.execute(sa.select(items.c.id)).scalars()}
        seen = conn.execute(sa.select(sa.func.count()).select_from(envelopes_seen)).scalar()
    return ids, int(seen or 0)


def _spying(monkeypatch: pytest.MonkeyPatch, during: Callable[[], None]) -> list[float]:
    """The log syncs of receive commits, each calling ``during`` first; their end times."""
    real = getattr(uow_module, "_sync_log")  # noqa: B009  (private: not exported)
    ended: list[float] = []

    def sync(conn: sa.Connection) -> None:
        during()
        real(conn)
        ended.append(time.monotonic())

    monkeypatch.setattr(uow_module, "_sync_log", sync)
    return ended


def test_a_received_batch_is_synced_once_the_write_lock_is_free_and_before_its_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Failed before the change (seen): the receive committed synchronous=FULL, its disk
    # sync inside the lock; no sync ran after it (``free`` stayed empty).
    with _pair(tmp_path / "fed") as (kor, jpn, sender):
        envelopes = _envelopes(kor, sender, 3)
        free: list[bool] = []
        _spying(monkeypatch, lambda: free.append(_writer_free(_database(jpn))))
        results = NodeInbox(jpn).deliver_many(envelopes, "KOR", now_utc())
        assert free == [True]  # the sync ran, the lock already let go
        assert all(r.receipt is not None for r in results)
        held, seen = _held(jpn)
        assert {e.item_id for e in envelopes} <= held and seen == 3
        # Its head is copied beside the database as a synced commit's, none held back.
        assert jpn.store._uncopied is None


def _both(jpn: Any, first: list[crypto.Envelope], second: list[crypto.Envelope],
          monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any], bool]:
    """``first`` and ``second`` received at once on two threads, the second sent once the
    first's sync has begun, which is held until the second's receive has returned (30 s at
    most): their results, and whether the second returned while the first's sync was held
    (it did not wait for the first to let go of anything)."""
    begun, second_done = threading.Event(), threading.Event()
    calls = [0]
    waited: list[bool] = []

    def during() -> None:
        calls[0] += 1
        if calls[0] == 1:
            begun.set()
            waited.append(second_done.wait(30))

    _spying(monkeypatch, during)
    inbox = NodeInbox(jpn)
    out: dict[str, list[Any]] = {}
    one = threading.Thread(target=lambda: out.__setitem__(
        "first", inbox.deliver_many(first, "KOR", now_utc())))
    one.start()
    assert begun.wait(30)
    out["second"] = inbox.deliver_many(second, "KOR", now_utc())
    second_done.set()
    one.join(60)
    return out["first"], out["second"], waited == [True]


def test_a_second_batch_commits_while_the_first_syncs_and_a_bad_envelope_loses_no_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _pair(tmp_path / "fed") as (kor, jpn, sender):
        sealed = _envelopes(kor, sender, 4)
        first, good = sealed[:2], sealed[2:]
        second = [good[0], _forged(good[1])]
        got_first, got_second, beside = _both(jpn, first, second, monkeypatch)
        # The second batch was received, synced and answered while the first's sync was
        # still held: it waited for neither the first's lock nor its sync.
        assert beside
        assert all(r.receipt is not None for r in got_first)
        assert got_second[0].receipt is not None
        assert got_second[1].receipt is None and got_second[1].status == 403
        held, seen = _held(jpn)
        assert {e.item_id for e in first} | {good[0].item_id} <= held
        assert good[1].item_id not in held and seen == 3


def test_nothing_leaves_while_a_commit_synced_outside_the_lock_is_unsynced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A relay queued by a received batch, sealed while that batch's sync runs, must not
    # reach a partner before the batch is on disk: the sender syncs the log first.
    with _pair(tmp_path / "fed") as (kor, _jpn, _sender):
        exchange.publish(kor, entries=[(_report(0), SENSOR_REPORT)])
        syncs: list[str] = []
        real = getattr(store_module, "_sync_log")  # noqa: B009  (private: not exported)

        def logged_sync(conn: sa.Connection) -> None:
            syncs.append("sync")
            real(conn)

        monkeypatch.setattr(store_module, "_sync_log", logged_sync)

        def partner(request: httpx.Request) -> httpx.Response:
            syncs.append("post")
            n = len(json.loads(request.content)["envelopes"])
            return httpx.Response(503, json={"results": [{}] * n})

        client = httpx.Client(transport=httpx.MockTransport(partner))
        quiet = exchange.Sender(kor, client=client, link="JPN")
        try:
            kor.store.syncing(+1)  # a receive's commit, visible and not yet synced
            try:
                quiet.step()  # the batch is posted on the sender's posting thread
                assert exchange.wait_until(lambda: "post" in syncs, 30)
            finally:
                kor.store.syncing(-1)
            assert syncs == ["sync", "post"]
            syncs.clear()
            exchange.publish(kor, entries=[(_report(1), SENSOR_REPORT)])
            quiet.step()  # none pending: no sync of its own
            assert exchange.wait_until(lambda: "post" in syncs, 30)
        finally:
            quiet.close()
        assert syncs == ["post"]


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(split=hs.integers(min_value=1, max_value=4),
       forged=hs.sets(hs.integers(min_value=0, max_value=4), max_size=3))
def test_two_batches_at_once_receipt_each_good_envelope_once_and_hold_no_forged_one(
        tmp_path_factory: pytest.TempPathFactory, split: int, forged: set[int]) -> None:
    """Security invariant, any split of five envelopes into two batches received at once,
    any of them forged: every genuine one is held and receipted, each nonce in the replay
    register once; no forged one is held or receipted."""
    with pytest.MonkeyPatch.context() as monkeypatch, \
            _pair(tmp_path_factory.mktemp("fed")) as (kor, jpn, sender):
        sealed = _envelopes(kor, sender, 5)
        sent = [_forged(e) if i in forged else e for i, e in enumerate(sealed)]
        got_first, got_second, _ = _both(jpn, sent[:split], sent[split:], monkeypatch)
        held, seen = _held(jpn)
        for i, (envelope, result) in enumerate(zip(sent, got_first + got_second,
                                                   strict=True)):
            if i in forged:
                assert result.receipt is None and envelope.item_id not in held
            else:
                assert result.receipt is not None and envelope.item_id in held
                assert result.receipt.item_id == envelope.item_id
        assert seen == 5 - len(forged)
