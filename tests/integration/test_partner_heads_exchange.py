"""The tree-head exchange through the real peer API (in process): JPN records KOR's heads
while they extend each other, and a KOR log forked from a copy of its database (same keys,
a different history) is recorded as inconsistent, never becomes the base for the next check,
and makes ``audit partners`` fail."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta

import click
from click.testing import CliRunner

from gsomia import bootstrap
from gsomia.bootstrap import app_for_node
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind
from gsomia.service import handlers
from gsomia.service.refusals import RefusalWindow
from gsomia.shell import notices
from gsomia.shell.commands import notices as notice_commands
from gsomia.shell.doctor import partner_checks
from gsomia.shell.exchange import Partners, Peer
from gsomia.shell.node import Node, open_node
from gsomia.shell.store import read_external_head

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's deprecation notice about httpx
    from starlette.testclient import TestClient


def grow(node: Node, n: int, what: str, now: datetime) -> None:
    for i in range(n):
        handlers.report_incident(node.uow(), keys=node.keys, kind="investigation-result",
                                 description=f"{what} {i}", now=now + timedelta(seconds=i))


def client_for(node: Node, jpn: Node) -> TestClient:
    app = app_for_node(node, partner_keys={"JPN": jpn.keys.public_signing_key()},
                       peer_identity=lambda scope: "JPN")
    return TestClient(app, base_url="https://kor.test")


def size_and_copy(node: Node) -> tuple[int, int]:
    """The size of the node's newest head, and of its copy beside the database."""
    with node.store.engine.connect() as conn:
        size = int(conn.exec_driver_sql("SELECT max(size) FROM tree_heads").scalar() or 0)
    copy = read_external_head(node.folder / "tree-head.json")
    return size, -1 if copy is None else copy.size


def partners_cli(jpn: Node) -> tuple[int, dict[str, object]]:
    group = click.Group()
    notice_commands.register(group)
    result = CliRunner().invoke(group, ["audit", "partners", "--node", str(jpn.folder),
                                        "--json"])
    return result.exit_code, json.loads(result.output)


def test_forked_partner_log_is_recorded_inconsistent(
        node_factory: Callable[..., Node], shipped: Catalogue, now: datetime) -> None:
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    grow(kor, 3, "before the copy", now)
    kor.close()
    fork_folder = kor.folder.parent / "kor-fork"
    shutil.copytree(kor.folder, fork_folder)
    kor, fork = open_node(kor.folder, catalogue=shipped), open_node(fork_folder,
                                                                    catalogue=shipped)
    try:
        peer = Peer("KOR", "https://kor.test", kor.keys.public_signing_key(),
                    kor.keys.envelope_key().public_key())
        sender = notices.NoticeSender(jpn, client=client_for(kor, jpn))
        first = sender.exchange_with(peer)
        assert first is not None and first.consistent and first.from_size == 0
        # Both records of a consistent exchange wait for no disk sync: the head of such a
        # commit is not copied beside the database (a synced commit's is, at once), and
        # KOR answered with its head as it was before it recorded JPN's (on disk already).
        (jpn_size, jpn_copy), (kor_size, kor_copy) = size_and_copy(jpn), size_and_copy(kor)
        assert jpn_copy < jpn_size and kor_copy < kor_size
        answered = sender.base("KOR")
        assert answered is not None and answered.size == kor_size - 1 == kor_copy
        grow(kor, 2, "after the copy", now)
        second = sender.exchange_with(peer)
        assert second is not None and second.consistent and second.from_size > 0
        base = sender.base("KOR")
        assert base is not None
        code, doc = partners_cli(jpn)
        assert code == 0 and doc["consistent"] is True
        assert [c.ok for c in partner_checks(jpn.folder, bootstrap.catalogue)] == [True]

        # The copy grows a different history past the recorded size, under the same key.
        grow(fork, 8, "rewritten", now)
        forked = notices.NoticeSender(jpn, client=client_for(fork, jpn))
        verdict = forked.exchange_with(peer)
        assert verdict is not None and not verdict.consistent
        assert verdict.from_size == base.size
        jpn_size, jpn_copy = size_and_copy(jpn)
        assert jpn_copy == jpn_size, "the evidence of a fork was recorded without a sync"
        # Never the base for the next check, not even for a sender that reloads it.
        assert forked.base("KOR") == base
        assert notices.NoticeSender(jpn).base("KOR") == base
        with jpn.store.reader() as reader:
            bad = [r for r in reader.rows()
                   if r["kind"] == AuditKind.PARTNER_LOG_INCONSISTENT.value]
        assert len(bad) == 1
        code, doc = partners_cli(jpn)
        assert code == 1 and doc["consistent"] is False
        row = doc["partners"][0]  # type: ignore[index]
        assert row["partner"] == "KOR" and row["consistent"] is False
        (check,) = partner_checks(jpn.folder, bootstrap.catalogue)
        assert not check.ok and check.required and "INCONSISTENT" in check.detail
        # The genuine log still extends the base, but the evidence of the fork stays.
        again = sender.exchange_with(peer)
        assert again is not None and again.consistent
        code, doc = partners_cli(jpn)
        assert code == 1 and doc["partners"][0]["inconsistencies"] == 1  # type: ignore[index]
    finally:
        kor.close()
        fork.close()


