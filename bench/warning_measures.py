"""Land-alert measures against the true path: recall, false alerts, first-alert time, impact
error at first warning, per regime and party.

    PYTHONPATH=src python -m bench.warning_measures --every 8 --out /tmp/measures.json

Each launch with apogee and distance (every K-th of them, plus the Hokkaido overflights and the
lofted ICBMs named below) runs through ``core.scenario.run`` under every regime with the
evaluation's options. A party's land is threatened when the true ground track (launch to
impact, densified to 5 km) or the impact lies on the land of its area of concern; a land alert
is a warning at level ``alert``. Recall: threatened launches with a land alert naming every
region the true path crosses. False: land alerts on launches whose true path stays at sea.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from gsomia.bootstrap import scenario_runner
from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.geography import regions_overflown
from gsomia.core.tracking.trajectory import fit
from gsomia.core.types import PARTIES
from gsomia.core.warning import AREA_OF_CONCERN
from gsomia.shell import feeds
from gsomia.shell.scenarios import EVALUATION, fittable_launches

REGIMES = ("none", "hub", "direct", "trilateral")
NAMED = ("2017-08-29", "2017-09-15", "2022-10-04", "2023-04-13", "2022-11-03")


def _one(index: int) -> list[dict[str, Any]]:
    launch = fittable_launches()[index]
    try:
        traj = fit(launch.flight_request())
    except MalformedInput as exc:
        return [{"launch": launch.id, "error": str(exc)}]
    atlas = feeds.load_geography()
    lats, lons = traj.ground_track(256)
    rows = []
    memo: dict[tuple[Any, ...], Any] = {}
    for reg in REGIMES:
        t0 = time.perf_counter()
        res = scenario_runner().run_one(launch, reg, 0, traj, options=EVALUATION, memo=memo)
        took = time.perf_counter() - t0
        for p, o in res.parties.items():
            concern = AREA_OF_CONCERN[p]
            truth = sorted(r.name for r in regions_overflown(atlas, lats, lons,
                                                              parties=concern))
            alerts = [w for w in o.warnings if w.level == "alert"
                      and w.action in ("issued", "updated")]
            alerted = sorted({r for w in alerts for r in w.regions})
            first_alert = min((w.at_s for w in alerts), default=None)
            rows.append({
                "launch": launch.id, "date": launch.local_date.isoformat(),
                "class": launch.missile_class, "apogee_km": launch.apogee_km,
                "range_km": launch.distance_km, "flight_time_s": round(traj.flight_time_s, 1),
                "regime": reg, "party": p, "truth_land": truth, "alerted": alerted,
                "first_alert_s": first_alert, "first_warning_s": o.first_warning_s,
                "ipp_error_km": o.ipp_error_km,
                "passed": any(w.action == "passed" for w in o.warnings),
                "seconds": round(took, 2)})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for reg in REGIMES:
        for p in PARTIES:
            rs = [r for r in rows if r.get("regime") == reg and r.get("party") == p]
            threatened = [r for r in rs if r["truth_land"]]
            hit = [r for r in threatened if r["first_alert_s"] is not None
                   and set(r["truth_land"]) <= set(r["alerted"])]
            false = [r for r in rs if not r["truth_land"] and r["first_alert_s"] is not None]
            times = [r["first_alert_s"] for r in threatened if r["first_alert_s"] is not None]
            errs = [r["ipp_error_km"] for r in rs if r["ipp_error_km"] is not None]
            out[f"{reg}/{p}"] = {
                "threatened": len(threatened), "recalled": len(hit),
                "missed": [r["launch"] for r in threatened if r not in hit],
                "false_alerts": [r["launch"] for r in false],
                "median_first_alert_s": round(statistics.median(times), 1) if times else None,
                "worst_first_alert_s": round(max(times), 1) if times else None,
                "median_ipp_error_km": round(statistics.median(errs), 1) if errs else None,
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only-named", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    fittable = fittable_launches()
    named = set()
    for day in NAMED:
        launch = feeds.find_launch(day, 0)
        named.add(fittable.index(launch))
    picked = sorted(named | (set() if args.only_named else
                             set(range(0, len(fittable), args.every))))
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for got in pool.map(_one, picked, chunksize=1):
            rows.extend(got)
    summary = summarise(rows)
    focus = [r for r in rows if r.get("date") in NAMED]
    doc = {"launches": len(picked), "wall_s": round(time.perf_counter() - t0, 1),
           "summary": summary, "named": focus, "rows": rows}
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, default=float)
    for k, v in summary.items():
        print(k, json.dumps(v))
    for r in focus:
        if r["party"] == "JPN" or r["class"] == "ICBM":
            print(r["date"], r["regime"], r["party"], "truth", r["truth_land"], "alerted",
                  r["alerted"], "first_alert", r["first_alert_s"], "first_warning",
                  r["first_warning_s"], "ipp_err", None if r["ipp_error_km"] is None
                  else round(r["ipp_error_km"], 1))
    print("wall", doc["wall_s"], "s for", len(picked), "launches")


if __name__ == "__main__":
    main()
