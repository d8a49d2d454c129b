"""Standing consents in the core and the service: the signed document, the policy's check
and the fold of grants and revocations. The security invariant, as a property: a holder
relays nothing of another party's without a consent for the item or a standing consent of
the originator in force that covers the item's category, its purpose, the recipient and the
instant; expired, revoked, wrong purpose, recipient or category, none permits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import crypto
from gsomia.core.agreements import Catalogue
from gsomia.core.custody import StandingConsentRecord
from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import ItemStored, Routing, plan_deliveries
from gsomia.core.policy import ReleaseRequest, StandingConsent, decide
from gsomia.service.standing import in_force, listing

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CATEGORIES = ["flight-path", "impact-prediction", "sensor-report", "warning"]
PURPOSES = ["dprk-missile", "regional-security"]
PARTIES = ["JPN", "KOR", "USA"]


def relay_label(category: str | None = "sensor-report",
                purpose: str = "dprk-missile") -> SecurityLabel:
    return SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "USA", "JPN"}), purpose,
                         category=category)


def standing(**change: object) -> StandingConsent:
    base = StandingConsent("standing-consent--1", "KOR", "JPN", frozenset({"sensor-report"}),
                           "dprk-missile", T0, T0 + timedelta(days=1))
    return replace(base, **change)  # type: ignore[arg-type]


def hub_relay(consents: tuple[StandingConsent, ...], *, at: datetime = T0 + timedelta(hours=1),
              label: SecurityLabel | None = None, recipient: str = "JPN") -> ReleaseRequest:
    return ReleaseRequest("indicator--1", label or relay_label(), "USA", recipient, at,
                          standing=consents)


def test_a_standing_consent_in_force_lets_the_hub_relay(shipped: Catalogue) -> None:
    d = decide(hub_relay((standing(),)), shipped)
    assert d.permit and d.recipient_level == "極秘"
    assert any("standing consent standing-consent--1" in r for r in d.reasons)
    assert not decide(hub_relay(()), shipped).permit


@pytest.mark.parametrize(("why", "consent", "request_change"), [
    ("revoked", standing(revoked=True), {}),
    ("expired", standing(), {"at": T0 + timedelta(days=1)}),
    ("not yet valid", standing(), {"at": T0 - timedelta(seconds=1)}),
    ("other recipient", standing(recipient="USA"), {}),
    ("other originator", standing(originator="JPN"), {}),
    ("other category", standing(categories=frozenset({"warning"})), {}),
    ("other purpose", standing(purpose="regional-security"), {}),
    ("uncategorised item", standing(), {"label": relay_label(category=None)}),
])
def test_no_relay_without_a_covering_standing_consent(shipped: Catalogue, why: str,
                                                      consent: StandingConsent,
                                                      request_change: dict[str, object]
                                                      ) -> None:
    d = decide(hub_relay((consent,), **request_change), shipped)  # type: ignore[arg-type]
    assert not d.permit, why
    assert any("third-party rule" in r for r in d.reasons)


@st.composite
def consents(draw: st.DrawFn) -> StandingConsent:
    start = T0 + timedelta(hours=draw(st.integers(-48, 48)))
    return StandingConsent(
        f"standing-consent--{draw(st.integers(0, 3))}", draw(st.sampled_from(PARTIES)),
        draw(st.sampled_from(PARTIES)),
        frozenset(draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3))),
        draw(st.sampled_from(PURPOSES)), start,
        start + timedelta(hours=draw(st.integers(1, 72))), draw(st.booleans()))


def covers(c: StandingConsent, label: SecurityLabel, recipient: str, at: datetime) -> bool:
    """The invariant written out: every condition, none implied by another."""
    return (not c.revoked and c.originator == label.originator and c.recipient == recipient
            and label.category is not None and label.category in c.categories
            and c.purpose == label.purpose and c.not_before <= at < c.not_after)


@settings(max_examples=1000, deadline=None)
@given(st.lists(consents(), max_size=4), st.none() | st.sampled_from(CATEGORIES),
       st.sampled_from(PURPOSES), st.sampled_from(["JPN", "KOR"]),
       st.integers(-72, 120))
def test_no_relay_without_a_valid_standing_consent(shipped: Catalogue,
                                                   held: list[StandingConsent],
                                                   category: str | None, purpose: str,
                                                   recipient: str, hours: int) -> None:
    label = SecurityLabel("KOR" if recipient == "JPN" else "JPN", "SECRET",
                          frozenset(PARTIES), purpose, scheme="USA", category=category)
    at = T0 + timedelta(hours=hours)
    request = ReleaseRequest("indicator--1", label, "USA", recipient, at,
                             standing=tuple(held))
    d = decide(request, shipped)
    covered = any(covers(c, label, recipient, at) for c in held)
    if d.permit:
        assert covered, (held, label, at)
    # With a covering consent the relay goes exactly when a per-item consent would let it.
    from gsomia.core.policy import Consent

    per_item = decide(replace(request, standing=(), consents=(
        Consent("indicator--1", label.originator, recipient),)), shipped)
    assert d.permit == (covered and per_item.permit)


@settings(max_examples=300, deadline=None)
@given(st.lists(consents(), max_size=4), st.sampled_from(CATEGORIES),
       st.sampled_from(PURPOSES), st.integers(-72, 120))
def test_the_hub_plans_a_relay_only_under_a_covering_consent(
        shipped: Catalogue, held: list[StandingConsent], category: str, purpose: str,
        hours: int) -> None:
    routing = Routing("USA", ("JPN", "KOR"), shipped)
    label = SecurityLabel("KOR", "군사II급비밀", frozenset(PARTIES), purpose, category=category)
    at = T0 + timedelta(hours=hours)
    planned = plan_deliveries([ItemStored("indicator--1", "v1", label, "KOR")], routing, {},
                              at, standing=held)
    for due in planned:
        assert any(covers(c, label, due.recipient, at) for c in held)
    assert all(d.recipient != "KOR" for d in planned)  # never back to its originator


# ---- the signed document ------------------------------------------------------------------


def signed(key: Ed25519PrivateKey | None = None, **change: object
           ) -> crypto.StandingConsent:
    args: dict[str, object] = {
        "consent_id": "standing-consent--1", "originator": "KOR", "recipient": "JPN",
        "categories": ["sensor-report", "flight-path"], "purpose": "dprk-missile",
        "not_before": T0, "not_after": T0 + timedelta(days=30), "granted_at": T0,
        "key": key or KOR_KEY}
    args.update(change)
    return crypto.grant_standing_consent(**args)  # type: ignore[arg-type]


KOR_KEY = crypto.new_signing_key()
JPN_KEY = crypto.new_signing_key()


def test_the_originator_signs_and_anyone_with_its_key_checks() -> None:
    consent = signed()
    assert consent.categories == ("flight-path", "sensor-report")
    again = crypto.StandingConsent.from_json(consent.to_json())
    assert again == consent
    crypto.verify_standing_consent(again, KOR_KEY.public_key(), originator="KOR")


def test_a_standing_consent_signed_by_another_party_is_refused() -> None:
    forged = signed(JPN_KEY)  # KOR's name, JPN's key
    with pytest.raises(ProofInvalid):
        crypto.verify_standing_consent(forged, KOR_KEY.public_key(), originator="KOR")
    # The key field rewritten to KOR's: the signature still is not KOR's.
    doc = forged.to_json() | {"key": crypto.fingerprint(KOR_KEY)}
    with pytest.raises(ProofInvalid):
        crypto.verify_standing_consent(crypto.StandingConsent.from_json(doc),
                                       KOR_KEY.public_key(), originator="KOR")
    with pytest.raises(ProofInvalid):
        crypto.verify_standing_consent(signed(), KOR_KEY.public_key(), originator="JPN")


@pytest.mark.parametrize(("field", "value"), [
    ("recipient", "USA"), ("purpose", "regional-security"),
    ("categories", ["flight-path", "sensor-report", "warning"]),
    ("not_after", "2030-01-01T00:00:00.000Z"), ("id", "standing-consent--2")])
def test_a_changed_term_breaks_the_signature(field: str, value: object) -> None:
    doc = signed().to_json() | {field: value}
    with pytest.raises(ProofInvalid):
        crypto.verify_standing_consent(crypto.StandingConsent.from_json(doc),
                                       KOR_KEY.public_key())


@pytest.mark.parametrize("change", [
    {"categories": []}, {"categories": ["warning", "flight-path"]},
    {"categories": ["warning", "warning"]}, {"not_after": "2026-10-01T00:00:00.000Z"},
    {"recipient": "KOR"}, {"extra": 1}, {"signature": "AAAA"}])
def test_a_malformed_standing_consent_is_bad_input(change: dict[str, object]) -> None:
    with pytest.raises(MalformedInput):
        crypto.StandingConsent.from_json(signed().to_json() | change)


def test_a_revocation_is_the_originators_alone() -> None:
    revocation = crypto.revoke_standing_consent(consent_id="standing-consent--1",
                                                originator="KOR", revoked_at=T0, key=KOR_KEY)
    crypto.verify_standing_revocation(crypto.StandingRevocation.from_json(
        revocation.to_json()), KOR_KEY.public_key(), originator="KOR")
    forged = crypto.revoke_standing_consent(consent_id="standing-consent--1",
                                            originator="KOR", revoked_at=T0, key=JPN_KEY)
    with pytest.raises(ProofInvalid):
        crypto.verify_standing_revocation(forged, KOR_KEY.public_key(), originator="KOR")


# ---- the fold of grants and revocations -------------------------------------------------------


def test_a_revocation_ends_the_consent_it_names_and_no_other() -> None:
    consent = signed()
    other = signed(consent_id="standing-consent--2")
    revocation = crypto.revoke_standing_consent(consent_id=consent.id, originator="KOR",
                                                revoked_at=T0 + timedelta(hours=1),
                                                key=KOR_KEY)
    rows = [StandingConsentRecord(c.id, "KOR", "JPN", "obtained", "grant", c.to_json(), T0)
            for c in (consent, other)]
    rows.append(StandingConsentRecord(consent.id, "KOR", "JPN", "obtained", "revoke",
                                      revocation.to_json(), T0))
    claims = {c.id: c for c in in_force(rows)}
    assert claims[consent.id].revoked and not claims[other.id].revoked
    # A revocation recorded under another originator does not end KOR's consent.
    stray = [*rows[:2], replace(rows[2], originator="JPN")]
    assert not any(c.revoked for c in in_force(stray))
    states = {r["id"]: r["state"] for r in listing(rows, T0 + timedelta(hours=2))}
    assert states == {consent.id: "revoked", other.id: "in force"}
    assert {r["state"] for r in listing(rows[1:2], T0 + timedelta(days=31))} == {"expired"}
    # A row whose document is not the consent it claims to be grants nothing.
    swapped = replace(rows[0], consent_id="standing-consent--9")
    assert [c.id for c in in_force([swapped])] == []
