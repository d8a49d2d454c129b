"""The release policy: each rule, the real timeline, and the DESIGN.md invariants as properties."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.agreements import Catalogue, status
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import (
    Consent,
    Person,
    ReleaseRequest,
    decide,
    decide_access,
    decide_classification_change,
)
from gsomia.core.types import instant


def req(sender: str = "KOR", recipient: str = "JPN", *, originator: str = "KOR",
        level: str = "군사II급비밀", rel_to: tuple[str, ...] = ("KOR", "JPN"),
        purpose: str = "dprk-missile", at: str = "2017-03-01", scheme: str = "",
        caveats: tuple[str, ...] = (), consents: tuple[Consent, ...] = (),
        policy: str | None = None, category: str | None = None) -> ReleaseRequest:
    label = SecurityLabel(originator, level, frozenset(rel_to), purpose, frozenset(caveats),
                          scheme or originator, policy, category)
    return ReleaseRequest("indicator--1", label, sender, recipient, instant(at), consents)


def test_kor_to_jpn_under_gsomia(shipped: Catalogue) -> None:
    d = decide(req(), shipped)
    assert d.permit and d.agreement == "jpn-kor-gsomia-2016" and d.recipient_level == "極秘"
    assert any("Art. 4" in r for r in d.reasons)
    assert decide(req(level="군사III급비밀"), shipped).recipient_level == "秘"
    assert decide(req("JPN", "KOR", originator="JPN", level="特定秘密"),
                  shipped).recipient_level == "군사II급비밀"


def test_before_the_gsomia_kor_cannot_send_to_jpn_directly(shipped: Catalogue) -> None:
    d = decide(req(at="2016-11-22"), shipped)
    assert not d.permit and d.agreement is None
    assert any("jpn-kor-gsomia-2016: not in force" in r for r in d.reasons)
    # TISA opens no direct channel: the reasons name only channel agreements.
    assert not any(r.startswith("tisa-2014") for r in d.reasons)


def test_during_the_notice_releases_continue(shipped: Catalogue) -> None:
    assert decide(req(at="2019-10-01"), shipped).permit
    assert decide(req(at="2019-11-24"), shipped).permit


def test_top_level_is_not_covered(shipped: Catalogue) -> None:
    d = decide(req(level="군사I급비밀"), shipped)
    assert not d.permit and any("not covered" in r for r in d.reasons)
    # … but the US–ROK agreement covers TOP SECRET.
    to_us = decide(req("KOR", "USA", level="군사I급비밀", rel_to=("KOR", "USA")), shipped)
    assert to_us.permit and to_us.recipient_level == "TOP SECRET"


def test_recipient_must_be_in_rel_to(shipped: Catalogue) -> None:
    d = decide(req(rel_to=("KOR", "USA")), shipped)
    assert not d.permit and any("not in REL TO" in r for r in d.reasons)


def test_purpose_must_be_in_scope(shipped: Catalogue) -> None:
    d = decide(req("KOR", "USA", rel_to=("KOR", "USA"), purpose="space-launch"), shipped)
    assert not d.permit and any("purpose 'space-launch'" in r for r in d.reasons)


def test_hub_relay_needs_originator_consent(shipped: Catalogue) -> None:
    relay = req("USA", "JPN", originator="KOR", rel_to=("KOR", "USA", "JPN"),
                scheme="USA", level="SECRET", at="2015-06-01")
    d = decide(relay, shipped)
    assert not d.permit and any("third-party rule" in r for r in d.reasons)
    wrong = Consent("indicator--1", "KOR", "AUS")
    assert not decide(req("USA", "JPN", originator="KOR", rel_to=("KOR", "USA", "JPN"),
                          scheme="USA", level="SECRET", at="2015-06-01", consents=(wrong,)),
                      shipped).permit
    ok = Consent("indicator--1", "KOR", "JPN")
    d = decide(req("USA", "JPN", originator="KOR", rel_to=("KOR", "USA", "JPN"), scheme="USA",
                   level="SECRET", at="2015-06-01", consents=(ok,)), shipped)
    assert d.permit and d.agreement == "usa-jpn-gsomia-2007" and d.recipient_level == "極秘"


def test_label_policy_pins_the_agreement(shipped: Catalogue) -> None:
    d = decide(req("KOR", "USA", rel_to=("KOR", "USA"), policy="tisa-2014", at="2015-01-01"),
               shipped)
    assert d.permit and d.agreement == "tisa-2014"
    d = decide(req(policy="tisa-2014", at="2017-01-01"), shipped)
    assert not d.permit and any("opens no channel" in r for r in d.reasons)


def test_trilateral_carries_only_warning_data(shipped: Catalogue) -> None:
    ipp = req(rel_to=("KOR", "JPN", "USA"), policy="trilateral-mwd-2023", at="2024-01-14",
              category="impact-prediction")
    assert decide(ipp, shipped).agreement == "trilateral-mwd-2023"
    humint = req(rel_to=("KOR", "JPN", "USA"), policy="trilateral-mwd-2023", at="2024-01-14",
                 category="pre-launch-indicator")
    d = decide(humint, shipped)
    assert not d.permit and any("carries only" in r for r in d.reasons)
    sensor = req(rel_to=("KOR", "JPN", "USA"), policy="trilateral-mwd-2023", at="2024-01-14",
                 category="sensor-location")
    assert not decide(sensor, shipped).permit
    before = req(rel_to=("KOR", "JPN", "USA"), policy="trilateral-mwd-2023", at="2023-06-01",
                 category="impact-prediction")
    assert not decide(before, shipped).permit


def test_caveats(shipped: Catalogue) -> None:
    assert not decide(req(caveats=("NOFORN",)), shipped).permit
    d = decide(req(caveats=("EYES-ONLY-X",)), shipped)
    assert not d.permit and any("unknown caveat" in r for r in d.reasons)


def test_sender_equals_recipient_and_unknown_parties_deny(shipped: Catalogue) -> None:
    assert not decide(req("KOR", "KOR"), shipped).permit
    assert not decide(req("KOR", "AUS", rel_to=("KOR", "AUS")), shipped).permit
    assert not decide(req(level="TOP-ish"), shipped).permit


def test_access_needs_clearance_and_need_to_know(shipped: Catalogue) -> None:
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile",
                          scheme="JPN").remarked("JPN", "極秘")
    schemes = shipped.schemes
    assert decide_access(Person("sato", "JPN", "極秘", frozenset({"dprk-missile"})), label,
                         schemes).permit
    assert decide_access(Person("sato", "JPN", "特定秘密", frozenset({"dprk-missile"})), label,
                         schemes).permit
    # clearance alone, even the top one, does not suffice
    assert not decide_access(Person("general", "JPN", "機密", frozenset()), label,
                             schemes).permit
    # need-to-know alone does not suffice
    assert not decide_access(Person("clerk", "JPN", "秘", frozenset({"dprk-missile"})), label,
                             schemes).permit
    assert not decide_access(Person("none", "JPN", None, frozenset({"dprk-missile"})), label,
                             schemes).permit
    assert not decide_access(Person("smith", "USA", "TOP SECRET", frozenset({"dprk-missile"})),
                             label, schemes).permit


def test_only_the_originator_changes_a_classification(shipped: Catalogue) -> None:
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
    assert decide_classification_change("KOR", label, "군사III급비밀", shipped.schemes).permit
    assert not decide_classification_change("JPN", label, "군사III급비밀",
                                             shipped.schemes).permit
    assert not decide_classification_change("KOR", label, "秘", shipped.schemes).permit


# ---- properties ---------------------------------------------------------------------------
PARTIES = ["JPN", "KOR", "USA", "AUS"]
LEVELS = [("JPN", "機密"), ("JPN", "特定秘密"), ("JPN", "極秘"), ("JPN", "秘"),
          ("KOR", "군사I급비밀"), ("KOR", "군사II급비밀"), ("KOR", "군사III급비밀"),
          ("USA", "TOP SECRET"), ("USA", "SECRET"), ("USA", "CONFIDENTIAL"), ("USA", "秘")]


# Built once: a strategy built inside the composite is built and validated again at every
# draw, which cost most of this file's CPU (the properties draw thousands of requests).
_PARTY = st.sampled_from(PARTIES)
_SCHEME_LEVELS = st.sampled_from(LEVELS)
_ITEMS = st.sampled_from(["a", "b"])
_SENDERS = {originator: st.sampled_from([originator] * 2 + PARTIES) for originator in PARTIES}
_INSTANTS = st.datetimes(min_value=datetime(1985, 1, 1), max_value=datetime(2027, 1, 1),
                         timezones=st.just(UTC))
_CONSENTS = st.lists(st.builds(Consent, _ITEMS, _PARTY, _PARTY), max_size=3)
_REL_TO = st.frozensets(_PARTY, min_size=1)
_PURPOSES = st.sampled_from(["dprk-missile", "regional-security", "other"])
_CAVEATS = st.frozensets(st.sampled_from(["NOFORN", "WEIRD"]), max_size=1)
_POLICIES = st.none() | st.sampled_from(["tisa-2014", "trilateral-mwd-2023",
                                         "jpn-kor-gsomia-2016", "nope"])
_CATEGORIES = st.none() | st.sampled_from(["impact-prediction", "pre-launch-indicator"])


@st.composite
def requests(draw: st.DrawFn) -> ReleaseRequest:
    originator = draw(_PARTY)
    sender = draw(_SENDERS[originator])
    recipient = draw(_PARTY)
    scheme, level = draw(_SCHEME_LEVELS)
    rel_to = draw(_REL_TO)
    at = draw(_INSTANTS)
    item = draw(_ITEMS)
    consents = tuple(draw(_CONSENTS))
    label = SecurityLabel(originator, level, rel_to, draw(_PURPOSES), draw(_CAVEATS), scheme,
                          draw(_POLICIES), draw(_CATEGORIES))
    return ReleaseRequest(item, label, sender, recipient, at, consents)


def oracle(r: ReleaseRequest, cat: Catalogue) -> set[str]:
    """A straightforward reading of DESIGN.md: the agreements under which r is allowed."""
    lab = r.label
    if r.recipient not in lab.rel_to or r.sender == r.recipient:
        return set()
    if lab.caveats - {"NOFORN"} or ("NOFORN" in lab.caveats and r.recipient != lab.originator):
        return set()
    if r.sender != lab.originator and Consent(r.item_id, lab.originator,
                                               r.recipient) not in r.consents:
        return set()
    ok = set()
    for a in cat.agreements.values():
        if not a.carries(r.sender, r.recipient) or lab.policy not in (None, a.id):
            continue
        if not status(a, r.at).in_force or lab.purpose not in a.purposes:
            continue
        if a.information_kinds is not None and lab.category not in a.information_kinds:
            continue
        rows = [row for row in a.equivalence if lab.level in row.levels.get(lab.scheme, ())
                and r.recipient in row.levels]
        if rows:
            ok.add(a.id)
    return ok


@settings(max_examples=1500, deadline=None)
@given(requests())
def test_decision_matches_the_invariants(shipped: Catalogue, r: ReleaseRequest) -> None:
    d = decide(r, shipped)
    allowed = oracle(r, shipped)
    assert d.permit == bool(allowed), (d, allowed)
    assert d.reasons, "every decision says why"
    if d.permit:
        assert d.agreement in allowed
        a = shipped.get(d.agreement)
        assert r.recipient in r.label.rel_to
        assert a.carries(r.sender, r.recipient) and status(a, r.at).in_force
        assert r.label.purpose in a.purposes
        assert d.recipient_level == a.equivalent(r.label.scheme, r.label.level, r.recipient)
        if r.sender != r.label.originator:
            assert any(c.item_id == r.item_id and c.originator == r.label.originator
                       and c.recipient == r.recipient for c in r.consents)
    else:
        assert d.agreement is None and d.recipient_level is None


@settings(max_examples=500, deadline=None)
@given(requests(), st.sampled_from(PARTIES))
def test_removing_a_party_from_rel_to_never_grants(shipped: Catalogue, r: ReleaseRequest,
                                                   dropped: str) -> None:
    from dataclasses import replace

    narrower = replace(r, label=replace(r.label, rel_to=r.label.rel_to - {dropped}))
    if narrower.label.rel_to and decide(narrower, shipped).permit:
        assert decide(r, shipped).permit


@pytest.mark.parametrize("text", [
    '{"item_id": "x"}',
    '{"item_id": "x", "label": {}, "sender": "KOR", "recipient": "JPN", "at": "2017-01-01"}',
])
def test_malformed_requests_are_refused(shipped: Catalogue, text: str) -> None:
    import json

    from gsomia.core.errors import MalformedInput

    with pytest.raises(MalformedInput):
        ReleaseRequest.from_json(json.loads(text), shipped)


# ---- new versions of an item held (issue 10, finding 2) ---------------------------------------

_KOR_LEVELS = ("군사I급비밀", "군사II급비밀", "군사III급비밀")
_LABELS = st.builds(
    SecurityLabel, st.sampled_from(("KOR", "JPN")), st.sampled_from(_KOR_LEVELS),
    st.sets(st.sampled_from(PARTIES), min_size=1).map(frozenset),
    st.sampled_from(("dprk-missile", "regional-security")),
    st.sets(st.sampled_from(("NOFORN", "ORCON")), max_size=1).map(frozenset),
    scheme=st.just("KOR"))
_PEOPLE = st.builds(Person, st.just("lee"), st.just("KOR"), st.sampled_from(_KOR_LEVELS),
                    st.sets(st.sampled_from(("dprk-missile", "regional-security")),
                            min_size=1).map(frozenset))


@given(_LABELS, st.lists(_LABELS, min_size=1, max_size=3), st.one_of(st.none(), _PEOPLE))
def test_a_new_version_keeps_originator_and_label_and_needs_a_reader(
        shipped: Catalogue, label: SecurityLabel, held: list[SecurityLabel],
        publisher: Person | None) -> None:
    from gsomia.core.policy import decide_new_version, label_class

    verdict = decide_new_version(label, held, shipped.schemes, publisher=publisher)
    readable = publisher is None or all(
        decide_access(publisher, h, shipped.schemes).permit for h in held)
    same = all(label_class(h) == label_class(label) for h in held)
    assert verdict.permit == (readable and same)
    # a fresh id takes any label; ``created`` alone never makes a label differ
    assert decide_new_version(label, [], shipped.schemes, publisher=publisher).permit
    again = SecurityLabel(label.originator, label.level, label.rel_to, label.purpose,
                          label.caveats, label.scheme, created=datetime(2030, 1, 1, tzinfo=UTC))
    assert decide_new_version(again, [label], shipped.schemes).permit
