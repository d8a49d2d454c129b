"""Pre-launch indicators: graded human intelligence and satellite imagery, fused per facility.

Two kinds of report:

- **HUMINT** (the ROK's human sources near the border), graded with the Admiralty code:
  source reliability ``A`` (completely reliable) … ``E`` (unreliable), ``F`` (cannot be
  judged); information credibility ``1`` (confirmed by other sources) … ``5`` (improbable),
  ``6`` (cannot be judged).
- **IMINT** (Japan's information-gathering satellites): activity seen at a facility, with the
  analyst's confidence in ``[0, 1]`` (cloud, resolution, how clear the sign is).

Fusion is naive-Bayes in log-odds. Each report asserts a claim whose evidential strength is a
log-likelihood ratio (``CLAIMS``: ``ln P(report | launch soon) / P(report | no launch)``); the
report adds that ratio times its grading weight and a decay with age:

    logit P(launch at f) = logit(prior) + sum_r  LLR(claim_r) * w_r * exp(-age_r / tau)

Weights: HUMINT ``w = RELIABILITY[r] * CREDIBILITY[c]``, so an A1 report counts in full and an
E5 report hardly at all; the "cannot be judged" grades (F, 6) count like a middling source
(0.4), neither trusted nor dismissed. IMINT ``w = confidence``. The decay ``tau`` is 36 hours:
preparations seen three days ago say less about tonight than those seen this afternoon.
The prior (5% a day for a facility under watch) and the threshold (30%: pointing a radar costs
little) are set so that, with :func:`generate`'s reports, the two kinds together cue most
launches and either kind alone a minority, with no false cue on the other facilities. The
weights are judgement, written down so that they can be argued with; ``tests`` pin the
properties that matter (more reliable → more weight; contradicting reports pull down).

A facility whose likelihood reaches ``CUE_THRESHOLD`` is *cued*: its owner's and (when the
indicators are shared) its partners' sensors are pointed there before the launch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.types import instant, utc_text

RELIABILITY: Mapping[str, float] = {"A": 1.0, "B": 0.8, "C": 0.6, "D": 0.35, "E": 0.15, "F": 0.4}
CREDIBILITY: Mapping[int, float] = {1: 1.0, 2: 0.8, 3: 0.55, 4: 0.25, 5: 0.05, 6: 0.4}

# Natural-log likelihood ratios of what a report can say about a facility.
CLAIMS: Mapping[str, float] = {
    # human sources
    "launch-preparation": 2.5,      # crews told to ready a launch, officials arriving
    "tel-movement": 1.8,            # a launcher vehicle seen leaving its shelter
    "no-activity": -1.0,
    # imagery
    "erector-raised": 3.0,
    "tel-deployed": 2.2,            # launcher in the open at a launch position
    "fuelling": 2.0,                # propellant trucks at a liquid-fuel pad
    "support-vehicles": 1.2,
    "no-change": -0.7,
}
HUMINT_CLAIMS = ("launch-preparation", "tel-movement", "no-activity")
IMINT_CLAIMS = ("erector-raised", "tel-deployed", "fuelling", "support-vehicles", "no-change")

PRIOR = 0.05                        # chance of a launch from a watched facility, any given day
DECAY = timedelta(hours=36)
HORIZON = timedelta(hours=96)       # reports older than this are ignored
CUE_THRESHOLD = 0.3                 # cueing a radar is cheap: act on a 30% chance

KINDS = {"HUMINT": "KOR", "IMINT": "JPN"}     # who produces each kind in this system


@dataclass(frozen=True, slots=True)
class Indicator:
    """One pre-launch report about one facility."""

    id: str
    kind: str                       # HUMINT or IMINT
    originator: str
    facility: str
    observed_at: datetime
    claim: str
    reliability: str | None = None  # HUMINT: A-F
    credibility: int | None = None  # HUMINT: 1-6
    confidence: float | None = None  # IMINT: 0-1

    def __post_init__(self) -> None:
        where = f"indicator {self.id}"
        if self.kind not in KINDS:
            raise MalformedInput(f"kind {self.kind!r}", where=where, expected="HUMINT or IMINT")
        if self.claim not in (HUMINT_CLAIMS if self.kind == "HUMINT" else IMINT_CLAIMS):
            raise MalformedInput(f"claim {self.claim!r}", where=where,
                                 expected=", ".join(HUMINT_CLAIMS if self.kind == "HUMINT"
                                                    else IMINT_CLAIMS))
        if self.kind == "HUMINT":
            if self.reliability not in RELIABILITY or self.credibility not in CREDIBILITY:
                raise MalformedInput(
                    f"grading {self.reliability}{self.credibility}", where=where,
                    expected="an Admiralty grading: reliability A-F and credibility 1-6")
        elif self.confidence is None or not 0.0 <= self.confidence <= 1.0:
            raise MalformedInput(f"confidence {self.confidence!r}", where=where,
                                 expected="an imagery confidence between 0 and 1")
        if self.observed_at.tzinfo is None:
            raise MalformedInput("naive time", where=where, expected="an aware UTC instant")

    @property
    def grading(self) -> str:
        """``B2``-style Admiralty grading for HUMINT, ``conf 0.80`` for imagery."""
        if self.kind == "HUMINT":
            return f"{self.reliability}{self.credibility}"
        return f"conf {self.confidence:.2f}"

    @property
    def weight(self) -> float:
        if self.kind == "HUMINT":
            assert self.reliability is not None and self.credibility is not None
            return RELIABILITY[self.reliability] * CREDIBILITY[self.credibility]
        assert self.confidence is not None
        return self.confidence

    def evidence(self, now: datetime) -> float:
        """This report's log-odds contribution at ``now`` (0 before it exists or when stale)."""
        age = now - self.observed_at
        if age < timedelta(0) or age > HORIZON:
            return 0.0
        return CLAIMS[self.claim] * self.weight * math.exp(-age / DECAY)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "originator": self.originator,
            "facility": self.facility,
            "observed_at": utc_text(self.observed_at),
            "claim": self.claim, "reliability": self.reliability,
            "credibility": self.credibility, "confidence": self.confidence,
            "grading": self.grading,
        }


