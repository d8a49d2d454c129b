"""Pre-launch indicators: Admiralty grading, log-odds fusion, cueing, and the generator."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import indicators as I
from gsomia.shell import feeds

NOW = datetime(2019, 7, 24, 20, 0, tzinfo=UTC)


def humint(claim: str = "launch-preparation", grade: str = "A1", facility: str = "hodo",
           age_h: float = 0.0, n: int = 0) -> I.Indicator:
    return I.Indicator(f"h{n}", "HUMINT", "KOR", facility, NOW - timedelta(hours=age_h), claim,
                       reliability=grade[0], credibility=int(grade[1:]))


def imint(claim: str = "tel-deployed", conf: float = 0.9, facility: str = "hodo",
          age_h: float = 0.0, n: int = 0) -> I.Indicator:
    return I.Indicator(f"i{n}", "IMINT", "JPN", facility, NOW - timedelta(hours=age_h), claim,
                       confidence=conf)


def test_grading_orders_the_weights() -> None:
    w = {g: humint(grade=g).weight for g in ("A1", "B2", "C3", "D4", "E5", "F6")}
    assert w["A1"] == 1.0
    assert w["A1"] > w["B2"] > w["C3"] > w["D4"] > w["E5"]
    # "cannot be judged" counts like a middling source, not like a liar nor like a sure one
    assert w["E5"] < w["F6"] < w["B2"]
    for r in "ABCDE":
        for c in range(1, 6):
            assert humint(grade=f"{r}{c}").weight >= humint(grade=f"{r}{c + 1}").weight or c == 5


def test_one_a1_report_adds_its_full_likelihood_ratio() -> None:
    p = I.launch_likelihood([humint()], "hodo", NOW)
    assert math.log(p / (1 - p)) == pytest.approx(I.log_odds(I.PRIOR) + 2.5)
    assert I.launch_likelihood([], "hodo", NOW) == pytest.approx(I.PRIOR)


def test_reports_add_up_contradictions_pull_down_and_facilities_stay_apart() -> None:
    one = I.launch_likelihood([humint()], "hodo", NOW)
    two = I.launch_likelihood([humint(), imint()], "hodo", NOW)
    against = I.launch_likelihood([humint(), imint("no-change", n=2)], "hodo", NOW)
    assert two > one > against > I.PRIOR
    assert I.launch_likelihood([humint(), imint()], "sinpo", NOW) == pytest.approx(I.PRIOR)
    ps = I.likelihoods([humint(), imint(facility="sinpo")], NOW)
    assert set(ps) == {"hodo", "sinpo"}


def test_old_news_fades_and_the_future_does_not_count() -> None:
    fresh = humint().evidence(NOW)
    day = humint(age_h=36).evidence(NOW)
    assert day == pytest.approx(fresh / math.e)
    assert humint(age_h=200).evidence(NOW) == 0.0
    assert humint(age_h=-1).evidence(NOW) == 0.0


def test_cueing_threshold() -> None:
    strong = [humint(), imint(n=1)]
    assert I.is_cued(strong, "hodo", NOW)
    assert not I.is_cued([humint(grade="E5")], "hodo", NOW)
    assert I.cued_since(strong, "hodo", NOW) == NOW
    assert I.cued_since([humint(grade="E5")], "hodo", NOW) is None
    staged = [humint(grade="C3", age_h=10), imint(age_h=3, n=1)]
    assert not I.is_cued(staged[:1], "hodo", NOW)
    assert I.cued_since(staged, "hodo", NOW) == NOW - timedelta(hours=3)


@pytest.mark.parametrize("bad", [
    {"kind": "SIGINT"}, {"claim": "tel-deployed"}, {"reliability": "G"},
    {"credibility": 7}, {"observed_at": datetime(2019, 7, 24)},
])
def test_malformed_reports_are_refused(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"id": "x", "kind": "HUMINT", "originator": "KOR",
                               "facility": "hodo", "observed_at": NOW,
                               "claim": "launch-preparation", "reliability": "B",
                               "credibility": 2}
    args.update(bad)
    with pytest.raises(MalformedInput):
        I.Indicator(**args)  # type: ignore[arg-type]
    with pytest.raises(MalformedInput):
        I.Indicator("y", "IMINT", "JPN", "hodo", NOW, "tel-deployed", confidence=1.5)


@given(st.builds(
    lambda k, g, c, conf, h: humint(c if c in I.HUMINT_CLAIMS else "tel-movement", g, age_h=h)
    if k else imint(c if c in I.IMINT_CLAIMS else "no-change", conf, age_h=h),
    st.booleans(), st.sampled_from([f"{r}{c}" for r in "ABCDEF" for c in range(1, 7)]),
    st.sampled_from(sorted(I.CLAIMS)), st.floats(0, 1), st.integers(0, 100)))
def test_reports_round_trip_through_json(ind: I.Indicator) -> None:
    back = I.indicator_from(ind.to_json())
    assert back == ind
    assert I.default_label(ind)["category"] == "pre-launch-indicator"


def test_the_generator_is_deterministic_and_sharing_both_kinds_cues_more_often() -> None:
    launch = feeds.find_launch("2019-07-25")
    assert launch.launched_at is not None
    others = ["sohae", "sinpo", "kusong", "sunan", "wonsan", "hwangju"]
    a = I.generate(launch.facility.id, launch.launched_at, 11, others)
    assert a == I.generate(launch.facility.id, launch.launched_at, 11, others)
    assert a != I.generate(launch.facility.id, launch.launched_at, 12, others)
    assert all(i.observed_at < launch.launched_at for i in a)
    assert {i.kind for i in a} == {"HUMINT", "IMINT"}
    assert {i.originator for i in a if i.kind == "HUMINT"} == {"KOR"}
    counts = {"both": 0, "HUMINT": 0, "IMINT": 0, "false": 0}
    for seed in range(120):
        reports = I.generate(launch.facility.id, launch.launched_at, seed, others)
        for kind in ("both", "HUMINT", "IMINT"):
            mine = [i for i in reports if kind in ("both", i.kind)]
            counts[kind] += I.is_cued(mine, launch.facility.id, launch.launched_at)
        counts["false"] += sum(I.is_cued(reports, f, launch.launched_at) for f in others)
    # indicators shared between KOR and JPN cue most launches; either alone, a minority
    assert counts["both"] > 60
    assert counts["HUMINT"] < 40 and counts["IMINT"] < 40
    assert counts["both"] > counts["HUMINT"] + 20 and counts["both"] > counts["IMINT"] + 20
    assert counts["false"] <= 3
