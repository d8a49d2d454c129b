"""``scenario run`` and ``evaluate``: replay real launches under each sharing regime."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gsomia import bootstrap
from gsomia.core import measures
from gsomia.core.errors import MalformedInput
from gsomia.core.scenario import Result
from gsomia.core.sharing import REGIMES, regime
from gsomia.core.tracking.launches import Launch
from gsomia.core.types import PARTIES
from gsomia.shell import feeds
from gsomia.shell.commands.common import emit_json
from gsomia.shell.scenarios import FIELDS, fittable_launches, warning_summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FEDERATION_SPEED = 10.0   # as scenario run --federation


def check_federation_flags(through_federation: bool, jobs: int | None,
                           speed: float | None) -> None:
    if through_federation and jobs is not None:
        raise MalformedInput("--jobs with --federation", where="--jobs",
                             expected="no --jobs: the federations run one after another "
                                      "(each is three node processes)")
    if not through_federation and speed is not None:
        raise MalformedInput("--speed without --federation", where="--speed",
                             expected="--federation (the model has no real time)")


@lru_cache(maxsize=1)
def _fittable() -> tuple[Launch, ...]:
    return fittable_launches()


def _evaluate_one(task: tuple[int, tuple[str, ...], tuple[int, ...]]) -> list[dict[str, Any]]:
    """One launch under every regime and seed, in a worker process of ``evaluate``."""
    index, regimes, seeds = task
    return bootstrap.scenario_runner().evaluate_launch(_fittable()[index], regimes, seeds)


def _on_days(days: Sequence[str]) -> list[int]:
    """Indices of the fittable launches of each date (UTC or local), refusing a date with
    none."""
    from gsomia.core.tracking.launches import on_date

    picked: set[int] = set()
    launches = _fittable()
    for day in days:
        feeds.find_launch(day)      # a clear error for a malformed date or a date without one
        found = {x.id for x in on_date(launches, date.fromisoformat(day.strip()))}
        if not found:
            raise MalformedInput(f"no launch with apogee and distance on {day}",
                                 where="--launch", expected="a date of such a launch")
        picked |= {i for i, x in enumerate(launches) if x.id in found}
    return sorted(picked)


_NUMBERS = ("apogee_km", "range_km", "flight_time_s", *FIELDS, "first_land_alert_s",
            "missile_passed_s", "passed_message_s")
_FLAGS = ("cued", "alerted_right_regions")


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier ``evaluate``'s ``results.csv``, typed as ``_evaluate_one``
    made them (so that seeds run one at a time can be summarised together)."""
    where = f"--add-results {path}"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            raw = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MalformedInput(f"cannot read {path}: {exc}", where=where,
                             expected="a results.csv written by gsomia evaluate") from None
    need = {"launch", "regime", "party", "seed", *_NUMBERS, *_FLAGS, "true_land_regions"}
    rows = []
    for n, r in enumerate(raw, start=2):
        missing = sorted(k for k in need if r.get(k) is None)
        if missing:
            raise MalformedInput(f"line {n} has no {', '.join(missing)}", where=where,
                                 expected="a results.csv written by gsomia evaluate")
        try:
            row: dict[str, Any] = {**r, "seed": int(r["seed"])}
            for k in _NUMBERS:
                row[k] = float(r[k]) if r[k] != "" else None
        except ValueError:
            raise MalformedInput(f"line {n}: a seed or a number does not parse", where=where,
                                 expected="a results.csv written by gsomia evaluate") from None
        for k in _FLAGS:
            if r[k] not in ("True", "False"):
                raise MalformedInput(f"line {n}: {k} is {r[k]!r}", where=where,
                                     expected="True or False")
            row[k] = r[k] == "True"
        rows.append(row)
    return rows


