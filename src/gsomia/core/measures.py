"""How good a party's warnings were, measured against the true flight.

For each launch, seed, regime and party: which of the party's prefectures or provinces the
true flight crossed or hit (``truth``), and what the party's warnings said. Over all launches
of one seed and regime: recall of land alerts (every launch whose true path or impact crosses
the party's territory must be alerted, naming every region crossed), false land alerts (land
alerts for flights that never crossed its territory), time from launch to the first land
alert (median, worst), impact-point error at the first warning (a space launch apart: its
drop error, the first fall it stated against the nearest true fall of its stages), and time
from the missile's passing to the "passed" message. Over seeds: mean and a 95 % confidence
interval (Student's t).

Pure: no I/O; the ``evaluate`` command feeds it rows and writes what it returns.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import stdtrit

from gsomia.core.tracking.earth import ecef_to_geodetic
from gsomia.core.tracking.geography import TERRITORY_KINDS, Atlas
from gsomia.core.tracking.trajectory import Trajectory
from gsomia.core.types import Party
from gsomia.core.warning import AREA_OF_CONCERN, Warning

__all__ = [
    "MEASURES", "NOT_AVAILABLE", "TRUTH_STEP_S", "Truth", "interval", "land_alerts", "land_names",
    "passed_message_s", "row_measures", "seed_measures", "summarise", "truth",
]

TRUTH_STEP_S = 0.25     # ~2 km of ground track at 8 km/s: no island of ~1 km² slips between
NOT_AVAILABLE = "not available"


@dataclass(frozen=True, slots=True)
class Truth:
    """Which of a party's regions the true flight crossed (ground track) or hit, in their
    territory (land or territorial sea), and when it last was over them (None if never)."""

    regions: tuple[str, ...]
    passed_s: float | None


def truth(trajectory: Trajectory, atlas: Atlas, party: Party,
          step_s: float = TRUTH_STEP_S) -> Truth:
    t = np.arange(0.0, trajectory.flight_time_s, step_s)
    t = np.append(t, trajectory.flight_time_s)
    lat, lon, _ = ecef_to_geodetic(trajectory.position_at(t))
    lat, lon = np.degrees(lat), np.degrees(lon)
    concern = set(AREA_OF_CONCERN.get(party, (party,)))
    over = np.zeros(t.shape, dtype=bool)
    names = set()      # a region's land and its territorial sea bear its name
    for r in atlas.regions:
        if r.kind not in TERRITORY_KINDS or r.party not in concern:
            continue
        inside = r.contains(lat, lon)
        if inside.any():
            names.add(r.name)
            over |= inside
    passed = float(t[np.flatnonzero(over)[-1]]) if over.any() else None
    return Truth(tuple(sorted(names)), passed)


def land_alerts(warnings: Iterable[Warning], land: Collection[str]) -> list[Warning]:
    """Alerts (not notices) issued or updated that named land (a region in ``land``; an alert
    for the party's EEZ alone is not a land alert)."""
    return [w for w in warnings if w.level == "alert" and w.action in ("issued", "updated")
            and any(r in land for r in w.regions)]


def passed_message_s(warnings: Iterable[Warning],
                     land: Collection[str] | None = None) -> float | None:
    """When the party said the missile had passed (an action or level named ``passed``);
    with ``land``, the message that said it had passed the last of the party's land it
    named, after the last land alert (not a stage's drop zone or the high seas, nor the first
    of several regions, nor a region passed before another was alerted). None if no such
    message (a region retracted because the track was lost, say)."""
    ws = list(warnings)
    since = max((w.at_s for w in land_alerts(ws, land)), default=-math.inf) if land else (
        -math.inf)
    for w in ws:
        if "passed" not in (str(w.action), str(w.level)) or w.at_s < since:
            continue
        if land is None or (any(r in land for r in w.regions)
                            and not any(r in land for r in w.active)):
            return w.at_s
    return None


def land_names(atlas: Atlas) -> frozenset[str]:
    return frozenset(r.name for r in atlas.regions if r.land)


def row_measures(warnings: Sequence[Warning], tr: Truth,
                 land: Collection[str]) -> dict[str, Any]:
    """The columns ``evaluate`` adds to each (launch, seed, regime, party) row; ``land``: the
    names of land regions (:func:`land_names`)."""
    alerts = land_alerts(warnings, land)
    alerted = sorted({r for w in alerts for r in w.regions if r in land})
    passed_msg = passed_message_s(warnings, land)
    return {
        "true_land_regions": "; ".join(tr.regions),
        "land_alert_regions": "; ".join(alerted),
        "first_land_alert_s": None if not alerts else round(alerts[0].at_s, 1),
        "alerted_right_regions": bool(tr.regions) and set(tr.regions) <= set(alerted),
        "missile_passed_s": None if tr.passed_s is None else round(tr.passed_s, 1),
        "passed_message_s": None if passed_msg is None else round(passed_msg, 1),
    }


def _median(xs: Sequence[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def seed_measures(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Measures over the launches of one seed, regime and party."""
    crossing = [r for r in rows if r["true_land_regions"]]
    clear = [r for r in rows if not r["true_land_regions"]]
    alerted = [r for r in crossing if r["first_land_alert_s"] is not None]
    right = [r for r in crossing if r["alerted_right_regions"]]
    times = [float(r["first_land_alert_s"]) for r in alerted]
    errors = [float(r["ipp_error_km"]) for r in rows if r.get("ipp_error_km") is not None]
    drops = [float(r["drop_error_km"]) for r in rows if r.get("drop_error_km") is not None]
    delays = [float(r["passed_message_s"]) - float(r["missile_passed_s"]) for r in crossing
              if r["passed_message_s"] is not None and r["missile_passed_s"] is not None]
    return {
        "launches": len(rows), "crossing": len(crossing),
        "recall": None if not crossing else len(alerted) / len(crossing),
        "recall_right_regions": None if not crossing else len(right) / len(crossing),
        "false_land_alerts": float(sum(r["first_land_alert_s"] is not None for r in clear)),
        "first_land_alert_median_s": _median(times),
        "first_land_alert_worst_s": max(times) if times else None,
        "impact_error_median_km": _median(errors),
        "impact_error_worst_km": round(max(errors), 1) if errors else None,
        "drop_error_median_km": _median(drops),
        "drop_error_worst_km": round(max(drops), 1) if drops else None,
        "passed_delay_median_s": _median(delays),
        "passed_delay_worst_s": max(delays) if delays else None,
    }


def interval(values: Sequence[float | None], upper: float = math.inf,
             lower: float = 0.0) -> dict[str, Any]:
    """Mean over seeds with a 95 % Student-t interval (None where a seed had no value),
    clipped to what the measure can be: [``lower``, ``upper``] (a passed message can come
    before the missile has passed: its delay has no lower bound)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "low": None, "high": None, "seeds": len(values)}
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return {"mean": round(mean, 4), "low": None, "high": None, "seeds": len(xs)}
    half = float(stdtrit(len(xs) - 1, 0.975)) * statistics.stdev(xs) / math.sqrt(len(xs))
    return {"mean": round(mean, 4), "low": round(max(lower, mean - half), 4),
            "high": round(min(upper, mean + half), 4), "seeds": len(xs)}


MEASURES = ("recall", "recall_right_regions", "false_land_alerts", "first_land_alert_median_s",
            "first_land_alert_worst_s", "impact_error_median_km", "impact_error_worst_km",
            "drop_error_median_km", "drop_error_worst_km", "passed_delay_median_s",
            "passed_delay_worst_s")


def summarise(rows: Sequence[Mapping[str, Any]], regimes: Sequence[str],
              parties: Sequence[Party]) -> dict[str, dict[str, dict[str, Any]]]:
    """regime → party → measure → interval over seeds (and ``per_seed``)."""
    seeds = sorted({int(r["seed"]) for r in rows})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for reg in regimes:
        out[reg] = {}
        for p in parties:
            per_seed = [seed_measures([r for r in rows if r["regime"] == reg
                                       and r["party"] == p and int(r["seed"]) == s])
                        for s in seeds]
            entry: dict[str, Any] = {
                m: interval([x[m] for x in per_seed], 1.0 if m.startswith("recall") else math.inf,
                            -math.inf if m.startswith("passed_delay") else 0.0)
                for m in MEASURES}
            entry["crossing"] = per_seed[0]["crossing"] if per_seed else 0
            entry["launches"] = per_seed[0]["launches"] if per_seed else 0
            if all(x["passed_delay_median_s"] is None for x in per_seed):
                entry["passed_delay_median_s"] = entry["passed_delay_worst_s"] = NOT_AVAILABLE
            out[reg][p] = entry
    return out
