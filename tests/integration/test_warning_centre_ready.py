"""The warning centre gets ready when the node's sensors come on, not at its first step.

Its first step used to load the tracker's compiled kernels and its first warning to lay a
corridor over the map for the first time, about a second of CPU paid between a measurement
and the output it let the centre make (the sensors bench's first warning: 1.0 s from the
POST to stored, every later output under 0.1 s). A real node's intake and centre, in this
process: the pre-launch indicators taken, the centre is made and rehearsed before any report,
and the rehearsal leaves nothing in the node nor in the centre that tracks."""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from gsomia.core.agreements import Catalogue
from gsomia.shell import doctor, exchange
from gsomia.shell.node import Node
from gsomia.shell.sensor_intake import SensorIntake
from gsomia.shell.sensor_player import playlist
from gsomia.shell.warning_centre import CentreWorker
from starting import wait_in_thread


def test_the_centre_is_ready_once_the_indicators_are_in(
        node_factory: Callable[..., Node]) -> None:
    node = node_factory("JPN")
    indicators, _ = playlist("2017-08-29", None, "JPN", 0, 0.0)
    assert indicators, "the launch has JPN indicators before lift-off"
    worker = CentreWorker(node)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    # Garbage in the oldest generation (a cycle that outlived two collections, then let
    # go), which only a full collection frees: the centre's freeze must not keep it.
    held = [_Cycle()]
    gone = weakref.ref(held[0])
    gc.collect()
    held.clear()
    thread.start()
    try:
        assert not exchange.wait_until(lambda: worker._centre is not None, 0.3)
        taken = SensorIntake(node).take([json.dumps(i).encode() for i in indicators],
                                        datetime.now(UTC))
        assert taken.counts.get("refused", 0) == 0, taken.to_json()
        # Judged by the worker's CPU, not 60 s of wall time: the rehearsal took 0.8 s of
        # CPU, 17 s of wall time at a load of 24, and in a tree whose numba cache is cold
        # (a fresh clone without `make kernels`, a new worktree) it compiles the tracker's
        # kernels first, 26 s of CPU and 139 s of wall time at a load of 20 (flaky22).
        wait_in_thread(lambda: worker._centre is not None, thread,
                       "the centre was not made when the indicators came in")
    finally:
        stop.set()
        thread.join(timeout=30)
    # The rehearsal went through a step, an impact prediction and a warning...
    assert {"impact-prediction", "warning"} <= worker.rehearsed
    # ...and none of it is the node's: only the indicators are held, nothing published, the
    # centre that tracks has seen no measurement.
    with node.store.repository() as repo:
        assert repo.count_items() == len(indicators)
    assert worker.published == 0 and worker.centre.counts == {}
    assert worker.centre.epoch is None
    # The tracker and what it loaded are out of the collector's full passes (each walked
    # them all, every thread of the node standing still 50-60 ms): frozen, in no generation.
    assert gc.is_tracked(worker.centre)
    assert not any(o is worker.centre for o in gc.get_objects())
    assert gone() is None, "garbage was frozen with the centre"


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_centre_is_fed_when_the_node_held_each_report(
        node_factory: Callable[..., Node], caplog: pytest.LogCaptureFixture,
        shipped: Catalogue) -> None:
    """The centre leaves out a measurement stamped more than ``AHEAD_S`` after the node
    held its report (redteam16): the worker must pass it the store's ``added_at``, or the
    guard is off while every unit test of ``NodeCentre.report`` still passes. Here the
    node's real radar lines, stored (published as the intake does) an hour before their
    stamps: every one is counted ahead, none reaches the tracker (review16)."""
    from datetime import timedelta

    from gsomia.core.sensor_feed import read_lines, reference_report
    from gsomia.service.handlers import LabelRequest
    from gsomia.shell.sensor_intake import WINDOW_S, publish_items

    node = node_factory("JPN")
    intake = SensorIntake(node)
    _, lines = playlist("2017-08-29", None, "JPN", 0, 180.0)
    taken = read_lines([json.dumps(line).encode() for _, line in lines], intake.registered,
                       {}, WINDOW_S)
    assert taken.accepted, taken.to_json()
    entries = []
    first = min(m.epoch + timedelta(seconds=m.t) for ms in taken.accepted.values() for m in ms)
    for sid, ms in taken.accepted.items():
        rl = intake.labels[sid]
        entries.append((intake._note(first, "radar", reference_report(intake.registered[sid],
                                                                      ms)),
                        LabelRequest(rl.level, tuple(sorted(rl.rel_to)), rl.purpose,
                                     rl.caveats, policy=intake.policy,
                                     category="sensor-report")))
    publish_items(node, entries, first - timedelta(hours=1), "operator")
    worker = CentreWorker(node)
    # The real centre, without the rehearsal a node runs at its start (seconds of CPU).
    from gsomia.core.node_centre import NodeCentre
    from gsomia.shell import feeds

    worker._centre = NodeCentre("JPN", feeds.load_geography())
    with caplog.at_level(logging.WARNING, logger="gsomia.shell.warning_centre"):
        while worker.pass_once():
            pass
    measured = sum(len(ms) for ms in taken.accepted.values())
    assert worker.centre.counts.get("ahead") == measured, worker.centre.counts
    # Said, once a minute at most, however many reports (hygiene18: before, left out
    # silently), and by the doctor from what is stored.
    assert worker.centre.ahead == {"JPN": measured}
    said = [r.getMessage() for r in caplog.records if "stamped more than" in r.getMessage()]
    assert len(said) == 1 and "of JPN" in said[0], said
    [check] = doctor.clock_checks(node.folder, lambda: shipped)
    found = re.search(r"this node's sensors' clock runs (\d+) s ahead", check.detail)
    assert not check.ok and found, check
    assert 3600 <= int(found[1]) <= 3600 + 180, check  # published an hour before, 180 s
    assert abs(int(found[1]) - worker.centre.ahead_s["JPN"]) <= 1


