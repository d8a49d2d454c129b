"""``gsomia demo``: the story of the agreements, told by the real catalogue and policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from gsomia.core.agreements import Catalogue, status
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, ReleaseRequest, decide
from gsomia.core.types import instant
from gsomia.shell.commands.common import agreements_option, catalogue, emit_json, json_option

KEY_DATES = ("2014-12-29", "2016-11-22", "2017-05-01", "2019-10-01", "2019-11-24",
             "2023-04-01", "2024-01-14")


def _request(item: str, sender: str, recipient: str, at: str, level: str, *,
             originator: str = "KOR", rel_to: tuple[str, ...] = ("KOR", "JPN", "USA"),
             scheme: str = "", consents: tuple[Consent, ...] = (),
             policy: str | None = None, category: str | None = None) -> ReleaseRequest:
    label = SecurityLabel(originator, level, frozenset(rel_to), "dprk-missile",
                          scheme=scheme or originator, policy=policy, category=category)
    return ReleaseRequest(item, label, sender, recipient, instant(at), consents)


STORY: tuple[tuple[str, ReleaseRequest], ...] = (
    ("2016: ROK HUMINT to Japan a day before the GSOMIA",
     _request("report--2016-11-22", "KOR", "JPN", "2016-11-22", "군사II급비밀")),
    ("2017: the same kind of report under the GSOMIA",
     _request("report--2017-08-29", "KOR", "JPN", "2017-08-29", "군사II급비밀")),
    ("2015: TISA, the US hub relays a ROK report without consent",
     _request("report--2015", "USA", "JPN", "2015-06-01", "SECRET", scheme="USA")),
    ("2015: TISA, the US hub relays it with ROK consent",
     _request("report--2015", "USA", "JPN", "2015-06-01", "SECRET", scheme="USA",
              consents=(Consent("report--2015", "KOR", "JPN"),))),
    ("2019-10: during the ROK notice of termination",
     _request("track--2019-10", "KOR", "JPN", "2019-10-02", "군사III급비밀")),
    ("2019: ROK top level to Japan",
     _request("plan--2019", "KOR", "JPN", "2019-05-01", "군사I급비밀")),
    ("2024: impact prediction under the trilateral mechanism",
     _request("ipp--2024-01-14", "KOR", "JPN", "2024-01-14", "군사II급비밀",
              policy="trilateral-mwd-2023", category="impact-prediction")),
    ("2024: a pre-launch indicator under the trilateral mechanism",
     _request("humint--2024-01-13", "KOR", "JPN", "2024-01-13", "군사II급비밀",
              policy="trilateral-mwd-2023", category="pre-launch-indicator")),
)


def agreement_story(cat: Catalogue) -> dict[str, Any]:
    states = {a.id: {d: status(a, instant(d)).to_json() for d in KEY_DATES}
              for a in sorted(cat.agreements.values(), key=lambda a: a.id)}
    decisions = [{"case": title, "request": r.to_json(), "decision": decide(r, cat).to_json()}
                 for title, r in STORY]
    return {"states": states, "decisions": decisions}


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


REGIME_ORDER = ("none", "hub", "direct", "trilateral")


def warning_story(day: str, seed: int, console: Console | None) -> dict[str, Any]:
    """Replay one launch under every regime; the first warning of each party in each."""
    from rich.progress import Progress

    from gsomia.core.tracking.trajectory import fit
    from gsomia.shell import feeds
    from gsomia.shell.commands.scenario import EVALUATION, run_one
    from gsomia.shell.report import map_data

    launch = feeds.find_launch(day)
    trajectory = fit(launch.flight_request())
    memo: dict[tuple[Any, ...], Any] = {}
    runs: dict[str, Any] = {}
    results: dict[str, Any] = {}
    with Progress(console=console, transient=True, disable=console is None) as bar:
        task = bar.add_task(f"replaying {launch.missile.name} {launch.local_date}",
                            total=len(REGIME_ORDER))
        for name in REGIME_ORDER:
            results[name] = run_one(launch, name, seed, trajectory, options=EVALUATION,
                                    memo=memo)
            runs[name] = results[name].to_json()
            bar.advance(task)
    return {"launch": launch.to_json(), "flight_time_s": round(trajectory.flight_time_s, 1),
            "regimes": runs,
            "map": map_data(results, trajectory, feeds.load_sensors())}


# A demo user per node, cleared for what the demo's items are marked.
DEMO_CLEARANCE = {"JPN": "極秘", "KOR": "군사II급비밀", "USA": "SECRET"}


def federation_story(day: str, seed: int, console: Console | None,
                     keep: bool = False) -> dict[str, Any]:
    """KOR's tracks and impact predictions of the replay, published at a real KOR node and
    delivered to JPN and USA by the exchange (direct topology, three node processes on
    loopback); then every node's audit log is verified and the processes are stopped, unless
    ``keep``: then each node gets a demo user and the federation stays up."""
    import tempfile
    import time
    from pathlib import Path

    from gsomia import bootstrap
    from gsomia.service import handlers
    from gsomia.shell import exchange
    from gsomia.shell.commands import federation
    from gsomia.shell.web import replay_entries

    entries = replay_entries(day, "direct", "KOR", seed)
    folder = Path(tempfile.mkdtemp(prefix="gsomia-demo-"))
    nodes: dict[str, Any] = {}
    out: dict[str, Any] = {"topology": "direct", "folder": str(folder)}
    try:
        if console is not None:
            console.print("starting the JPN, KOR and USA nodes on 127.0.0.1 …")
        federation.up(folder, "direct", federation.free_base_port())
        nodes = {p: bootstrap.open_node(folder / p) for p in ("JPN", "KOR", "USA")}
        request = [(obj, handlers.LabelRequest("군사II급비밀", ("KOR", "JPN", "USA"),
                                                "dprk-missile", category=category))
                   for _, obj, category in entries]
        started = time.monotonic()
        exchange.publish(nodes["KOR"], entries=request)
        ids = [str(obj["id"]) for obj, _ in request]

        def arrived(node: Any) -> bool:
            with node.store.repository() as repo:
                return all(repo.get_item(i) is not None for i in ids)

        delivered = exchange.wait_until(lambda: arrived(nodes["JPN"]) and arrived(
            nodes["USA"]) and exchange.pending(nodes["KOR"]) == 0, 60.0)
        out["published_at_kor"] = len(ids)
        out["delivered"] = delivered
        out["seconds"] = round(time.monotonic() - started, 2)
        with nodes["JPN"].store.repository() as repo:
            item = repo.get_item(ids[0])
            record = repo.custody_of(item.item_id, item.version)[-1] if item else None
        if record is not None:
            out["jpn_marking"] = record.national_label.national_marking()
            out["kor_marking"] = record.original_label.national_marking()
        audits = {}
        for p, node in nodes.items():
            with node.store.reader() as reader:
                verdict = handlers.verify_audit(reader,
                                                public_key=node.keys.public_signing_key())
            audits[p] = {"ok": verdict.ok, "events": verdict.size}
        out["audit"] = audits
        if keep:
            from gsomia.shell.node import new_token

            users = {}
            for p, node in nodes.items():
                token = new_token()
                handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                                  name="analyst", clearance=DEMO_CLEARANCE[p],
                                  need_to_know=["dprk-missile"], token=token,
                                  now=datetime.now(UTC))
                users[p] = token
            out["serving"] = {p: {"url": n["url"], "user": "analyst", "token": users[p]}
                              for p, n in federation.status(folder)["nodes"].items()}
    finally:
        for node in nodes.values():
            node.close()
        if not keep or "serving" not in out:
            out["stopped"] = federation.down(folder)
    return out


def print_federation(story: dict[str, Any], console: Console) -> None:
    ok = "delivered" if story["delivered"] else "NOT all delivered"
    console.print(f"\nThrough the federation ({story['topology']}): KOR published "
                  f"{story['published_at_kor']} tracks and impact predictions; {ok} to JPN "
                  f"and USA with receipts in {story['seconds']} s.", highlight=False)
    if "jpn_marking" in story:
        console.print(f"   KOR marks {story['kor_marking']}; JPN holds it as "
                      f"{story['jpn_marking']} (Art. 4)", highlight=False)
    for p, a in story["audit"].items():
        console.print(f"   {p} audit log: {'intact' if a['ok'] else 'TAMPERED'} "
                      f"({a['events']} events)", highlight=False)
    if "stopped" in story:
        console.print("   nodes stopped: " + ", ".join(f"{p} {s}" for p, s in
                                                       story["stopped"].items()),
                      highlight=False)


def serve_until_interrupted(fed: dict[str, Any], console: Console) -> None:
    """Print the dashboards' addresses and logins; stop the federation on Ctrl-C or TERM."""
    import signal
    import sys
    import time
    from pathlib import Path

    from gsomia.shell.commands import federation

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    console.print("\nDashboards (self-signed certificates of each node's private CA):",
                  highlight=False)
    for p, s in fed.get("serving", {}).items():
        console.print(f"   {p}: {s['url']}/  user {s['user']}  token {s['token']}",
                      highlight=False)
    console.print("Serving; press Ctrl-C to stop.", highlight=False)
    sys.stdout.flush()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        stopped = federation.down(Path(fed["folder"]))
        console.print("nodes stopped: " + ", ".join(f"{p} {s}" for p, s in stopped.items()),
                      highlight=False)