def indicator_from(doc: Mapping[str, Any]) -> Indicator:
    """Decode :meth:`Indicator.to_json` output."""
    if not isinstance(doc, Mapping):
        raise MalformedInput("not an object", where="indicator", expected="an indicator")
    try:
        cred = doc.get("credibility")
        conf = doc.get("confidence")
        return Indicator(
            id=str(doc["id"]), kind=str(doc["kind"]), originator=str(doc["originator"]),
            facility=str(doc["facility"]), observed_at=instant(doc["observed_at"]),
            claim=str(doc["claim"]), reliability=doc.get("reliability"),
            credibility=int(cred) if cred is not None else None,
            confidence=float(conf) if conf is not None else None)
    except KeyError as exc:
        raise MalformedInput(f"missing {exc.args[0]}", where="indicator",
                             expected="id, kind, originator, facility, observed_at, claim") \
            from None


def log_odds(p: float) -> float:
    return math.log(p / (1.0 - p))


def launch_likelihood(indicators: Iterable[Indicator], facility: str, now: datetime,
                      prior: float = PRIOR) -> float:
    """Probability of a launch from ``facility`` soon, from the reports known at ``now``."""
    z = log_odds(prior) + sum(i.evidence(now) for i in indicators if i.facility == facility)
    return 1.0 / (1.0 + math.exp(-z))


def likelihoods(indicators: Sequence[Indicator], now: datetime,
                prior: float = PRIOR) -> dict[str, float]:
    """Launch likelihood of every facility that has a report."""
    return {f: launch_likelihood(indicators, f, now, prior)
            for f in sorted({i.facility for i in indicators})}


def is_cued(indicators: Iterable[Indicator], facility: str, now: datetime,
            threshold: float = CUE_THRESHOLD, prior: float = PRIOR) -> bool:
    """Whether the reports known at ``now`` put ``facility`` above the cueing threshold."""
    return launch_likelihood(indicators, facility, now, prior) >= threshold


def cued_since(indicators: Sequence[Indicator], facility: str, until: datetime,
               threshold: float = CUE_THRESHOLD, prior: float = PRIOR) -> datetime | None:
    """The report time at which ``facility`` last became cued and stayed so up to ``until``.

    Likelihood only rises at report times (it decays in between), so those are where to look;
    the cue must still hold at ``until``.
    """
    if not is_cued(indicators, facility, until, threshold, prior):
        return None
    times = sorted({i.observed_at for i in indicators
                    if i.facility == facility and i.observed_at <= until})
    since: datetime | None = None
    for t in times:
        held = is_cued(indicators, facility, t, threshold, prior)
        since = (since or t) if held else None
    return since or until


