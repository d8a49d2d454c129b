"""``gsomia demo``: the story of the agreements, told by the real catalogue, policy and nodes.

1. The agreements' states on key dates, and release decisions with their reasons.
2. One launch replayed by the scenario model (``core.scenario``) under each regime: when each
   party detects, tracks, predicts and warns, with the regime's stated delays.
3. The same launch through the real system, once per regime, each through a federation of
   three node processes in the regime's topology (``federation up --topology``): what each
   party's model produced (pre-launch indicators, sensor reports, flight paths, impact
   predictions, warnings) is published at its node at its time in the flight, ``--speed``
   times faster; the release policy and the exchange decide what crosses. Measured: which
   link each item crossed, when each node held it, and every node's audit log.
   (:mod:`gsomia.shell.federated_replay`)
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
from gsomia.service.stories import KEY_DATES, agreement_story
from gsomia.shell.commands.common import (
    agreements_option,
    catalogue,
    emit_json,
    json_option,
    model_runs,
)
from gsomia.shell.federated_replay import (
    DEFAULT_SPEED,
    HUB_CONSENTS,
    PARTY_ORDER,
    REGIME_ORDER,
    Federations,
    HubConsent,
    federation_stories,
    serve_federation,
)


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
    table = Table(title="Warning times per party and regime (s after lift-off): the scenario "
                        "model, and what each node held in the real federation")
    for col, justify in (("regime", "left"), ("party", "left"), ("model: first warning",
                         "right"), ("node held a warning", "right"),
                         ("node held its first impact prediction", "right"),
                         ("items from partners", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, fed in feds.items():
        for i, p in enumerate(PARTY_ORDER):
            o = fed["parties"][p]

            def cell(t: float | None, src: str | None) -> str:
                if t is None:
                    return "—"
                return f"{t:.1f}" + ("" if src in (None, "own") else f" ({src})")

            held_from = ", ".join(f"{k} {v}" for k, v in o["held_from"].items()) or "none"
            model = o["model_first_warning_s"]
            table.add_row(name if i == 0 else "", p, "—" if model is None else f"{model:.0f}",
                          cell(o["warning_held_s"], o["warning_from"]),
                          cell(o["first_ipp_held_s"], o["first_ipp_from"]), held_from,
                          end_section=i == len(PARTY_ORDER) - 1)
    console.print(table)
    links = Table(title="Items that crossed each link (provider → holder)")
    for col in ("regime", "link", "items", "relayed", "agreements", "latency p50 / max (ms)"):
        links.add_column(col)
    for name, fed in feds.items():
        if not fed["links"]:
            links.add_row(name, "—", "0", "", "nothing crossed", "", end_section=True)
            continue
        for i, link in enumerate(fed["links"]):
            links.add_row(name if i == 0 else "", f"{link['from']} → {link['to']}",
                          str(link["items"]), str(link["relayed"] or ""),
                          ", ".join(f"{a} {n}" for a, n in link["agreements"].items()),
                          f"{link['latency_ms']['p50']:.0f} / {link['latency_ms']['max']:.0f}",
                          end_section=i == len(fed["links"]) - 1)
    console.print(links)
    for name, fed in feds.items():
        audit = ", ".join(f"{p} {'intact' if a['ok'] else 'TAMPERED'} ({a['events']} events)"
                          for p, a in fed["audit"].items())
        consents = fed.get("consents")
        extra = (f"; consents requested {consents['requested']}, granted "
                 f"{consents['granted']}" if consents else "")
        if consents and consents.get("standing"):
            extra = f"; relayed under {len(consents['standing'])} standing consents"
        state = "everything queued was delivered" if fed["delivered"] \
            else "NOT everything queued was delivered"
        console.print(f"{name}: audit {audit}; {state}{extra}", highlight=False)
    hub = next((f["hub_consent"] for f in feds.values() if "hub_consent" in f), None)
    how = ("each originator granted USA a standing consent before the flight and the hub "
           "relayed with no request" if hub and hub["mode"] == "standing" else
           "USA's operator asks and the originator's operator grants consent per item, "
           + (f"scripted to answer {hub['desk_delay_s']:g} s of flight time after the "
              "request (--desk-delay)" if hub and hub["desk_delay_s"] else
              "scripted to answer at once"))
    console.print("(Measured times: the model's time of an item plus what the real system took "
                  f"from the moment it was due until the node held it. In the hub, {how}.)",
                  highlight=False)


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
    for p in PARTY_ORDER:
        table.add_column(p, justify="right")
    table.add_column("JPN warned for")
    for name, run in story["regimes"].items():
        parties = run["parties"]
        cells = []
        for p in PARTY_ORDER:
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
                  show_default=True, help="How many times faster than the flight to publish.")
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
    @click.option("--hub-consent", type=click.Choice(HUB_CONSENTS), default="per-item",
                  show_default=True,
                  help="How the hub obtains the originator's consent: asked per item and "
                       "answered by the originator's operator, or a standing consent granted "
                       "before the flight.")
    @click.option("--desk-delay", type=click.FloatRange(min=0.0), default=0.0,
                  show_default=True, metavar="S",
                  help="Per-item mode: seconds of flight time the originator's operator "
                       "takes to answer each request (0: at once).")
    def demo(agreement_dirs: tuple[str, ...], as_json: bool, day: str, seed: int,
             regime_list: str, speed: float, report_dir: str, serve: bool,
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

        root = Path(tempfile.mkdtemp(prefix="gsomia-demo-"))
        try:
            # The first starts while the model runs.
            federations = Federations(root, regimes, bootstrap.open_node)
            try:
                runs = model_runs(day, seed, console, regimes)
                warnings = runs.story()
                if console is not None:
                    print_warnings(warnings, console)
                feds = federation_stories(runs, federations, console, speed,
                                          HubConsent(hub_consent, desk_delay))
            finally:
                federations.close()
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
                serve_until_interrupted(serve_federation(root, kept, bootstrap.open_node),
                                        console)
        finally:
            # Every node is stopped by now; its folders (keys, stores: ~7 MB a run) go too.
            if keep:
                if console is not None:
                    console.print(f"Node folders kept in {root}", highlight=False)
            else:
                shutil.rmtree(root, ignore_errors=True)