def print_warnings(story: dict[str, Any], console: Console) -> None:
    launch = story["launch"]
    table = Table(title=f"First warning (s after launch): {launch['missile_name']} "
                        f"{launch['local_date']}, flight {story['flight_time_s']} s")
    table.add_column("regime")
    for p in ("JPN", "KOR", "USA"):
        table.add_column(p, justify="right")
    table.add_column("JPN warned for")
    for name, run in story["regimes"].items():
        parties = run["parties"]
        cells = []
        for p in ("JPN", "KOR", "USA"):
            t = parties[p]["first_warning_s"]
            err = parties[p]["ipp_error_km"]
            cells.append("—" if t is None else f"{t:.0f} (±{err:.0f} km)")
        issued = [w for w in parties["JPN"]["warnings"] if w["action"] == "issued"]
        table.add_row(name, *cells, ", ".join(issued[0]["regions"]) if issued else "")
    console.print(table)
    console.print("(± is the distance from the predicted to the true impact point when the "
                  "warning was issued.)", highlight=False)


def register(cli: click.Group) -> None:
    @cli.command("demo")
    @agreements_option
    @json_option
    @click.option("--launch", "day", default="2017-08-29", show_default=True,
                  help="Launch to replay (date).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--report", "report_dir", default="demo-report", show_default=True,
                  metavar="DIR", help="Write the HTML report to DIR/index.html.")
    @click.option("--serve", is_flag=True,
                  help="Keep the federation and its dashboards running until Ctrl-C.")
    def demo(agreement_dirs: tuple[str, ...], as_json: bool, day: str, seed: int,
             report_dir: str, serve: bool) -> None:
        """Tell the story: agreements, explained decisions, and a launch under each regime."""
        if serve and as_json:
            from gsomia.core.errors import MalformedInput

            raise MalformedInput("--serve keeps running, so it prints no JSON document",
                                 where="--serve", expected="--serve without --json")
        from gsomia.shell.report import custody_paths, write_report

        cat = catalogue(agreement_dirs)
        story = agreement_story(cat)
        console = None if as_json else Console()
        warnings = warning_story(day, seed, console)
        full = {**story, "warning": warnings, "custody": custody_paths(cat)}
        path = write_report(full, report_dir)
        fed = federation_story(day, seed, console, keep=serve)
        if as_json:
            emit_json({**story, "warning": {k: v for k, v in warnings.items() if k != "map"},
                       "federation": fed, "report": str(path)})
            return
        assert console is not None
        print_story(story, cat, console)
        console.print()
        print_warnings(warnings, console)
        print_federation(fed, console)
        if serve:
            console.print(f"\nReport: {path}", highlight=False)
            serve_until_interrupted(fed, console)
            return
        console.print(f"\nReport: {path}", highlight=False)