# --- a deterministic generator --------------------------------------------------------------

_RELIABILITY_MIX = (("A", 0.05), ("B", 0.30), ("C", 0.40), ("D", 0.15), ("E", 0.05), ("F", 0.05))
_CREDIBILITY_MIX = ((1, 0.05), (2, 0.30), (3, 0.40), (4, 0.15), (5, 0.05), (6, 0.05))


def _pick(rng: np.random.Generator, mix: Sequence[tuple[Any, float]]) -> Any:
    p = np.array([w for _, w in mix])
    return mix[int(rng.choice(len(mix), p=p / p.sum()))][0]


def generate(facility: str, launch_at: datetime, seed: int,
             other_facilities: Sequence[str] = (), *, hours: float = 72.0,
             imagery_revisit_h: float = 10.0, clear_sky: float = 0.6) -> list[Indicator]:
    """Plausible reports in the ``hours`` before a launch from ``facility``, from ``seed``.

    KOR HUMINT: two to four graded reports on the launch facility, mostly right but not all,
    and up to three false alarms about other facilities. JPN imagery: a pass over each facility
    every ``imagery_revisit_h`` hours (information-gathering satellites), clear with
    probability ``clear_sky``; the closer to the launch, the more it shows. Same inputs, same
    reports.
    """
    launch_at = instant(launch_at)
    rng = np.random.default_rng(seed)
    out: list[Indicator] = []
    window = timedelta(hours=hours)

    def humint(fac: str, true_launch: bool) -> None:
        claims = (("launch-preparation", 0.6), ("tel-movement", 0.3), ("no-activity", 0.1)) \
            if true_launch else (("launch-preparation", 0.3), ("tel-movement", 0.3),
                                 ("no-activity", 0.4))
        # sources report more as preparations become visible: mostly in the last day
        offset = timedelta(hours=float(min(1.0 + rng.exponential(18.0), hours)))
        out.append(Indicator(
            id=f"humint-{seed}-{len(out)}", kind="HUMINT", originator="KOR", facility=fac,
            observed_at=launch_at - offset, claim=_pick(rng, claims),
            reliability=_pick(rng, _RELIABILITY_MIX), credibility=_pick(rng, _CREDIBILITY_MIX)))

    for _ in range(int(rng.integers(2, 5))):
        humint(facility, True)
    for _ in range(int(rng.integers(0, 4)) if other_facilities else 0):
        humint(str(other_facilities[int(rng.integers(len(other_facilities)))]), False)

    for fac in (facility, *other_facilities):
        t = launch_at - window + timedelta(hours=float(rng.uniform(0.0, imagery_revisit_h)))
        while t < launch_at:
            if rng.random() < clear_sky:
                lead = launch_at - t
                if fac != facility:
                    claims: tuple[tuple[str, float], ...] = (("no-change", 0.85),
                                                             ("support-vehicles", 0.15))
                elif lead < timedelta(hours=12):
                    claims = (("tel-deployed", 0.5), ("erector-raised", 0.2),
                              ("support-vehicles", 0.2), ("no-change", 0.1))
                elif lead < timedelta(hours=36):
                    claims = (("support-vehicles", 0.5), ("fuelling", 0.2), ("no-change", 0.3))
                else:
                    claims = (("support-vehicles", 0.3), ("no-change", 0.7))
                out.append(Indicator(
                    id=f"imint-{seed}-{len(out)}", kind="IMINT", originator="JPN", facility=fac,
                    observed_at=t, claim=_pick(rng, claims),
                    confidence=round(float(rng.uniform(0.5, 0.95)), 2)))
            t += timedelta(hours=imagery_revisit_h)
    return sorted(out, key=lambda i: (i.observed_at, i.id))


def default_label(indicator: Indicator) -> dict[str, Any]:
    """The label a pre-launch report carries by default (the lead's release policy applies it).

    The ``pre-launch-indicator`` category is what the 2023 trilateral mechanism excludes.
    """
    if indicator.kind == "HUMINT":
        return {"originator": indicator.originator, "level": "군사II급비밀",
                "rel_to": ["KOR", "JPN", "USA"], "purpose": "dprk-missile",
                "category": "pre-launch-indicator"}
    return {"originator": indicator.originator, "level": "特定秘密",
            "rel_to": ["JPN", "KOR", "USA"], "purpose": "dprk-missile",
            "category": "pre-launch-indicator"}
