"""The scenario runner: real launches replayed under a sharing regime, with the shipped
sensors and territory and the agreements it is built with.

Built by :func:`gsomia.bootstrap.scenario_runner` (the agreements in effect for the process);
``scenario run``, ``evaluate``, ``demo``, ``report`` and the dashboard's replay use it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gsomia.core import measures
from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.scenario import Options, Result, Scenario, run
from gsomia.core.sharing import regime, restricted
from gsomia.core.tracking.launches import Launch
from gsomia.core.tracking.trajectory import Trajectory, fit
from gsomia.core.types import PARTIES
from gsomia.core.warning import Warning
from gsomia.shell import feeds

__all__ = ["DEMO", "EVALUATION", "FIELDS", "ModelRuns", "ScenarioRunner", "evaluation_row",
           "fittable_launches", "warning_summary"]

FIELDS = ("first_detection_s", "first_track_s", "first_ipp_s", "first_warning_s",
          "ipp_error_km", "drop_error_km")

# Evaluations measure first warnings, so they stop a picture four minutes after its first
# impact prediction and track at most 25 minutes of any flight (lofted ICBM flights last over
# an hour), and predict impacts every 10 s instead of 6 s. `scenario run` tracks whole flights.
EVALUATION = Options(ipp_interval_s=10.0, track_until_s=1500.0, settle_s=240.0)
# The demo and the report replay a launch as an evaluation does, but predict impacts as often
# as `scenario run` (every 6 s), so that both print the same times for a launch, regime and
# seed (tests/e2e/test_demo.py checks it for the default launch).
DEMO = replace(EVALUATION, ipp_interval_s=Options().ipp_interval_s)


def fittable_launches() -> tuple[Launch, ...]:
    """The launches of the data set with a recorded apogee and distance, in data-set order."""
    return tuple(x for x in feeds.load_launches() if x.fittable)


@dataclass(frozen=True, slots=True)
class ModelRuns:
    """One launch replayed by the scenario model under several regimes (one memo, so each
    party's own picture is computed once)."""

    launch: Launch
    trajectory: Trajectory
    results: dict[str, Result]
    memo: dict[tuple[Any, ...], Any]

    def story(self) -> dict[str, Any]:
        """The replay as ``demo`` and ``report`` tell it: the launch, each regime's outcome,
        and the map."""
        from gsomia.shell.report import map_data

        return {"launch": self.launch.to_json(), "when": self.launch.when(),
                "flight_time_s": round(self.trajectory.flight_time_s, 1),
                "regimes": {name: res.to_json() for name, res in self.results.items()},
                "map": map_data(self.results, self.trajectory, feeds.load_sensors())}


@dataclass(frozen=True, slots=True)
class ScenarioRunner:
    """Replays launches under the agreements of ``catalogue`` (restricted to each regime's)."""

    catalogue: Catalogue

    def scenario_for(self, launch: Launch, trajectory: Trajectory, regime_name: str,
                     seed: int, options: Options | None = None) -> Scenario:
        reg = regime(regime_name)
        others = tuple(sorted({x.facility.id for x in feeds.load_launches()
                               if x.facility.id not in (launch.facility.id, "unknown")}))[:6]
        return Scenario(launch, trajectory, feeds.load_sensors(), feeds.load_geography(),
                        restricted(self.catalogue, reg), reg, seed, others,
                        options or Options())

    def run_one(self, launch: Launch, regime_name: str, seed: int,
                trajectory: Trajectory | None = None, *, options: Options | None = None,
                memo: dict[tuple[Any, ...], Any] | None = None) -> Result:
        if not launch.fittable:
            raise MalformedInput(f"launch {launch.id} has no recorded apogee and distance",
                                 where="launch", expected="a launch with apogee and distance")
        traj = trajectory or fit(launch.flight_request())
        return run(self.scenario_for(launch, traj, regime_name, seed, options), memo)

    def replay(self, launch: Launch, seed: int, regimes: Sequence[str], *,
               on_regime: Callable[[], None] = lambda: None,
               options: Options = EVALUATION) -> ModelRuns:
        """``launch`` under each of ``regimes`` as an evaluation runs it, one trajectory and
        one memo for all; ``on_regime`` is called as each is done."""
        trajectory = fit(launch.flight_request())
        memo: dict[tuple[Any, ...], Any] = {}
        results: dict[str, Result] = {}
        for name in regimes:
            results[name] = self.run_one(launch, name, seed, trajectory, options=options,
                                         memo=memo)
            on_regime()
        return ModelRuns(launch, trajectory, results, memo)

    def evaluate_launch(self, launch: Launch, regimes: tuple[str, ...],
                        seeds: tuple[int, ...]) -> list[dict[str, Any]]:
        """One launch under every regime and seed, one row per party: the trajectory is
        fitted once, and what is true of the flight for each party is computed once."""
        try:
            traj = fit(launch.flight_request())
        except MalformedInput as exc:
            return [{"launch": launch.id, "error": str(exc)}]
        if not seeds:       # evaluate --seeds 0: only whether it fits (its `unfitted` list)
            return []
        atlas = feeds.load_geography()
        truths = {p: measures.truth(traj, atlas, p) for p in PARTIES}
        land = measures.land_names(atlas)
        rows = []
        for seed in seeds:
            memo: dict[tuple[Any, ...], Any] = {}
            for name in regimes:
                res = self.run_one(launch, name, seed, traj, options=EVALUATION, memo=memo)
                for p, o in res.parties.items():
                    rows.append(evaluation_row(
                        launch, traj, name, p, seed, o.cued,
                        {f: getattr(o, f) for f in FIELDS}, o.warnings, truths[p], land))
        return rows


def evaluation_row(launch: Launch, trajectory: Trajectory, regime_name: str, party: str,
                   seed: int, cued: bool, figures: Mapping[str, Any],
                   warnings: Sequence[Warning], truth: measures.Truth,
                   land: Collection[str]) -> dict[str, Any]:
    """One row of ``evaluate``'s ``results.csv``: a party's outcome of one launch, regime and
    seed (``figures``: :data:`FIELDS`), from the model or measured at a federation's node."""
    return {
        "launch": launch.id, "date": launch.local_date.isoformat(),
        "missile": launch.missile.name, "class": launch.missile_class,
        "apogee_km": launch.apogee_km, "range_km": launch.distance_km,
        "flight_time_s": round(trajectory.flight_time_s, 1), "regime": regime_name,
        "party": party, "seed": seed, "cued": cued,
        **{f: None if figures.get(f) is None else round(float(figures[f]), 1)
           for f in FIELDS},
        "warned_regions": "; ".join(sorted({r for w in warnings for r in w.regions})),
        **measures.row_measures(warnings, truth, land),
    }


def warning_summary(rows: Sequence[dict[str, Any]], regimes: Sequence[str]) -> dict[str, Any]:
    """Per party: how many launches each regime warned, median warning time, median gains."""
    by: dict[tuple[str, str, str], float | None] = {
        (r["launch"], r["regime"], r["party"]): r["first_warning_s"] for r in rows if "party" in r}
    launches = sorted({r["launch"] for r in rows if "party" in r})
    out: dict[str, Any] = {}
    for p in PARTIES:
        entry: dict[str, Any] = {}
        for reg in regimes:
            times = [t for x in launches if (t := by.get((x, reg, p))) is not None]
            entry[reg] = {"warned": len(times),
                          "median_warning_s": round(statistics.median(times), 1) if times
                          else None}
        if "direct" in regimes:
            for ref in [r for r in regimes if r != "direct"]:
                gains, later, only = [], 0, 0
                for x in launches:
                    d, o = by.get((x, "direct", p)), by.get((x, ref, p))
                    if d is not None and o is not None:
                        gains.append(o - d)
                        later += d > o + 1e-6
                    elif d is not None:
                        only += 1
                    elif o is not None:
                        later += 1
                entry[f"direct_vs_{ref}"] = {
                    "compared": len(gains),
                    "median_gain_s": round(statistics.median(gains), 1) if gains else None,
                    "direct_later": later, "warned_only_under_direct": only}
        out[p] = entry
    return out
