"""What the warning centre fuses never leaves under a wider label than its sources'.

The centre publishes its outputs (impact predictions, flight paths, warnings) under one label,
the party's SECRET equivalent REL TO every party, for dprk-missile. Fed every note the node
holds, it took a partner's radar reports whatever their label: KOR's reports marked SECRET
REL TO KOR, JPN (not USA) made JPN's centre publish a track, impact predictions and warnings
from them REL TO USA, and JPN's outbox queued them to USA, which KOR never released them to
(review28). A report, or a partner's impact prediction, is fused only when the centre's
label is no wider than its own: level, REL TO, purpose and caveats."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from federating import delivered_to, one_pass
from gsomia.core.labels import SecurityLabel
from gsomia.core.node_centre import NodeCentre
from gsomia.core.sensor_feed import read_lines, reference_report
from gsomia.service.handlers import LabelRequest
from gsomia.shell import exchange, feeds
from gsomia.shell.node import Node
from gsomia.shell.sensor_intake import WINDOW_S, SensorIntake, publish_items
from gsomia.shell.sensor_player import playlist
from gsomia.shell.warning_centre import CentreWorker


def _trio(kor: Node, jpn: Node, usa: Node, *, usa_delivers: bool = False) -> None:
    """KOR delivers to JPN; JPN delivers to KOR and USA (``direct``); USA to JPN if
    ``usa_delivers``."""
    peers = {n.party: exchange.Peer(n.party, f"https://{n.party.lower()}.test",
                                    n.keys.public_signing_key(),
                                    n.keys.envelope_key().public_key())
             for n in (kor, jpn, usa)}
    if usa_delivers:
        exchange.Partners("USA", "direct", peers, ("JPN",)).write(usa.folder)
    exchange.Partners("KOR", "direct", peers, ("JPN",)).write(kor.folder)
    exchange.Partners("JPN", "direct", peers, ("KOR", "USA")).write(jpn.folder)


def _kor_reports(kor: Node, level: str, rel_to: tuple[str, ...]) -> int:
    """KOR's radar reports of the first 185 s of 2017-08-29, as its intake makes them,
    published under ``level`` REL TO ``rel_to``; the number of measurements."""
    return _radar_reports(kor, level, rel_to)


def _radar_reports(kor: Node, level: str, rel_to: tuple[str, ...],
                   until_s: float = 185.0, from_s: float = 0.0) -> int:
    """The radar reports of ``kor``'s party (any node) from ``from_s`` to ``until_s`` of
    2017-08-29."""
    intake = SensorIntake(kor)
    _, lines = playlist("2017-08-29", None, kor.party, 0, until_s)
    lines = [(at, line) for at, line in lines if at >= from_s]
    by_second: dict[int, list[bytes]] = {}
    for at, line in lines:
        by_second.setdefault(int(at), []).append(json.dumps(line).encode())
    entries: list[tuple[dict[str, Any], Any]] = []
    latest: dict[str, float] = {}
    measured, first = 0, None
    for second in sorted(by_second):
        taken = read_lines(by_second[second], intake.registered, latest, WINDOW_S)
        for sid, ms in taken.accepted.items():
            made = ms[-1].epoch + timedelta(seconds=ms[-1].t)
            first = first or made
            measured += len(ms)
            entries.append((intake._note(made, "radar", reference_report(
                intake.registered[sid], ms)), LabelRequest(
                level, rel_to, "dprk-missile", policy=intake.policy,
                category="sensor-report")))
    assert entries and first is not None
    publish_items(kor, entries, first, "operator")
    return measured


def test_a_partners_reports_not_released_to_usa_make_nothing_for_usa(
        node_factory: Callable[..., Node], caplog: pytest.LogCaptureFixture) -> None:
    """Before the fix: 7 outputs from KOR's reports REL TO JPN, KOR published REL TO USA,
    7 deliveries to USA queued. The same reports released to USA too are fused as before."""
    kor, jpn, usa = node_factory("KOR"), node_factory("JPN"), node_factory("USA")
    _trio(kor, jpn, usa)
    deliver = delivered_to(jpn, "KOR")
    worker = CentreWorker(jpn, NodeCentre("JPN", feeds.load_geography()))

    def run(level: str, rel_to: tuple[str, ...]) -> tuple[list[SecurityLabel], int]:
        measured = _kor_reports(kor, level, rel_to)
        one_pass(kor, deliver)
        while worker.pass_once():
            pass
        with jpn.store.repository() as repo:
            held = [repo.get_item(i) for i in _own_notes(jpn)]
        labels = [SecurityLabel.from_stored(json.loads(item.label)) for item in held if item]
        return labels, measured

    with caplog.at_level(logging.WARNING, logger="gsomia.shell.warning_centre"):
        narrow, _ = run("군사II급비밀", ("JPN", "KOR"))
    assert narrow == [] and worker.centre.counts == {}, worker.centre.counts
    with jpn.store.repository() as repo:
        reports = repo.count_items()
        assert repo.deliveries_pending("USA") == 0
    assert worker.withheld == {"KOR": reports}
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(said) == 1 and "REL TO USA" in said[0], said   # said once, then counted

    # The same flight released to USA too (new items; the centre has taken nothing yet):
    # fused, published to every party, queued to USA.
    wide, measured = run("군사II급비밀", ("JPN", "KOR", "USA"))
    assert worker.centre.counts.get("measurements") == measured
    assert wide and all(lb.rel_to == {"JPN", "KOR", "USA"} for lb in wide)
    with jpn.store.repository() as repo:
        assert repo.deliveries_pending("USA") == len(wide)
    assert worker.withheld == {"KOR": reports}


def _own_notes(node: Node) -> list[str]:
    with node.store.repository() as repo:
        return [i for i, _ in repo.added_from(node.party)]


def _routed(**inboxes: Callable[[httpx.Request], httpx.Response]
            ) -> Callable[[httpx.Request], httpx.Response]:
    """One sender's posts to each partner answered by that partner's inbox (by host)."""
    def route(request: httpx.Request) -> httpx.Response:
        inbox = inboxes.get(request.url.host.split(".")[0].upper())
        return inbox(request) if inbox is not None else httpx.Response(503)
    return route


def _current(node: Node, item_ids: list[str]) -> dict[str, SecurityLabel]:
    """Each item's label as the node holds it now (its newest custody record's)."""
    with node.store.repository() as repo:
        found = repo.current_labels(item_ids)
    return {i: labels[-1] for i, labels in found.items()}


def test_a_source_raised_after_it_was_fused_raises_what_was_made_of_it(
        node_factory: Callable[..., Node]) -> None:
    """USA's radar reports, SECRET REL TO USA, JPN, KOR, fused by JPN's centre into outputs
    marked 極秘 (SECRET); USA then raises one report to TOP SECRET. Before the fix JPN's outputs
    stayed 極秘, each below a source it was made from, and the seal still sent them to KOR
    (under an agreement that covers no TOP SECRET) at SECRET; USA, which held them, was never
    told. Now they are raised to 機密 with JPN's own notices to their holders, and what was
    queued to KOR is refused at seal."""
    from gsomia.core.outbox import CLASSIFICATION
    from gsomia.core.policy import decide_derived
    from gsomia.service.refusals import RefusalWindow
    from gsomia.shell import notices

    kor, jpn, usa = node_factory("KOR"), node_factory("JPN"), node_factory("USA")
    _trio(kor, jpn, usa, usa_delivers=True)
    worker = CentreWorker(jpn, NodeCentre("JPN", feeds.load_geography()))

    _radar_reports(usa, "SECRET", ("USA", "JPN", "KOR"))
    one_pass(usa, delivered_to(jpn, "USA"))
    while worker.pass_once():
        pass
    outputs = _own_notes(jpn)
    assert outputs, worker.centre.counts
    # Delivered to USA; KOR's link has not run, so its deliveries wait in the outbox.
    one_pass(jpn, _routed(USA=delivered_to(usa, "JPN")), link="USA")
    with jpn.store.repository() as repo:
        assert repo.deliveries_pending("KOR") == len(outputs)
        assert repo.deliveries_pending("USA") == 0
    with usa.store.repository() as repo:
        sources = [i for i, _ in repo.added_from("USA")]
    raised = sources[len(sources) // 2]
    notice, _ = notices.reclassify(usa, item_id=raised, level="TOP SECRET")
    notices.accept_classification_notice(
        jpn, notice.to_json(), "USA", {"USA": usa.keys.public_signing_key()},
        datetime.now(UTC), RefusalWindow())

    held = _current(jpn, sources + outputs)
    assert held[raised].level == "機密"
    wider = [(o, held[o].level) for o in outputs
             if not decide_derived(held[raised], held[o], jpn.catalogue.schemes).permit]
    assert wider == [], wider    # before: every output, 極秘 below its 機密 source
    # USA holds every output: each is followed by JPN's own notice.
    with jpn.store.repository() as repo:
        sent = {(r["item_id"], r["recipient"]) for r in repo.notice_rows()
                if r["kind"] == CLASSIFICATION}
    assert sent == {(o, "USA") for o in outputs}
    # KOR back: nothing of what JPN made before reaches it, marked SECRET as it was bound.
    one_pass(jpn, _routed(KOR=delivered_to(kor, "JPN"), USA=delivered_to(usa, "JPN")))
    with kor.store.repository() as repo:
        assert [i for i, _ in repo.added_from("JPN")] == []
    with jpn.store.repository() as repo:
        assert repo.deliveries_pending("KOR") == 0

    # The flight goes on: the centre still holds what it fused of the raised report, so
    # what it makes now is TOP SECRET too (to USA, never to KOR); so after a restart.
    _radar_reports(usa, "SECRET", ("USA", "JPN", "KOR"), until_s=400.0, from_s=185.0)
    one_pass(usa, delivered_to(jpn, "USA"))
    while worker.pass_once():
        pass
    later = [o for o in _own_notes(jpn) if o not in outputs]
    assert later, worker.centre.counts
    restarted = CentreWorker(jpn, NodeCentre("JPN", feeds.load_geography()))
    while restarted.pass_once():
        pass
    assert restarted.skipped >= len(outputs + later)
    made = _own_notes(jpn)
    held = _current(jpn, [raised, *made])
    assert {held[o].level for o in made} == {"機密"}, {held[o].level for o in made}
    one_pass(jpn, _routed(KOR=delivered_to(kor, "JPN"), USA=delivered_to(usa, "JPN")))
    with kor.store.repository() as repo:
        assert [i for i, _ in repo.added_from("JPN")] == []
    with usa.store.repository() as repo:
        assert {i for i, _ in repo.added_from("JPN")} == set(made)
    # The dashboard's index of who may read what (dashsql29's item_audience) follows every
    # re-mark: the centre's own (JPN) and the notices applied (USA, of JPN's outputs).
    for node in (jpn, usa):
        with node.store.reader() as reader:
            assert reader._audience_problems() == [], node.party


@pytest.mark.parametrize("retyped", [10**15, "seq"], ids=["past-the-log", "text"])
def test_a_raised_source_whose_seq_was_retyped_still_raises_what_was_made_after_it(
        node_factory: Callable[..., Node], retyped: int | str) -> None:
    """The source's seq rewritten on JPN's disk (scanseq29's attack on the outbox scan)
    before USA raises it. Before (mergereview29): a seq past the log's size left every
    output stored "before" it, so none was raised and the centre's label ignored the source
    (the outputs would leave at 極秘); a seq retyped to text raised ValueError out of the
    notice's handling. A seq the log has not given is not trusted: every output of the
    centre counts as made after it, and the centre as having fed it."""
    from gsomia.service.refusals import RefusalWindow
    from gsomia.shell import notices

    jpn, usa = node_factory("JPN"), node_factory("USA")
    peers = {n.party: exchange.Peer(n.party, f"https://{n.party.lower()}.test",
                                    n.keys.public_signing_key(),
                                    n.keys.envelope_key().public_key())
             for n in (jpn, usa)}
    exchange.Partners("USA", "direct", peers, ("JPN",)).write(usa.folder)
    exchange.Partners("JPN", "direct", peers, ("USA",)).write(jpn.folder)
    worker = CentreWorker(jpn, NodeCentre("JPN", feeds.load_geography()))
    _radar_reports(usa, "SECRET", ("USA", "JPN", "KOR"))
    one_pass(usa, delivered_to(jpn, "USA"))
    while worker.pass_once():
        pass
    outputs = _own_notes(jpn)
    assert outputs, worker.centre.counts
    with usa.store.repository() as repo:
        sources = [i for i, _ in repo.added_from("USA")]
    raised = sources[len(sources) // 2]
    with jpn.store.engine.begin() as conn:
        assert conn.exec_driver_sql("UPDATE items SET seq = ? WHERE id = ?",
                                    (retyped, raised)).rowcount == 1
    notice, _ = notices.reclassify(usa, item_id=raised, level="TOP SECRET")
    notices.accept_classification_notice(
        jpn, notice.to_json(), "USA", {"USA": usa.keys.public_signing_key()},
        datetime.now(UTC), RefusalWindow())

    held = _current(jpn, [raised, *outputs])
    assert held[raised].level == "機密"
    assert {held[o].level for o in outputs} == {"機密"}   # before: {"極秘"}, or ValueError
    with jpn.store.repository() as repo:
        remarked = repo.reclassified_up_to(worker.mark, stix_type="note")
    # The source counts as fed (it was): were the outputs not re-marked yet, the centre's
    # label would still follow it.
    assert raised in {i for i, _, _ in remarked}   # before: left out
    now_label = worker.label_now(remarked)
    assert now_label is not None and now_label.level == "機密"
