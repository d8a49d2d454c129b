"""``gsomia demo``: the story of the agreements, told by the real catalogue, policy and nodes.

1. The agreements' states on key dates, and release decisions with their reasons.
2. One launch replayed by the scenario model (``core.scenario``) under each regime: when each
   party detects, tracks, predicts and warns, with the regime's stated delays.
3. The same launch through the real system, once per regime, each through a federation of
   three node processes in the regime's topology (``federation up --topology``): every
   party's radars and pre-launch indicators are played into its own node, ``--speed`` times
   faster than the flight, and the nodes' own warning centres track, share and warn
   (:func:`gsomia.shell.federated_scenario.run_federated`, as ``scenario run
   --federation``). Measured at the nodes: when each first held a track, an impact
   prediction and its own warning, the items per link and their latency, whether everything
   queued was delivered, and every node's audit log.
4. The self-contained report (``--report``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from gsomia import bootstrap
from gsomia.core.agreements import Catalogue
from gsomia.core.sharing import REGIMES
from gsomia.service.stories import KEY_DATES, agreement_story
from gsomia.shell.commands.common import (
    agreements_option,
    catalogue,
    emit_json,
    json_option,
    model_runs,
)
from gsomia.shell.federated_scenario import (
    HUB_CONSENTS,
    PARTIES,
    HubConsent,
    Starting,
    serve_federation,
    through_federations,
)

REGIME_ORDER = tuple(REGIMES)
# Sensors played 20 times faster than the flight: a delivery's latency stays well within the
# warning centre's lag (at 50x a KOR->JPN delivery took 1.8 s of wall clock, 90 s of flight,
# and JPN's node warned as it would alone). Two federations at a time keep both cores busy
# without stretching the deliveries.
DEFAULT_SPEED = 20.0
AT_ONCE = 2
PLAYED_AFTER_S = 60.0


def print_story(story: dict[str, Any], cat: Catalogue, console: Console) -> None:
    table = Table(title="Agreements and their state on key dates")
    table.add_column("date")
    for aid in story["states"]:
        table.add_column(aid.replace("-", "\u2011", 1))  # keep "jpn-kor" on one line
    for d in KEY_DATES:
        cells = []
        for by_date in story["states"].values():
            s = by_date[d]
            cells.append(s["state"] + (f" (ends {s['terminates_on']})"
                                       if s["terminates_on"] else ""))
        table.add_row(d, *cells)
    console.print(table)
    for case in story["decisions"]:
        d = case["decision"]
        r = case["request"]
        verdict = "[green]PERMIT[/green]" if d["permit"] else "[red]DENY[/red]"
        console.print(f"\n{verdict} {case['case']}: {r['sender']} → {r['recipient']} "
                      f"{r['label']['level']} on {r['at'][:10]}"
                      + (f" under {d['agreement']} as {d['recipient_level']}"
                         if d["permit"] else ""))
        for why in d["reasons"]:
            console.print(f"   · {why}", highlight=False)




def print_federations(feds: Mapping[str, Any], console: Console) -> None:
    table = Table(title="First warning per party and regime (s after lift-off): the scenario "
                        "model, and each node's own warning centre in the real federation")
    for col, justify in (("regime", "left"), ("party", "left"),
                         ("model: first warning", "right"),
                         ("node: its first warning", "right"),
                         ("node held a track", "right"),
                         ("node held an impact prediction", "right"),
                         ("items from partners", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]

    def cell(t: float | None) -> str:
        return "—" if t is None else f"{t:.1f}"

    for name, fed in feds.items():
        for i, p in enumerate(PARTIES):
            o = fed["parties"][p]
            held_from = ", ".join(f"{k} {v}" for k, v in fed["held_from"][p].items()) or "none"
            table.add_row(name if i == 0 else "", p, cell(fed["model_first_warning_s"][p]),
                          cell(o["first_warning_s"]), cell(o["first_track_s"]),
                          cell(o["first_ipp_s"]), held_from,
                          end_section=i == len(PARTIES) - 1)
    console.print(table)
    links = Table(title="Items delivered on each link (sender → recipient) and their latency "
                        "from the publish to the signed receipt")
    for col in ("regime", "link", "items", "latency p50 / p99 (ms)"):
        links.add_column(col)
    for name, fed in feds.items():
        rows = [*fed["links"].items(), *fed.get("relays", {}).items()]
        if not rows:
            links.add_row(name, "—", "0", "nothing crossed", end_section=True)
            continue
        for i, (path, link) in enumerate(rows):
            links.add_row(name if i == 0 else "", path.replace("->", " → "),
                          str(link["items"]), f"{link['p50_ms']:.0f} / {link['p99_ms']:.0f}",
                          end_section=i == len(rows) - 1)
    console.print(links)
    for name, fed in feds.items():
        audit = ", ".join(f"{p} {'intact' if a['ok'] else 'TAMPERED'} ({a['events']} events)"
                          for p, a in fed["audit"].items())
        state = "everything queued was delivered" if fed["delivered"] \
            else "NOT everything queued was delivered"
        consents = fed.get("consents") or {}
        extra = ""
        if "standing" in consents:
            extra = f"; relayed under {len(consents['standing'])} standing consents"
        elif consents:
            extra = (f"; consents requested {consents['requested']}, granted "
                     f"{consents['granted']}")
        console.print(f"{name}: audit {audit}; {state}{extra}", highlight=False)
    hub = next((f["hub_consent"] for f in feds.values() if "hub_consent" in f), None)
    how = ("" if hub is None else
           " In the hub, each originator granted USA a standing consent before the flight "
           "and the hub relayed with no request." if hub["mode"] == "standing" else
           " In the hub, USA's operator asked and the originator's operator granted consent "
           "per item, " + (f"scripted to answer {hub['desk_delay_s']:g} s of flight time "
                           "after the request (--desk-delay)." if hub["desk_delay_s"] else
                           "scripted to answer at once."))
    console.print("(A node's own times are the flight seconds its warning centre stamped its "
                  "outputs with; a partner's item counts from when the node stored it.)"
                  + how, highlight=False)


def serve_until_interrupted(fed: dict[str, Any], console: Console) -> None:
    """Print the dashboards' addresses and logins; stop the federation on Ctrl-C or TERM."""
    import signal
    import sys
    import threading

    from gsomia.shell import federation

    # The handlers only note the request: raising from them could land between printing the
    # prompt and entering a try (a loaded machine can deschedule us right after the write that
    # wakes whoever reads it), or in the middle of stopping the nodes on a second signal.
    stop = threading.Event()

    def interrupt(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, interrupt)
    from gsomia.shell.stop_with import stop_with_named_process

    # Its nodes stop with that process by themselves; this stops serving (and says so) too.
    stop_with_named_process()
    # Started in the background by a non-interactive shell, a process inherits SIGINT
    # ignored, and Python then leaves it so: Ctrl-C (or a supervisor's SIGINT) would not stop
    # the federation.
    signal.signal(signal.SIGINT, interrupt)
    console.print(f"\nDashboards of the {fed['regime']} federation (self-signed certificates "
                  "of each node's private CA):", highlight=False)
    for p, s in fed.get("serving", {}).items():
        console.print(f"   {p}: {s['url']}/  user {s['user']}  token {s['token']}",
                      highlight=False)
    console.print("Serving; press Ctrl-C to stop.", highlight=False)
    sys.stdout.flush()
    while not stop.is_set():
        time.sleep(0.2)  # a signal cuts the sleep short only to run the handler
    stopped = federation.down(Path(fed["folder"]))
    console.print("nodes stopped: " + ", ".join(f"{p} {s}" for p, s in stopped.items()),
                  highlight=False)


