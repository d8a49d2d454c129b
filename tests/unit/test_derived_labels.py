"""What is made from an item goes out under no wider a label (``policy.decide_derived``).

The warning centre fuses the reports a node holds into tracks, impact predictions and
warnings marked with one label of its own. Before review28 it fused any report whatever its
label, so a partner's report REL TO two parties left the third in what was made of it
(``tests/integration/test_centre_labels.py``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.agreements import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person, decide_access, decide_derived, narrowed_derived
from gsomia.core.types import PARTIES, SECRET_LEVELS
from gsomia.shell import feeds

_LEVELS = {"JPN": ("機密", "特定秘密", "極秘", "秘"),
           "KOR": ("군사I급비밀", "군사II급비밀", "군사III급비밀"),
           "USA": ("TOP SECRET", "SECRET", "CONFIDENTIAL")}
_PURPOSES = ("dprk-missile", "regional-security")


@st.composite
def _labels(draw: st.DrawFn) -> SecurityLabel:
    originator = draw(st.sampled_from(PARTIES))
    return SecurityLabel(
        originator, draw(st.sampled_from(_LEVELS[originator])),
        draw(st.sets(st.sampled_from(PARTIES), min_size=1).map(frozenset)),
        draw(st.sampled_from(_PURPOSES)),
        draw(st.sets(st.sampled_from(("NOFORN", "ORCON")), max_size=2).map(frozenset)),
        policy=draw(st.sampled_from((None, "trilateral-mwd-2023"))))


@st.composite
def _people(draw: st.DrawFn) -> Person:
    nation = draw(st.sampled_from(PARTIES))
    return Person("p", nation, draw(st.sampled_from(_LEVELS[nation])),
                  draw(st.sets(st.sampled_from(_PURPOSES)).map(frozenset)))


@given(_labels(), _labels(), st.lists(_people(), min_size=1, max_size=6))
def test_what_is_derived_reaches_no_one_its_source_does_not(
        shipped: Catalogue, source: SecurityLabel, derived: SecurityLabel,
        people: list[Person]) -> None:
    verdict = decide_derived(source, derived, shipped.schemes)
    assert verdict.reasons
    # Always allowed to keep a source's own label (nothing else would be fused at all).
    assert decide_derived(source, source, shipped.schemes).permit
    if not verdict.permit:
        return
    # No reader, no party and no agreement the source does not admit.
    for person in people:
        if decide_access(person, derived, shipped.schemes).permit:
            assert decide_access(person, source, shipped.schemes).permit, (person, verdict)
    assert derived.rel_to | {derived.originator} <= source.rel_to | {source.originator}
    assert source.policy in (None, derived.policy)


@given(_labels())
def test_a_centres_label_takes_exactly_what_it_does_not_widen(
        shipped: Catalogue, source: SecurityLabel) -> None:
    """Against the warning centre's own label (a party's SECRET level REL TO all three, for
    dprk-missile): refused exactly when the source is above SECRET, not released to every
    party, for another purpose, carries a caveat, or is marked under another agreement."""
    for party in PARTIES:
        for policy in (None, "trilateral-mwd-2023"):
            out = SecurityLabel(party, SECRET_LEVELS[party], frozenset(PARTIES),
                                "dprk-missile", policy=policy)
            rank = shipped.schemes[source.scheme].level(source.level).rank
            narrower = (rank > 2 or set(PARTIES) - source.rel_to - {source.originator}
                        or source.purpose != "dprk-missile" or source.caveats
                        or source.policy not in (None, policy))
            assert decide_derived(source, out, shipped.schemes).permit == (not narrower)


def test_every_shipped_sensors_reports_feed_every_centre(shipped: Catalogue) -> None:
    """The intake's labels (``sensors.yaml`` ``report_label``) are all fused: the rule keeps
    no real report from any party's centre, under either kind of regime."""
    for sensor in feeds.load_sensors():
        for party in PARTIES:
            for policy in (None, "trilateral-mwd-2023"):
                rl = sensor.report_label
                source = SecurityLabel(rl.originator, rl.level, frozenset(rl.rel_to),
                                       rl.purpose, frozenset(rl.caveats), policy=policy)
                out = SecurityLabel(party, SECRET_LEVELS[party], frozenset(PARTIES),
                                    "dprk-missile", policy=policy)
                assert decide_derived(source, out, shipped.schemes).permit, (sensor.id, party)


@given(_labels(), st.lists(_labels(), max_size=5), st.lists(_people(), min_size=1, max_size=6))
def test_after_any_narrowings_what_was_made_reaches_no_one_a_source_now_excludes(
        shipped: Catalogue, derived: SecurityLabel, sources: list[SecurityLabel],
        people: list[Person]) -> None:
    """withdraw29: each source narrowed in turn (a notice raised its level), the derived
    label follows it (``narrowed_derived``); at the end it is no wider than any source's
    current label, no wider than it was, and unchanged by a source that never narrowed it;
    where no label will do, None, never a wider one."""
    schemes = shipped.schemes
    label: SecurityLabel | None = derived
    for source in sources:
        if label is None:
            break
        before = label
        label = narrowed_derived(source, label, schemes)
        if label is None:
            continue
        assert decide_derived(source, label, schemes).permit
        # Never wider than it was: whoever may read it now could read it before.
        for person in people:
            if decide_access(person, label, schemes).permit:
                assert decide_access(person, before, schemes).permit, (person, label)
        assert label.rel_to <= before.rel_to and label.purpose == before.purpose
        if decide_derived(source, before, schemes).permit:
            assert label == before  # a source that allows it as it was changes nothing
    if label is not None:
        for source in sources:
            assert decide_derived(source, label, schemes).permit, (source, label)


def test_a_source_raised_to_top_secret_raises_what_was_made_to_top_secret(
        shipped: Catalogue) -> None:
    made = SecurityLabel("JPN", "極秘", frozenset(PARTIES), "dprk-missile")
    raised = SecurityLabel("USA", "TOP SECRET", frozenset(PARTIES), "dprk-missile")
    assert narrowed_derived(raised, made, shipped.schemes) == SecurityLabel(
        "JPN", "機密", frozenset(PARTIES), "dprk-missile")
    narrowed = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
    assert narrowed_derived(narrowed, made, shipped.schemes) == SecurityLabel(
        "JPN", "極秘", frozenset({"KOR", "JPN"}), "dprk-missile")
    assert narrowed_derived(SecurityLabel("USA", "SECRET", frozenset({"USA", "KOR"}),
                                          "dprk-missile"), made, shipped.schemes) is None