def test_settle_waits_for_the_centre_not_for_a_quiet_store(
        node_factory: Callable[..., Node], capsys: pytest.CaptureFixture[str]) -> None:
    """``settle`` (``scenario run --federation``, ``replay``) read the nodes once their store
    had been quiet for 3 s: under a load of 15 the centres, still loading the tracker, had
    stored nothing by then, and a flight at 50x was read, its nodes stopped, with no node's
    track nor warning (flaky20). A store quiet while its centre has not taken what it holds
    is not settled; once the centre has, it is."""
    from gsomia.shell.sensor_player import settle
    from gsomia.shell.warning_centre import centre_caught_up

    node = node_factory("JPN")
    indicators, _ = playlist("2017-08-29", None, "JPN", 0, 0.0)
    SensorIntake(node).take([json.dumps(i).encode() for i in indicators], datetime.now(UTC))
    assert not centre_caught_up(node)   # no centre has run: nothing says it took anything
    assert settle({"JPN": node}, quiet_s=0.2, timeout=1.0) is False
    # Said, with what kept it: a run that did not settle reported partial figures silently.
    said = capsys.readouterr().err
    assert "not settled after 1 s" in said and "warning centre of JPN" in said, said
    assert "partial" in said and "pending" not in said, said
    worker = CentreWorker(node)
    assert worker.pass_once() and not worker.pass_once()
    assert centre_caught_up(node)
    assert settle({"JPN": node}, busy=lambda: True, quiet_s=0.2, timeout=0.5) is False
    said = capsys.readouterr().err
    assert "a delivery or a consent was pending" in said and "centre of" not in said, said
    assert settle({"JPN": node}, quiet_s=0.2, timeout=5.0) is True
    assert capsys.readouterr().err == ""
    # A note stored after the centre's pass puts it behind again, until its next pass.
    SensorIntake(node).take([json.dumps(indicators[0]).encode()], datetime.now(UTC))
    assert not centre_caught_up(node)
    assert worker.pass_once() and centre_caught_up(node)