def print_warnings(story: dict[str, Any], console: Console) -> None:
    launch = story["launch"]
    table = Table(title=f"Scenario model, first warning (s after launch): "
                        f"{launch['missile_name']}, {story['when']}, "
                        f"flight {story['flight_time_s']} s")
    table.add_column("regime")
    for p in PARTIES:
        table.add_column(p, justify="right")
    table.add_column("JPN warned for")
    for name, run in story["regimes"].items():
        parties = run["parties"]
        cells = []
        for p in PARTIES:
            t = parties[p]["first_warning_s"]
            err = parties[p]["ipp_error_km"]
            cells.append("—" if t is None else f"{t:.0f} (±{err:.0f} km)")
        issued = [w for w in parties["JPN"]["warnings"] if w["action"] == "issued"]
        table.add_row(name, *cells, ", ".join(issued[0]["regions"]) if issued else "")
    console.print(table)
    console.print("(± is the distance from the predicted to the true impact point when the "
                  "warning was issued; the model's delays are stated parameters: a link 2 s, "
                  "the TISA hub's relay by people 60 s, the 2023 mechanism 3 s.)",
                  highlight=False)


def played_until(runs: Any) -> float:
    """The flight second until which the sensors are played, in every regime: a minute
    after the last first warning the model gives any party under any of them (the tables
    show first warnings), the whole flight if it gives none."""
    flight = max(float(res.scenario.trajectory.flight_time_s) for res in runs.results.values())
    firsts = [o.first_warning_s for res in runs.results.values() for o in res.parties.values()
              if o.first_warning_s is not None]
    return min(flight, max(firsts) + PLAYED_AFTER_S) if firsts else flight


