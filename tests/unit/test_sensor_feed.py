"""The sensor intake's judgement of lines and the shared radar report (core, pure), and the
node's warning centre fed a real launch's reports."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.sensor_feed import (
    AHEAD_S,
    Registered,
    detections_of,
    read_lines,
    reference_report,
    reference_site,
    seconds_ahead,
)
from gsomia.core.tracking.types import SensorSite
from gsomia.core.types import instant, iso

SITE = Registered("kor-greenpine-jincheon", "KOR-radar-1", "rae", 36.9, 127.4, 120.0)
REGISTERED = {SITE.id: SITE}
NOISE = {"range_m": 50.0, "azimuth_deg": 0.05, "elevation_deg": 0.05}
GOOD: dict[str, Any] = {"sensor": SITE.id, "epoch": "2017-08-28T20:58:00Z", "t": 60.0,
                        "range_m": 350000.0, "azimuth_deg": 10.0, "elevation_deg": 20.0,
                        "noise": NOISE}

_json = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4),
                  st.lists(st.integers(), max_size=2))
_fields = st.fixed_dictionaries({}, optional={
    k: st.one_of(st.just(v), _json) for k, v in GOOD.items()})
# A good line with one of its numbers any JSON number, integers beyond any float among them:
# JSON's have no bound, and one of 309 digits (a line of 4096 bytes holds it) made float()
# raise OverflowError out of the intake.
_number = st.one_of(st.integers(), st.floats(),
                    st.integers(309, 1000).map(lambda digits: 10 ** digits),
                    st.integers(309, 1000).map(lambda digits: -(10 ** digits)))
_one_number = st.one_of(
    st.tuples(st.sampled_from(["t", "range_m", "azimuth_deg", "elevation_deg"]), _number)
    .map(lambda kv: {**GOOD, kv[0]: kv[1]}),
    st.tuples(st.sampled_from(sorted(NOISE)), _number)
    .map(lambda kv: {**GOOD, "noise": {**NOISE, kv[0]: kv[1]}}))
_line = st.one_of(st.binary(max_size=64), _fields.map(lambda d: json.dumps(d).encode()),
                  _one_number.map(lambda d: json.dumps(d).encode()),
                  st.just(json.dumps(GOOD).encode()))


@settings(deadline=None)
@given(st.lists(_line, max_size=10))
def test_every_line_is_taken_or_refused_with_its_number_and_nothing_raises(
        lines: list[bytes]) -> None:
    latest: dict[str, float] = {}
    out = read_lines(lines, REGISTERED, latest, 10.0)
    taken = sum(len(v) for v in out.accepted.values()) + len(out.indicators)
    numbers = [n for n, _ in out.refused]
    assert len(numbers) == len(set(numbers))
    assert taken + len(out.refused) == sum(1 for x in lines if x.strip())
    assert all(1 <= n <= len(lines) and reason for n, reason in out.refused)
    assert sum(out.counts.values()) == len(out.refused)
    for line in out.accepted.get(SITE.id, []):
        assert math.isfinite(line.at) and line.range_m > 0


@given(st.lists(st.floats(-100.0, 100.0), min_size=1, max_size=30),
       st.floats(0.0, 30.0))
def test_nothing_is_taken_further_behind_its_sensor_than_the_window(
        times: list[float], window: float) -> None:
    latest: dict[str, float] = {}
    lines = [json.dumps({**GOOD, "t": t}).encode() for t in times]
    out = read_lines(lines, REGISTERED, latest, window)
    newest = -math.inf
    taken = iter(out.accepted.get(SITE.id, []))
    refused = {n for n, _ in out.refused}
    for n, t in enumerate(times, start=1):
        if n in refused:
            assert t < newest - window + 1e-9
        else:
            assert next(taken).t == t
            newest = max(newest, t)


def test_unknown_sensors_and_bad_values_are_named() -> None:
    lines = [json.dumps({**GOOD, "sensor": "jpn-fps5-sado"}),
             json.dumps({**GOOD, "elevation_deg": 91}), json.dumps({**GOOD, "extra": 1}),
             json.dumps({**GOOD, "noise": None}), "[]", json.dumps(GOOD)]
    out = read_lines([x.encode() for x in lines], REGISTERED, {}, 10.0)
    reasons = dict(out.refused)
    assert "unknown sensor" in reasons[1]
    assert "elevation_deg" in reasons[2] and "extra" in reasons[3] and "noise" in reasons[4]
    assert reasons[5] == "not a JSON object"
    assert out.counts == {"unknown-sensor": 1, "malformed": 4}
    assert len(out.accepted[SITE.id]) == 1


@settings(max_examples=50, deadline=None)
@given(st.floats(50e3, 2500e3), st.floats(0.0, 359.0), st.floats(1.0, 60.0))
def test_a_shared_report_measures_the_same_point_without_the_site(
        r: float, az: float, el: float) -> None:
    line = json.dumps({**GOOD, "range_m": r, "azimuth_deg": az, "elevation_deg": el}).encode()
    taken = read_lines([line], REGISTERED, {}, 10.0).accepted[SITE.id]
    report = reference_report(SITE, taken)
    text = json.dumps(report)
    # No number of the report is the site's (as text, "36.9" may be digits of a range).
    assert SITE.id not in text and not {SITE.lat_deg, SITE.lon_deg} & set(_numbers(report))
    _, name, _, z, R = detections_of(report)
    assert name == SITE.pseudonym
    site = SensorSite.at(SITE.id, SITE.lat_deg, SITE.lon_deg, SITE.height_m)
    ref = reference_site()

    def point(s: SensorSite, v: Any) -> Any:
        rr, a, e = v
        enu = np.array([rr * math.cos(e) * math.sin(a), rr * math.cos(e) * math.cos(a),
                        rr * math.sin(e)])
        return s.ecef + enu @ s.basis

    truth = point(site, (r, math.radians(az), math.radians(el)))
    assert np.linalg.norm(point(ref, z[0]) - truth) < 0.05      # metres
    assert np.all(np.linalg.eigvalsh(R[0]) > 0)


def _numbers(doc: Any) -> list[float]:
    if isinstance(doc, dict):
        return [n for v in doc.values() for n in _numbers(v)]
    if isinstance(doc, list):
        return [n for v in doc for n in _numbers(v)]
    return [float(doc)] if isinstance(doc, int | float) else []


def test_a_report_whose_numbers_make_no_measurement_is_refused() -> None:
    import pytest

    from gsomia.core.errors import MalformedInput

    taken = read_lines([json.dumps(GOOD).encode()], REGISTERED, {}, 10.0).accepted[SITE.id]
    report = reference_report(SITE, taken)
    for bad in ({**report, "cov": [[1.0, 2.0, 0.0, 1.0, 0.0, 1.0]]},     # not positive
                {**report, "reference": [0.0, 0.0, 0.0]},
                {**report, "t": [1.0, 2.0]}):
        with pytest.raises(MalformedInput):
            detections_of(bad)


# ---- the warning centre ------------------------------------------------------------------


def _reports() -> tuple[tuple[str, dict[str, Any]], ...]:
    """KOR's and JPN's radar reports of the 2017-08-29 launch, one per sensor and second of
    report time, in the order a node would store them."""
    return tuple((p, r) for _, p, r in _timed_reports())


@cache
def _timed_reports() -> tuple[tuple[float, str, dict[str, Any]], ...]:
    """:func:`_reports` with each report's second of report time."""
    from gsomia.shell import feeds
    from gsomia.shell.sensor_player import playlist

    out: list[tuple[float, str, dict[str, Any]]] = []
    for party in ("KOR", "JPN"):
        own = sorted((s for s in feeds.load_sensors() if s.owner == party), key=lambda s: s.id)
        reg = {s.id: Registered(s.id, f"{party}-radar-{i}", "rae", s.lat_deg, s.lon_deg,
                                s.height_m) for i, s in enumerate(own)}
        _, lines = playlist("2017-08-29", None, party, 0, until_s=320.0)
        latest: dict[str, float] = {}
        for second in sorted({int(at) for at, _ in lines}):
            batch = [json.dumps(d).encode() for at, d in lines if int(at) == second]
            for sid, taken in read_lines(batch, reg, latest, 10.0).accepted.items():
                out.append((float(second), party, reference_report(reg[sid], taken)))
    out.sort(key=lambda x: x[0])
    return tuple(out)