def test_the_progress_file_is_written_at_most_so_often_and_its_failure_said_once(
        node_factory: Callable[..., Node], caplog: pytest.LogCaptureFixture) -> None:
    """review20: the mark was written at every pass that moved it (0.15-0.5 ms of CPU
    each), and a folder that could not take it logged a warning at every pass."""
    from gsomia.shell import warning_centre

    node = node_factory("JPN")
    worker = CentreWorker(node)
    progress = node.folder / warning_centre.PROGRESS_FILE
    blocker = node.folder / f".{warning_centre.PROGRESS_FILE}.tmp"
    blocker.mkdir()  # the temporary file cannot be written: a directory is in its place
    with caplog.at_level(logging.WARNING, logger=warning_centre.log.name):
        for mark in (5, 6, 7):  # three passes, each after the interval
            worker.mark, worker._told_at = mark, float("-inf")
            worker._tell_progress()
    said = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(said) == 1 and not progress.exists()
    blocker.rmdir()
    worker._told_at = float("-inf")
    worker._tell_progress()
    assert progress.read_text(encoding="ascii") == "7"
    # Moved again at once: held back, then written by a pass after the interval.
    worker.mark = 8
    worker._tell_progress()
    assert progress.read_text(encoding="ascii") == "7"
    worker._told_at -= warning_centre.PROGRESS_EVERY_S
    worker._tell_progress()
    assert progress.read_text(encoding="ascii") == "8"
    # A failure after a success is said again, once.
    blocker.mkdir()
    worker.mark, worker._told_at = 9, float("-inf")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=warning_centre.log.name):
        worker._tell_progress()
        worker._told_at = float("-inf")
        worker._tell_progress()
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


def test_the_centre_is_ready_once_a_partners_first_note_is_in(
        node_factory: Callable[..., Node]) -> None:
    """A node without sensors of its own made and rehearsed its centre at the first report a
    partner released to it: seconds of CPU (far more on a cold numba cache) while that
    report's receive and the next ones waited for the GIL in the node's process (the sensors
    bench's slowest reports at JPN, stop 26). It gets ready at the partner's first note, its
    indicators, which come before lift-off; and the reports held after that are tracked as
    by a centre made beforehand, with nothing of the rehearsal in them."""

    from federating import delivered_to, federate, one_pass
    from gsomia.core.node_centre import NodeCentre
    from gsomia.core.sensor_feed import read_lines, reference_report
    from gsomia.service.handlers import LabelRequest
    from gsomia.shell import feeds
    from gsomia.shell.sensor_intake import WINDOW_S, publish_items

    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    deliver = delivered_to(jpn, "KOR")

    indicators, lines = playlist("2017-08-29", None, "KOR", 0, 185.0)
    assert indicators and lines, "KOR has indicators and radar lines in the first 185 s"
    SensorIntake(kor).take([json.dumps(i).encode() for i in indicators], datetime.now(UTC))
    one_pass(kor, deliver)
    worker = CentreWorker(jpn)
    assert worker.pass_once() and worker._centre is not None, "not ready at the indicators"
    assert {"impact-prediction", "warning"} <= worker.rehearsed
    assert worker.centre.counts == {} and worker.published == 0

    # KOR's radar reports, one per radar and second, as its intake makes them, delivered.
    intake = SensorIntake(kor)
    by_second: dict[int, list[bytes]] = {}
    for at, line in lines:
        by_second.setdefault(int(at), []).append(json.dumps(line).encode())
    latest: dict[str, float] = {}
    entries, measured, first = [], 0, None
    for second in sorted(by_second):
        taken = read_lines(by_second[second], intake.registered, latest, WINDOW_S)
        for sid, ms in taken.accepted.items():
            rl = intake.labels[sid]
            made = ms[-1].epoch + timedelta(seconds=ms[-1].t)
            first = first or made
            measured += len(ms)
            entries.append((intake._note(made, "radar", reference_report(
                intake.registered[sid], ms)), LabelRequest(
                rl.level, tuple(sorted(rl.rel_to)), rl.purpose, rl.caveats,
                policy=intake.policy, category="sensor-report")))
    assert entries and first is not None
    publish_items(kor, entries, first, "operator")
    one_pass(kor, deliver)
    while worker.pass_once():
        pass
    counts = worker.centre.counts
    assert counts.get("measurements") == measured and not counts.get("late"), counts
    assert worker.published > 0 and worker.unusable == 0
    # A centre made before anything came, fed the same holdings: the same outputs (each
    # found already published), the same counts.
    again = CentreWorker(jpn, NodeCentre("JPN", feeds.load_geography()))
    while again.pass_once():
        pass
    assert (again.published, again.skipped) == (0, worker.published)
    assert again.centre.counts == worker.centre.counts