def test_the_exchanges_settle_on_each_other_s_records_and_then_stop(
        node_factory: Callable[..., Node], now: datetime) -> None:
    """A partner answers with its head from before it recorded the asker's, so one exchange
    more, at the next pass, checks that record: each node ends holding a checked head of the
    other's log past the last exchange of the burst (test_sender_crash's heads never
    settled without it). And then both stop: records of heads make no node ask again."""
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    grow(jpn, 1, "jpn", now)
    grow(kor, 1, "kor", now)

    def app_of(node: Node, asker: Node) -> TestClient:
        app = app_for_node(node, partner_keys={asker.party: asker.keys.public_signing_key()},
                           peer_identity=lambda scope: asker.party)
        return TestClient(app, base_url=f"https://{node.party.lower()}.test")

    def peer(node: Node) -> Peer:
        return Peer(node.party, f"https://{node.party.lower()}.test",
                    node.keys.public_signing_key(), node.keys.envelope_key().public_key())

    sides = [(notices.NoticeSender(a, client=app_of(b, a)),
              Partners(a.party, "direct", {b.party: peer(b)}, (b.party,)), b)
             for a, b in ((jpn, kor), (kor, jpn))]

    def a_pass() -> list[int]:
        """One pass of each node's exchange as its loop makes it (not forced): how many."""
        done = []
        for sender, partners, _ in sides:
            report = notices.NoticeReport()
            sender.exchange_heads(partners, report)
            assert report.failed == 0 and report.inconsistent == 0
            done.append(report.heads)
        return done

    def checked() -> list[int]:
        """Per node: the size of its checked head of the partner's log."""
        bases = [sender.base(partner.party) for sender, _, partner in sides]
        assert None not in bases
        return [b.size for b in bases if b is not None]

    assert a_pass() == [1, 1]
    burst = [size_and_copy(partner)[0] for _, _, partner in sides]
    # Each answer left out the answerer's record of the asker's head.
    assert all(c < b for c, b in zip(checked(), burst, strict=True))
    settled = [a_pass() for _ in range(4)]
    assert settled[0] == [1, 1], "no exchange checked the partner's record of the last one"
    assert all(c >= b for c, b in zip(checked(), burst, strict=True))
    assert settled[1:] == [[0, 0]] * 3, "the nodes went on exchanging records of records"
    sizes = [size_and_copy(n)[0] for n in (jpn, kor)]
    grow(jpn, 1, "more", now)
    assert a_pass() == [1, 0] and a_pass() == [1, 0] and a_pass() == [0, 0]
    assert size_and_copy(kor)[0] == sizes[1] + 2  # JPN's two heads, nothing more


def test_classification_notice_route_is_documented_and_refuses_junk(
        node_factory: Callable[..., Node]) -> None:
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    client = client_for(kor, jpn)
    doc = client.get("/openapi.json").json()
    assert "post" in doc["paths"]["/peer/v1/classification-notices/"]
    junk = client.post("/peer/v1/classification-notices/", json={"item_id": "x"})
    assert junk.status_code == 422 and junk.json()["http_status"] == "422"
    not_object = client.post("/peer/v1/classification-notices/", json=[1])
    assert not_object.status_code == 422
    with kor.store.reader() as reader:
        refused = [r for r in reader.rows() if r["kind"] == AuditKind.NOTICE_REFUSED.value]
    assert [(r["actor"], r["item_id"]) for r in refused] == [("JPN", "x")]
    # Junk in a loop: refusals on record one by one up to the bound (1 here, 10 a minute as
    # shipped), the rest counted, and the count on record as the node stops (flood17:
    # before, one event each, without end).
    inbox = client.app.state.peer_inbox  # type: ignore[attr-defined]
    inbox.refusals = RefusalWindow(per_window=1)
    for n in range(3):
        client.post("/peer/v1/classification-notices/", json={"item_id": f"x{n}"})
    inbox.close()
    with kor.store.reader() as reader:
        refused = [r for r in reader.rows() if r["kind"] == AuditKind.NOTICE_REFUSED.value]
    [summary] = [r for r in refused if r["details"].get("summary")]
    assert len(refused) == 3 and summary["actor"] == "JPN"
    assert summary["details"]["refused"] == 2
    assert summary["details"]["item_ids"] == ["x1", "x2"]
    # Without a client certificate: 401.
    app = app_for_node(kor, peer_identity=lambda scope: None)
    assert TestClient(app).post("/peer/v1/classification-notices/",
                                json={}).status_code == 401