def _markdown(summary: dict[str, Any], regimes: Sequence[str], n: int, errors: int,
              federation_speed: float | None = None) -> str:
    lines = [f"# Warning times over {n} launches", "",
             f"Launches with recorded apogee and distance: {n} ({errors} could not be fitted).",
             *(["", f"Measured at the nodes of each regime's real federation (loopback), the "
                    f"sensors played at {federation_speed:g}x real time."]
               if federation_speed is not None else []),
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
    import matplotlib.pyplot as plt

    fig = map_figure(res)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def map_figure(res: Result) -> Figure:
    """The figure :func:`plot_map` saves (open: the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    s = res.scenario
    fig, ax = plt.subplots(figsize=(8, 6))
    # The outlines of the atlas (a thousand rings) as one collection, in the atlas's order:
    # a line each took half the map's plotting time (0.5 s of CPU per evaluate).
    rings = [(ring[:, :2], "#888" if region.land else "#bcd")
             for region in s.atlas.regions for ring in region.rings]
    ax.add_collection(LineCollection([r for r, _ in rings], colors=[c for _, c in rings],
                                     linewidths=0.4, zorder=1, capstyle="projecting",
                                     joinstyle="round"), autolim=False)
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
    return fig


def _example_map(seed: int, path: str) -> str:
    """The map of the 2017-08-29 launch under ``direct`` (runs in a worker process)."""
    return plot_map(bootstrap.scenario_runner().run_one(feeds.find_launch("2017-08-29"),
                                                        "direct", seed), Path(path))


def _fmt(m: dict[str, Any] | str, scale: float = 1.0, unit: str = "") -> str:
    if isinstance(m, str):
        return m
    if m["mean"] is None:
        return "–"
    mean = m["mean"] * scale
    if m["low"] is None:
        return f"{mean:.1f}{unit}"
    return f"{mean:.1f}{unit} [{m['low'] * scale:.1f}, {m['high'] * scale:.1f}]"


def _measures_markdown(measured: dict[str, dict[str, dict[str, Any]]], regimes: Sequence[str],
                       seeds: Sequence[int]) -> str:
    lines = ["", f"## Land alerts against the true flight ({len(seeds)} seed"
             f"{'s' if len(seeds) != 1 else ''}: mean [95% interval])", "",
             "Crossing: launches whose true ground track or impact is on the party's "
             "territory, its land or territorial sea (the USA: Japan's and Korea's). Recall: "
             "share of those alerted; right regions: alerted naming every region crossed. "
             "False: land alerts for launches that crossed none of the party's territory. "
             "Impact error: the first impact a warning stated, against the true fall of the "
             "object it was about (the missile, or a spent stage the radars saw first); space "
             "launches apart, as a drop error (they have no single impact point).", "",
             "| regime | party | crossing | recall % | right regions % | false land alerts | "
             "first alert median s | first alert worst s | impact error median km | "
             "space launch drop error median / worst km | passed → message s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for reg in regimes:
        for p, e in measured[reg].items():
            lines.append(
                f"| {reg} | {p} | {e['crossing']} | {_fmt(e['recall'], 100)} | "
                f"{_fmt(e['recall_right_regions'], 100)} | {_fmt(e['false_land_alerts'])} | "
                f"{_fmt(e['first_land_alert_median_s'])} | "
                f"{_fmt(e['first_land_alert_worst_s'])} | "
                f"{_fmt(e['impact_error_median_km'])} | "
                f"{_fmt(e['drop_error_median_km'])} / {_fmt(e['drop_error_worst_km'])} | "
                f"{_fmt(e['passed_delay_median_s'])} |")
    return "\n".join(lines) + "\n"


def _measure_plots(measured: dict[str, dict[str, dict[str, Any]]], regimes: Sequence[str],
                   out: Path) -> list[str]:
    """One bar chart per measure: regimes side by side per party, 95% intervals as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = (("recall", "land-alert recall (%)", 100.0, "measure-recall.png"),
              ("false_land_alerts", "false land alerts (launches)", 1.0,
               "measure-false-alerts.png"),
              ("first_land_alert_median_s", "first land alert, median (s after launch)", 1.0,
               "measure-first-alert-median.png"),
              ("first_land_alert_worst_s", "first land alert, worst (s after launch)", 1.0,
               "measure-first-alert-worst.png"),
              ("impact_error_median_km", "impact error at first warning, median (km)", 1.0,
               "measure-impact-error.png"),
              ("drop_error_median_km", "space launches: drop error at first warning, "
               "median (km)", 1.0, "measure-drop-error.png"),
              ("passed_delay_median_s", "missile passed → 'passed' message, median (s)", 1.0,
               "measure-passed-delay.png"))
    made = []
    for key, label, scale, name in charts:
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.8 / max(1, len(regimes))
        missing = True
        for k, reg in enumerate(regimes):
            xs, ys, lo, hi = [], [], [], []
            for j, p in enumerate(PARTIES):
                m = measured[reg][p][key]
                if isinstance(m, str) or m["mean"] is None:
                    continue
                missing = False
                xs.append(j + (k - (len(regimes) - 1) / 2) * width)
                ys.append(m["mean"] * scale)
                lo.append(m["mean"] * scale - (m["low"] if m["low"] is not None
                                               else m["mean"]) * scale)
                hi.append((m["high"] if m["high"] is not None else m["mean"]) * scale
                          - m["mean"] * scale)
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=reg)
        ax.set_xticks(range(len(PARTIES)), list(PARTIES))
        ax.set_ylabel(label)
        if missing:
            ax.text(0.5, 0.5, measures.NOT_AVAILABLE, transform=ax.transAxes, ha="center",
                    va="center", fontsize=14, color="grey")
        else:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


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
    @click.option("--federation", "through_federation", is_flag=True,
                  help="Through the regime's real three-node federation on loopback: every "
                       "party's sensors played into its node, which tracks, shares and warns.")
    @click.option("--speed", type=click.FloatRange(min=0.0, min_open=True), default=10.0,
                  show_default=True, metavar="X",
                  help="With --federation: X times faster than real time.")
    @click.option("--until", "until_s", type=click.FloatRange(min=0.0, min_open=True),
                  default=None, metavar="S",
                  help="With --federation: play the sensors until S seconds of flight "
                       "(default: the whole flight).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
    def scenario_run(day: str, index: int | None, regime_name: str, seed: int,
                     through_federation: bool, speed: float, until_s: float | None,
                     as_json: bool) -> None:
        """Who detects, tracks, predicts and warns, and when (seconds after launch)."""
        if until_s is not None and not through_federation:
            raise MalformedInput("--until without --federation", where="--until",
                                 expected="--federation (the model replays the whole flight)")
        launch = feeds.find_launch(day, index)
        if through_federation:
            from gsomia.shell.federated_scenario import run_federated

            doc = run_federated(day, index, regime_name, seed, speed, bootstrap.open_node,
                                until_s=until_s)
        else:
            doc = bootstrap.scenario_runner().run_one(launch, regime_name, seed).to_json()
        if as_json:
            emit_json(doc)
            return
        t = doc["truth"]
        click.echo(f"{launch.missile.name}, {launch.when()} — regime {regime_name}, seed "
                   f"{seed}: flight {t['flight_time_s']} s, apogee {t['apogee_km']} km, "
                   f"range {t['range_km']} km")
        for p, o in doc["parties"].items():
            # a drop error is a space launch's alone: left out where it cannot be
            click.echo(f"  {p}: " + ", ".join(f"{f.removesuffix('_s')} {o[f]}" for f in FIELDS
                                              if f != "drop_error_km" or o[f] is not None))
            for w in o["warnings"]:
                click.echo(f"      {w['at_s']:>7} s  {w['action']:<9} {', '.join(w['regions'])}")
        for link, figures in doc.get("links", {}).items():
            click.echo(f"  {link}: {figures['items']} items, delivered p50 "
                       f"{figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")

    @cli.command("evaluate")
    @click.option("--regimes", default="none,hub,direct,trilateral", show_default=True)
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
    @click.option("--seed", type=int, default=0, show_default=True, help="The first seed.")
    @click.option("--seeds", "n_seeds", type=int, default=1, show_default=True,
                  help="Run seeds SEED … SEED+K-1; measures get 95% intervals over them.")
    @click.option("--limit", type=int, default=None, help="Only the first N launches.")
    @click.option("--every", type=int, default=1, show_default=True,
                  help="Only every Kth launch (a spread sample of the data set).")
    @click.option("--launch", "days", multiple=True,
                  help="Also the launches of this date (UTC or Korean/Japanese; with "
                       "--every 1 and no --limit: only them). Repeatable.")
    @click.option("--jobs", type=int, default=None,
                  help="Worker processes (default: one per CPU); not with --federation.")
    @click.option("--federation", "through_federation", is_flag=True,
                  help="Each launch through the regime's real three-node federation on "
                       "loopback, as scenario run --federation: one after another.")
    @click.option("--speed", type=click.FloatRange(min=0.0, min_open=True), default=None,
                  metavar="X", help="With --federation: X times faster than real time "
                                    "(default 10).")
    @click.option("--add-results", "added", multiple=True, type=click.Path(dir_okay=False),
                  help="Fold in the rows of an earlier run's results.csv (other seeds, same "
                       "launches), so that seeds can run one at a time. Repeatable.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def evaluate(regimes: str, out_dir: str, seed: int, n_seeds: int, limit: int | None,
                 every: int, days: tuple[str, ...], jobs: int | None,
                 through_federation: bool, speed: float | None, added: tuple[str, ...],
                 as_json: bool) -> None:
        """Every launch with apogee and distance under each regime: CSV, summary, plots."""
        from rich.progress import Progress

        names = tuple(dict.fromkeys(r.strip() for r in regimes.split(",") if r.strip()))
        if not names:
            raise MalformedInput("no regime given", where="--regimes",
                                 expected="a comma-separated list of " + ", ".join(REGIMES))
        for n in names:
            regime(n, where="--regimes")
        check_federation_flags(through_federation, jobs, speed)
        through = "federation" if through_federation else "model"
        if every < 1:
            raise MalformedInput(f"{every} is not a sampling step", where="--every",
                                 expected="a whole number of at least 1")
        if limit is not None and limit < 1:
            # a negative slice bound would quietly drop launches from the end instead
            raise MalformedInput(f"{limit} is not a number of launches", where="--limit",
                                 expected="a whole number of at least 1")
        if n_seeds < (0 if added else 1):
            raise MalformedInput(f"{n_seeds} is not a number of seeds", where="--seeds",
                                 expected="a whole number of at least 1 (0 only with "
                                          "--add-results: summarise those alone)")
        seeds = tuple(range(seed, seed + n_seeds))
        picked = [i for i in range(len(_fittable())) if i % every == 0][:limit]
        if days:
            on_days = _on_days(days)
            sampled = every > 1 or limit is not None
            picked = sorted({*picked, *on_days}) if sampled else on_days
        earlier = [r for path in added for r in read_results(Path(path))
                   if r["regime"] in names]
        if added and not earlier:
            raise MalformedInput("the added results hold no row of these regimes",
                                 where="--add-results", expected="rows of " + ", ".join(names))
        if any((r.get("through") or "model") != through for r in earlier):
            raise MalformedInput("the added results were measured another way than this run "
                                 "(the model and a federation do not mix)",
                                 where="--add-results",
                                 expected="rows of evaluate" + (" --federation" if
                                                                through_federation else ""))
        keys = [(r["launch"], r["seed"], r["regime"], r["party"]) for r in earlier]
        if len(set(keys)) != len(keys):
            raise MalformedInput("the added results hold a launch, seed, regime and party "
                                 "twice", where="--add-results",
                                 expected="each seed's results once")
        covered = {s: {r["launch"] for r in earlier if r["seed"] == s}
                   for s in {r["seed"] for r in earlier}}
        if earlier:
            ours = {_fittable()[i].id for i in picked}
            theirs = next(iter(covered.values()))
            if not theirs <= ours or any(c != theirs for c in covered.values()):
                raise MalformedInput(
                    f"the added results cover other launches than this run's {len(ours)}",
                    where="--add-results",
                    expected="results of the same launches (same --every and --limit) for "
                             "every seed")
            clash = sorted(set(covered) & set(seeds))
            if clash:
                raise MalformedInput(f"seed {clash[0]} is both added and run",
                                     where="--add-results", expected="other seeds than --seed")
        every_seed = tuple(sorted({*seeds, *covered}))
        first = every_seed[0]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        # longest flights first, so that no worker is left with one at the end
        launches = _fittable()
        tasks = sorted(((i, names, seeds) for i in picked),
                       key=lambda t: -(launches[t[0]].distance_km or 0.0)
                       - 3.0 * (launches[t[0]].apogee_km or 0.0))
        runs: list[dict[str, Any]] = []
        made_map = None
        if through_federation:
            from gsomia.shell.federated_scenario import evaluate_federated

            with Progress(transient=True, disable=as_json) as bar:
                job = bar.add_task(f"{len(picked)} launches × {len(names)} regimes × "
                                   f"{len(seeds)} seeds through federations",
                                   total=len(picked) * len(names) * len(seeds))
                rows, runs = evaluate_federated([launches[i] for i in picked], names, seeds,
                                                speed or FEDERATION_SPEED, bootstrap.open_node,
                                                on_run=lambda: bar.advance(job))
        else:
            with Progress(transient=True, disable=as_json) as bar, \
                    ProcessPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
                example = (pool.submit(_example_map, first, str(out / "launch-map.png"))
                           if "direct" in names else None)
                job = bar.add_task(f"{len(picked)} launches × {len(names)} regimes × "
                                   f"{len(seeds)} seeds", total=len(tasks))
                done: dict[int, list[dict[str, Any]]] = {}
                for task, got in zip(tasks, pool.map(_evaluate_one, tasks, chunksize=1),
                                     strict=True):
                    done[task[0]] = got
                    bar.advance(job)
                for i in picked:
                    rows.extend(done[i])
                made_map = example.result() if example is not None else None
        errors = [r for r in rows if "error" in r]
        good = [r for r in rows if "party" in r]
        if good and earlier and {r["launch"] for r in good} != next(iter(covered.values())):
            raise MalformedInput("the added results cover other launches than this run",
                                 where="--add-results",
                                 expected="results of the same launches (same --every and "
                                          "--limit)")
        good += earlier
        with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(good[0]) if good else ["launch"])
            writer.writeheader()
            writer.writerows(good)
        summary = warning_summary([r for r in good if r["seed"] == first], names)
        measured = measures.summarise(good, names, PARTIES)
        plots = _plots([r for r in good if r["seed"] == first], names, out, None)
        plots += _measure_plots(measured, names, out)
        if made_map:
            plots.append(made_map)
        count = len(picked)
        at_speed = speed or FEDERATION_SPEED if through_federation else None
        measured_at = {"through": "federation", "speed": at_speed} if through_federation \
            else {}
        (out / "summary.md").write_text(
            _markdown(summary, names, count, len(errors), at_speed)
            + _measures_markdown(measured, names, every_seed), "utf-8")
        (out / "summary.json").write_text(json.dumps(
            {"launches": count, "seeds": list(every_seed), **measured_at,
             "unfitted": [e["launch"] for e in errors], "summary": summary,
             "measures": measured, **({"runs": runs} if through_federation else {})},
            indent=2), "utf-8")
        if as_json:
            emit_json({"launches": count, "seeds": list(every_seed), **measured_at,
                       "summary": summary, "measures": measured, "out": str(out),
                       "plots": plots, **({"runs": runs} if through_federation else {})})
        else:
            click.echo((out / "summary.md").read_text("utf-8"))
            click.echo(f"wrote {out}/results.csv, summary.md, summary.json, "
                       + ", ".join(plots))