def _regimes(text: str) -> tuple[str, ...]:
    from gsomia.core.errors import MalformedInput

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in REGIME_ORDER]
    if not names or unknown:
        raise MalformedInput(f"unknown regime(s) {', '.join(unknown) or '(none given)'}",
                             where="--regimes", expected="a comma-separated list of "
                             + ", ".join(REGIME_ORDER))
    return tuple(n for n in REGIME_ORDER if n in names)


def register(cli: click.Group) -> None:
    @cli.command("demo")
    @agreements_option
    @json_option
    @click.option("--launch", "day", default="2017-08-29", show_default=True,
                  help="Launch to replay (date).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--regimes", "regime_list", default=",".join(REGIME_ORDER),
                  show_default=True, help="Regimes to replay, each through its own federation.")
    @click.option("--speed", type=click.FloatRange(min=1.0), default=DEFAULT_SPEED,
                  show_default=True,
                  help="How many times faster than the flight the sensors are played.")
    @click.option("--until", "until_s", type=click.FloatRange(min=0.0, min_open=True),
                  default=None, metavar="S",
                  help="Play the sensors until S seconds of flight (default: a minute after "
                       "the model's last first warning).")
    @click.option("--report", "report_dir", default="demo-report", show_default=True,
                  metavar="DIR", help="Write the HTML report to DIR/index.html.")
    @click.option("--serve", is_flag=True,
                  help="Afterwards, run one regime's federation and its dashboards until "
                       "Ctrl-C (direct if replayed, else the last; see --serve-regime).")
    @click.option("--serve-regime", default=None, metavar="REGIME",
                  help="The regime whose federation --serve runs.")
    @click.option("--keep", is_flag=True,
                  help="Keep the federations' node folders (in the temporary directory) "
                       "instead of removing them at the end.")
    @click.option("--hub-consent", type=click.Choice(HUB_CONSENTS), default="standing",
                  show_default=True,
                  help="How the hub obtains the originator's consent: a standing consent "
                       "granted before the flight, or asked per item and answered by the "
                       "originator's operator.")
    @click.option("--desk-delay", type=click.FloatRange(min=0.0), default=0.0,
                  show_default=True, metavar="S",
                  help="Per-item mode: seconds of flight time the originator's operator "
                       "takes to answer each request (0: at once).")
    def demo(agreement_dirs: tuple[str, ...], as_json: bool, day: str, seed: int,
             regime_list: str, speed: float, until_s: float | None, report_dir: str,
             serve: bool,
             serve_regime: str | None, keep: bool, hub_consent: str,
             desk_delay: float) -> None:
        """Tell the story: agreements, explained decisions, and a launch under each regime,
        modelled and then through three real nodes per regime."""
        from gsomia.core.errors import MalformedInput

        if serve and as_json:
            raise MalformedInput("--serve keeps running, so it prints no JSON document",
                                 where="--serve", expected="--serve without --json")
        regimes = _regimes(regime_list)
        kept = serve_regime or ("direct" if "direct" in regimes else regimes[-1])
        if kept not in regimes:
            raise MalformedInput(f"{kept} is not among the replayed regimes",
                                 where="--serve-regime", expected=" or ".join(regimes))
        if desk_delay > 0 and hub_consent != "per-item":
            raise MalformedInput("--desk-delay is the time the originator's operator takes to "
                                 "answer a per-item request", where="--desk-delay",
                                 expected="--hub-consent per-item with it")
        from gsomia.shell.report import custody_paths, write_report

        cat = catalogue(agreement_dirs)
        story = agreement_story(cat)
        import sys

        # Not a terminal: no colours or live panel, and wide enough for the tables.
        console = None if as_json else Console(width=None if sys.stdout.isatty() else 120)
        if console is not None:
            print_story(story, cat, console)
            console.print()
        import shutil
        import tempfile

        from gsomia.shell import federation

        root = Path(tempfile.mkdtemp(prefix="gsomia-demo-"))
        served = False   # the served regime's federation ran on from its replay
        try:
            # The federations start while the model runs.
            starting = Starting(root, regimes, ahead=AT_ONCE)
            try:
                runs = model_runs(day, seed, console, regimes)
                warnings = runs.story()
                if until_s is None:
                    until_s = played_until(runs)
                if console is not None:
                    print_warnings(warnings, console)
                    console.print(f"\nThe launch through the real system: three node "
                                  f"processes per regime on 127.0.0.1, {AT_ONCE} federations "
                                  f"at a time, each party's radars and indicators played into "
                                  f"its own node {speed:g}× faster than the flight until "
                                  f"T+{until_s:.0f} s; node folders in {root} (removed at the "
                                  "end unless --keep)", highlight=False)

                def done(name: str, fed: dict[str, Any]) -> None:
                    if console is None:
                        return
                    jpn = fed["parties"]["JPN"]["first_warning_s"]
                    console.print(f"   {name}: done, JPN's node first warned "
                                  + ("never" if jpn is None else f"at T+{jpn:.1f} s"),
                                  highlight=False)

                feds = through_federations(day, seed, regimes, speed, bootstrap.open_node,
                                           starting, until_s=until_s, at_once=AT_ONCE,
                                           hub=HubConsent(hub_consent, desk_delay),
                                           on_done=done, keep=kept if serve else None)
                served = serve
            finally:
                starting.close(keep=kept if served else None)
            for name, fed in feds.items():
                fed["model_first_warning_s"] = {
                    p: None if (t := runs.results[name].parties[p].first_warning_s) is None
                    else round(t, 1) for p in PARTIES}
                fed["folder"] = str(root / name)
            full = {**story, "warning": warnings, "custody": custody_paths(cat),
                    "federations": feds}
            path = write_report(full, report_dir)
            if as_json:
                emit_json({**story,
                           "warning": {k: v for k, v in warnings.items() if k != "map"},
                           "federations": feds, "folder": str(root), "kept": keep,
                           "report": str(path)})
                return
            assert console is not None
            console.print()
            print_federations(feds, console)
            console.print(f"\nReport: {path}", highlight=False)
            if serve:
                serve_until_interrupted(serve_federation(root / kept, kept,
                                                         bootstrap.open_node), console)
        finally:
            if served and (root / kept / federation.FEDERATION_FILE).exists():
                federation.down(root / kept)   # a failure before or while serving
            # Every node is stopped by now; its folders (keys, stores: ~7 MB a run) go too.
            if keep:
                if console is not None:
                    console.print(f"Node folders kept in {root}", highlight=False)
            else:
                shutil.rmtree(root, ignore_errors=True)
