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
from datetime import timedelta
from typing import Any

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


def _trio(kor: Node, jpn: Node, usa: Node) -> None:
    """KOR delivers to JPN; JPN delivers to KOR and USA (``direct``)."""
    peers = {n.party: exchange.Peer(n.party, f"https://{n.party.lower()}.test",
                                    n.keys.public_signing_key(),
                                    n.keys.envelope_key().public_key())
             for n in (kor, jpn, usa)}
    exchange.Partners("KOR", "direct", peers, ("JPN",)).write(kor.folder)
    exchange.Partners("JPN", "direct", peers, ("KOR", "USA")).write(jpn.folder)


def _kor_reports(kor: Node, level: str, rel_to: tuple[str, ...]) -> int:
    """KOR's radar reports of the first 185 s of 2017-08-29, as its intake makes them,
    published under ``level`` REL TO ``rel_to``; the number of measurements."""
    intake = SensorIntake(kor)
    _, lines = playlist("2017-08-29", None, "KOR", 0, 185.0)
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
