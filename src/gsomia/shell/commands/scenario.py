"""``scenario run`` and ``evaluate``: replay real launches under each sharing regime."""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import click

from gsomia import bootstrap
from gsomia.core.errors import MalformedInput
from gsomia.core.scenario import Options, Result, Scenario, run
from gsomia.core.sharing import PARTIES, REGIMES, regime, restricted
from gsomia.core.tracking.launches import Launch
from gsomia.core.tracking.trajectory import Trajectory, fit
from gsomia.shell import feeds
from gsomia.shell.commands.common import emit_json

FIELDS = ("first_detection_s", "first_track_s", "first_ipp_s", "first_warning_s",
          "ipp_error_km")


# Evaluations measure first warnings, so they stop a picture four minutes after its first
# impact prediction and track at most 25 minutes of any flight (lofted ICBM flights last over
# an hour), and predict impacts every 10 s instead of 6 s. `scenario run` tracks whole flights.
EVALUATION = Options(ipp_interval_s=10.0, track_until_s=1500.0, settle_s=240.0)


def scenario_for(launch: Launch, trajectory: Trajectory, regime_name: str,
                 seed: int, options: Options | None = None) -> Scenario:
    reg = regime(regime_name)
    others = tuple(sorted({x.facility.id for x in feeds.load_launches()
                           if x.facility.id not in (launch.facility.id, "unknown")}))[:6]
    return Scenario(launch, trajectory, feeds.load_sensors(), feeds.load_geography(),
                    restricted(bootstrap.catalogue(), reg), reg, seed, others,
                    options or Options())


def run_one(launch: Launch, regime_name: str, seed: int,
            trajectory: Trajectory | None = None, *, options: Options | None = None,
            memo: dict[tuple[Any, ...], Any] | None = None) -> Result:
    if not launch.fittable:
        raise MalformedInput(f"launch {launch.id} has no recorded apogee and distance",
                             where="--launch", expected="a launch with apogee and distance")
    traj = trajectory or fit(launch.flight_request())
    return run(scenario_for(launch, traj, regime_name, seed, options), memo)


@lru_cache(maxsize=1)
def _fittable() -> tuple[Launch, ...]:
    return tuple(x for x in feeds.load_launches() if x.fittable)


def _evaluate_one(task: tuple[int, tuple[str, ...], int]) -> list[dict[str, Any]]:
    """One launch under every regime (runs in a worker process)."""
    index, regimes, seed = task
    launch = _fittable()[index]
    try:
        traj = fit(launch.flight_request())
    except MalformedInput as exc:
        return [{"launch": launch.id, "error": str(exc)}]
    rows = []
    memo: dict[tuple[Any, ...], Any] = {}
    for name in regimes:
        res = run_one(launch, name, seed, traj, options=EVALUATION, memo=memo)
        for p, o in res.parties.items():
            rows.append({
                "launch": launch.id, "date": launch.local_date.isoformat(),
                "missile": launch.missile.name, "class": launch.missile_class,
                "apogee_km": launch.apogee_km, "range_km": launch.distance_km,
                "flight_time_s": round(traj.flight_time_s, 1), "regime": name, "party": p,
                "cued": o.cued, **{f: None if getattr(o, f) is None else round(getattr(o, f), 1)
                                    for f in FIELDS},
                "warned_regions": "; ".join(sorted({r for w in o.warnings for r in w.regions})),
            })
    return rows


def summarise(rows: Sequence[dict[str, Any]], regimes: Sequence[str]) -> dict[str, Any]:
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