def _first_warning(parties: set[str]) -> tuple[float | None, list[Any]]:
    from gsomia.core.node_centre import NodeCentre
    from gsomia.shell import feeds

    centre = NodeCentre("JPN", feeds.load_geography())
    outputs = [o for origin, rep in _reports() if origin in parties
               for o in centre.report(origin, rep)]
    issued = [o.at_s for o in outputs if o.category == "warning"
              and o.data["action"] == "issued"]
    return (min(issued) if issued else None), outputs


def test_the_centre_warns_earlier_with_kor_s_reports_and_answers_the_same_twice() -> None:
    alone, _ = _first_warning({"JPN"})
    shared, outputs = _first_warning({"JPN", "KOR"})
    assert shared is not None and (alone is None or shared < alone - 10.0)
    # The scenario model's JPN under direct warns at 150.1 s: within the centre's lag
    # (8 s: the slowest report of a step is in) and a tracker step (2 s).
    assert abs(shared - 150.1) <= 10.0
    _, again = _first_warning({"JPN", "KOR"})
    assert [(o.key, o.at_s, o.data) for o in again] == [(o.key, o.at_s, o.data)
                                                       for o in outputs]


def _every_pair(lat_deg: Any, lon_deg: Any, centre_lat: Any, centre_lon: Any, cos_lat: Any,
                axes: Any, v: Any, reach: Any) -> Any:
    """``kernels.sections_hit`` before it skipped pairs by latitude and longitude: every
    point against every section, by the same arithmetic."""
    from gsomia.core.tracking import earth

    deg, r = np.pi / 180.0, earth.R_MEAN
    north = (lat_deg[:, None] - centre_lat[None, :]) * deg * r
    dlon = (lon_deg[:, None] - centre_lon[None, :] + 180.0) % 360.0 - 180.0
    east = dlon * deg * r * cos_lat[None, :]
    q0 = (east * v[None, :, 0, 0] + north * v[None, :, 1, 0]) / axes[None, :, 0]
    q1 = (east * v[None, :, 0, 1] + north * v[None, :, 1, 1]) / axes[None, :, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return q0 * q0 + q1 * q1 <= 1.0


def test_the_centre_answers_the_same_as_with_every_corridor_pair_tested(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The corridor test skips the pairs of a section and a map point that cannot meet: the
    centre's answers, fed KOR's and JPN's reports past the first warning (a boost corridor
    over Hokkaido), are those it gave testing every pair."""
    from gsomia.core.node_centre import NodeCentre
    from gsomia.core.tracking import kernels
    from gsomia.shell import feeds

    def answers() -> list[Any]:
        centre = NodeCentre("JPN", feeds.load_geography())
        return [(o.category, o.key, o.at_s, o.data) for at, origin, rep in _timed_reports()
                if at <= UNTIL_S for o in centre.report(origin, rep)]

    skipping = answers()
    tested: list[int] = []

    def every_pair(*args: Any) -> Any:
        tested.append(args[0].size * args[2].size)
        return _every_pair(*args)

    monkeypatch.setattr(kernels, "sections_hit", every_pair)
    assert answers() == skipping
    assert "warning" in {c for c, *_ in skipping} and sum(tested) > 1_000_000


def _what_the_tracker_found(outputs: list[Any]) -> list[Any]:
    """The outputs without the instants they were stamped with (the newest measurement held
    when a step ran, which depends on when each report came)."""
    stamps = ("at_s", "time_to_impact_s")
    return [(o.key, {k: v for k, v in o.data.items() if k not in stamps}) for o in outputs]


UNTIL_S = 172.0   # past JPN's first warning with KOR's reports (153.8 s): a short flight


@cache
def _in_measurement_order() -> list[Any]:
    from gsomia.core.node_centre import NodeCentre
    from gsomia.shell import feeds

    centre = NodeCentre("JPN", feeds.load_geography())
    outputs = [o for at, origin, rep in _timed_reports() if at <= UNTIL_S
               for o in centre.report(origin, rep)]
    assert centre.counts.get("late", 0) == 0
    return _what_the_tracker_found(outputs)


@settings(max_examples=4, deadline=None)
@given(st.lists(st.floats(0.0, 12.0), min_size=8, max_size=8), st.randoms(use_true_random=False))
def test_a_partner_report_within_the_lag_is_placed_by_its_time_and_a_later_one_counted(
        delays: list[float], rng: Any) -> None:
    """KOR's reports reach JPN's node late by up to 12 s of flight (some beyond the centre's
    8 s lag), in another order than they were made: what comes within the lag counts as if
    it had come on time; every measurement is taken or counted late for its originator."""
    from gsomia.core.node_centre import NodeCentre
    from gsomia.shell import feeds

    reports = [(at, origin, rep) for at, origin, rep in _timed_reports() if at <= UNTIL_S]
    arrivals = sorted(
        ((at + (delays[rng.randrange(len(delays))] if origin == "KOR" else 0.0), n)
         for n, (at, origin, _) in enumerate(reports)))
    centre = NodeCentre("JPN", feeds.load_geography())
    outputs = []
    for _, n in arrivals:
        _, origin, rep = reports[n]
        outputs += centre.report(origin, rep)
    total = sum(len(rep["t"]) for _, _, rep in reports)
    assert centre.counts.get("measurements", 0) + centre.counts.get("late", 0) == total
    assert set(centre.late) <= {"KOR"}      # JPN's own come on time
    assert sum(centre.late.values()) == centre.counts.get("late", 0)
    if not centre.late:
        assert _what_the_tracker_found(outputs) == _in_measurement_order()



# ---- clocks far off: a line or a report stamped ahead, a report long after the last -------
@settings(max_examples=15, deadline=None)
@given(st.floats(AHEAD_S + 0.01, 9e5), st.booleans(),
       st.lists(st.floats(-5.0, 5.0), min_size=1, max_size=5))
def test_a_line_stamped_in_the_future_is_refused_and_holds_back_no_real_line(
        ahead: float, by_epoch: bool, times: list[float]) -> None:
    """Taken, a line stamped ahead (by its ``t`` or its epoch) held its sensor's window
    there: every real line after it was refused as out of order until the node restarted."""
    epoch = instant(str(GOOD["epoch"]))
    now_s = epoch.timestamp() + 60.0          # GOOD is measured now
    stamped = ({"epoch": iso(epoch + timedelta(seconds=ahead))} if by_epoch
               else {"t": 60.0 + ahead})
    latest: dict[str, float] = {}
    out = read_lines([json.dumps({**GOOD, **stamped}).encode()], REGISTERED, latest,
                     10.0, now_s)
    assert out.counts == {"future": 1} and [n for n, _ in out.refused] == [1]
    assert latest == {}
    real = [json.dumps({**GOOD, "t": 60.0 + t}).encode() for t in times]
    out = read_lines(real, REGISTERED, latest, 10.0, now_s + 5.0)
    assert len(out.accepted[SITE.id]) == len(times) and not out.refused


@settings(max_examples=2, deadline=None)
@given(st.floats(AHEAD_S + 1.0, 1e9), st.sampled_from(["KOR", "USA"]),
       st.floats(20.0, 150.0))
def test_a_partner_s_clock_far_ahead_does_not_blind_the_centre(
        ahead: float, origin: str, at: float) -> None:
    """A partner's schema-valid report stamped ``ahead`` of when the node held it carried
    the centre's clock there: every real measurement after it was late, left out, and the
    centre stepped through the empty time (hours of CPU for 1e9 s)."""
    from gsomia.core.node_centre import NodeCentre
    from gsomia.shell import feeds

    reports = [(t, o, rep) for t, o, rep in _timed_reports() if t <= UNTIL_S]
    epoch = instant(reports[0][2]["epoch"])
    forged = {**reports[0][2], "t": [at + ahead], "z": reports[0][2]["z"][:1],
              "cov": reports[0][2]["cov"][:1]}
    centre = NodeCentre("JPN", feeds.load_geography())
    outputs = []
    fed = False
    for t, o, rep in reports:
        if not fed and t >= at:
            outputs += centre.report(origin, forged, epoch + timedelta(seconds=at))
            fed = True
        outputs += centre.report(o, rep, epoch + timedelta(seconds=t))
    assert centre.counts.get("ahead") == 1 and centre.counts.get("late", 0) == 0
    # Counted for the partner, by how far: the shell says it (hygiene18: before, silently).
    assert centre.ahead == {origin: 1}
    assert centre.ahead_s[origin] == pytest.approx(ahead, abs=1e-6 * ahead)
    assert seconds_ahead(forged, epoch + timedelta(seconds=at)) == centre.ahead_s[origin]
    assert _what_the_tracker_found(outputs) == _in_measurement_order()


@pytest.mark.timeout(300)
def test_a_report_years_after_the_last_is_taken_at_once() -> None:
    """The centre stepped every 2 s of the gap: a report of today after one of 2017 (an
    exercise node's replay, then a real one; or a partner's old report first) held the
    centre for an hour of CPU, no warning made meanwhile."""
    from gsomia.core.node_centre import NodeCentre
    from gsomia.shell import feeds

    reports = [(t, o, rep) for t, o, rep in _timed_reports() if t <= 60.0]
    centre = NodeCentre("JPN", feeds.load_geography())
    for _, o, rep in reports:
        centre.report(o, rep)
    before = centre.counts.get("measurements", 0)
    today = [{**rep, "epoch": "2026-03-01T00:00:00.000Z"} for _, _, rep in reports]
    for rep in today:
        centre.report("JPN", rep)
    assert centre.counts.get("measurements", 0) == 2 * before
    assert centre.counts.get("late", 0) == 0


def test_a_player_counts_its_flight_from_the_lift_off_it_is_given() -> None:
    """``scenario run --federation`` starts every party's player from one lift-off, taken
    once every node is open: a player that started its own clock after opening its node
    played, and its partners counted its reports, seconds of wall time x speed late
    (flaky20). Given a lift-off 100 s of flight ago at 100x, the lines due by then go at
    once, in the first batch; none goes before its time after that lift-off."""
    import time

    from gsomia.shell.sensor_player import play

    sent: list[tuple[float, list[dict[str, Any]]]] = []

    class Sink:
        def send(self, docs: list[dict[str, Any]]) -> None:
            sent.append((time.monotonic(), docs))

    lines = [(50.0, {"n": 1}), (99.0, {"n": 2}), (130.0, {"n": 3})]
    liftoff = time.monotonic() - 1.0
    play(Sink(), [], lines, 100.0, liftoff)
    assert [d["n"] for d in sent[0][1]][:2] == [1, 2]
    assert sorted(d["n"] for _, docs in sent for d in docs) == [1, 2, 3]
    for at, docs in sent:
        assert all((at - liftoff) * 100.0 >= lines[d["n"] - 1][0] for d in docs)