def _markdown(summary: dict[str, Any], regimes: Sequence[str], n: int, errors: int) -> str:
    lines = [f"# Warning times over {n} launches", "",
             f"Launches with recorded apogee and distance: {n} ({errors} could not be fitted).",
             "", "| party | " + " | ".join(f"{r}: warned / median s" for r in regimes) + " |",
             "|---|" + "---|" * len(regimes)]
    for p, e in summary.items():
        lines.append(f"| {p} | " + " | ".join(
            f"{e[r]['warned']} / {e[r]['median_warning_s']}" for r in regimes) + " |")
    lines += ["", "Gains of `direct` (seconds earlier, median over launches both warned):", "",
              "| party | vs | compared | median gain s | direct later | only direct warned |",
              "|---|---|---|---|---|---|"]
    for p, e in summary.items():
        for k, v in e.items():
            if k.startswith("direct_vs_"):
                lines.append(f"| {p} | {k[10:]} | {v['compared']} | {v['median_gain_s']} | "
                             f"{v['direct_later']} | {v['warned_only_under_direct']} |")
    return "\n".join(lines) + "\n"


def _plots(rows: Sequence[dict[str, Any]], regimes: Sequence[str], out: Path,
           example: Result | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, axes = plt.subplots(1, len(PARTIES), figsize=(4 * len(PARTIES), 4), sharey=True)
    for ax, p in zip(axes, PARTIES, strict=True):
        data = [[r["first_warning_s"] for r in rows if r.get("party") == p
                 and r["regime"] == reg and r["first_warning_s"] is not None] for reg in regimes]
        ax.boxplot([d or [float("nan")] for d in data], tick_labels=list(regimes))
        ax.set_title(f"{p}: first warning")
        ax.set_ylabel("seconds after launch")
    fig.tight_layout()
    fig.savefig(out / "warning-time-by-regime.png", dpi=110)
    plt.close(fig)
    made.append("warning-time-by-regime.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for reg in regimes:
        errs = sorted(r["ipp_error_km"] for r in rows if r.get("regime") == reg
                      and r.get("ipp_error_km") is not None)
        if errs:
            ax.plot(errs, [i / len(errs) for i in range(1, len(errs) + 1)], label=reg)
    ax.set_xscale("log")
    ax.set_xlabel("impact-point error at first warning (km)")
    ax.set_ylabel("share of warnings")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "impact-point-error.png", dpi=110)
    plt.close(fig)
    made.append("impact-point-error.png")
    if example is not None:
        made.append(plot_map(example, out / "launch-map.png"))
    return made


def plot_map(res: Result, path: Path) -> str:
    """A map of one launch: ground track, sensors, impact predictions and regions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res.scenario
    fig, ax = plt.subplots(figsize=(8, 6))
    for region in s.atlas.regions:
        for ring in region.rings:
            ax.plot(ring[:, 0], ring[:, 1], lw=0.4,
                    color="#888" if region.land else "#bcd", zorder=1)
    lats, lons = s.trajectory.ground_track(128)
    ax.plot(lons, lats, color="crimson", lw=2, label="trajectory", zorder=3)
    colours = {"JPN": "tab:red", "KOR": "tab:blue", "USA": "tab:green"}
    for sensor in s.sensors:
        if sensor.platform != "satellite":
            ax.scatter(sensor.lon_deg, sensor.lat_deg, marker="^", s=30,
                       color=colours.get(sensor.owner, "k"), zorder=4)
    for p, preds in res.predictions.items():
        if preds:
            ax.scatter([g.lon_deg for _, _, g in preds], [g.lat_deg for _, _, g in preds], s=6,
                       color=colours[p], alpha=0.5, label=f"{p} impact predictions", zorder=2)
    ax.scatter(s.trajectory.impact_lon_deg, s.trajectory.impact_lat_deg, marker="x", s=80,
               color="k", label="impact", zorder=5)
    ax.set_xlim(min(lons.min(), 123) - 2, max(lons.max(), 146) + 2)
    ax.set_ylim(min(lats.min(), 30) - 2, max(lats.max(), 46) + 2)
    ax.set_title(f"{s.launch.missile.name} {s.launch.local_date} ({s.regime.name})")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def register(cli: click.Group) -> None:
    @cli.group("scenario")
    def scenario() -> None:
        """Replay one real launch through sensors, trackers, sharing and warnings."""

    @scenario.command("run")
    @click.option("--launch", "day", required=True, metavar="DATE",
                  help="Launch date (UTC or Korea/Japan local), e.g. 2017-08-29.")
    @click.option("--index", type=int, default=None, help="Which launch of that day (0-based).")
    @click.option("--regime", "regime_name", required=True,
                  type=click.Choice(list(REGIMES)), help="Sharing regime.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
    def scenario_run(day: str, index: int | None, regime_name: str, seed: int,
                     as_json: bool) -> None:
        """Who detects, tracks, predicts and warns, and when (seconds after launch)."""
        res = run_one(feeds.find_launch(day, index), regime_name, seed)
        doc = res.to_json()
        if as_json:
            emit_json(doc)
            return
        t = doc["truth"]
        click.echo(f"{doc['launch']['missile']} {doc['launch']['date']} — regime "
                   f"{regime_name}: flight {t['flight_time_s']} s, apogee {t['apogee_km']} km, "
                   f"range {t['range_km']} km")
        for p, o in doc["parties"].items():
            click.echo(f"  {p}: " + ", ".join(f"{f.removesuffix('_s')} {o[f]}" for f in FIELDS))
            for w in o["warnings"]:
                click.echo(f"      {w['at_s']:>7} s  {w['action']:<9} {', '.join(w['regions'])}")

    @cli.command("evaluate")
    @click.option("--regimes", default="none,hub,direct,trilateral", show_default=True)
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--limit", type=int, default=None, help="Only the first N launches.")
    @click.option("--every", type=int, default=1, show_default=True,
                  help="Only every Kth launch (a spread sample of the data set).")
    @click.option("--jobs", type=int, default=os.cpu_count() or 1, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def evaluate(regimes: str, out_dir: str, seed: int, limit: int | None, every: int,
                 jobs: int, as_json: bool) -> None:
        """Every launch with apogee and distance under each regime: CSV, summary, plots."""
        from rich.progress import Progress

        names = tuple(dict.fromkeys(r.strip() for r in regimes.split(",") if r.strip()))
        if not names:
            raise MalformedInput("no regime given", where="--regimes",
                                 expected="a comma-separated list of " + ", ".join(REGIMES))
        for n in names:
            regime(n, where="--regimes")
        if every < 1:
            raise MalformedInput(f"{every} is not a sampling step", where="--every",
                                 expected="a whole number of at least 1")
        if limit is not None and limit < 1:
            # a negative slice bound would quietly drop launches from the end instead
            raise MalformedInput(f"{limit} is not a number of launches", where="--limit",
                                 expected="a whole number of at least 1")
        picked = [i for i in range(len(_fittable())) if i % every == 0][:limit]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        tasks = [(i, names, seed) for i in picked]
        with Progress(transient=True, disable=as_json) as bar, \
                ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            job = bar.add_task(f"{len(picked)} launches × {len(names)} regimes",
                               total=len(tasks))
            for got in pool.map(_evaluate_one, tasks, chunksize=1):
                rows.extend(got)
                bar.advance(job)
        errors = [r for r in rows if "error" in r]
        good = [r for r in rows if "party" in r]
        with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(good[0]) if good else ["launch"])
            writer.writeheader()
            writer.writerows(good)
        summary = summarise(good, names)
        example_launch = feeds.find_launch("2017-08-29")
        example = run_one(example_launch, "direct", seed) if "direct" in names else None
        plots = _plots(good, names, out, example)
        count = len(picked)
        (out / "summary.md").write_text(_markdown(summary, names, count, len(errors)), "utf-8")
        (out / "summary.json").write_text(json.dumps(
            {"launches": count, "unfitted": [e["launch"] for e in errors], "summary": summary},
            indent=2), "utf-8")
        if as_json:
            emit_json({"launches": count, "summary": summary, "out": str(out), "plots": plots})
        else:
            click.echo((out / "summary.md").read_text("utf-8"))
            click.echo(f"wrote {out}/results.csv, summary.md, summary.json, "
                       + ", ".join(plots))
