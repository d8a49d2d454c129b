"""``gsomia report``: the self-contained HTML report of one launch under every regime."""

from __future__ import annotations

import click

from gsomia.shell.commands.common import (
    agreements_option,
    catalogue,
    emit_json,
    json_option,
    model_runs,
    progress,
    progress_console,
)


def register(cli: click.Group) -> None:
    @cli.command("report")
    @agreements_option
    @json_option
    @click.option("--launch", "day", default="2017-08-29", show_default=True,
                  help="Launch to replay (date).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--out", "out_dir", default="report", show_default=True, metavar="DIR",
                  help="Write DIR/index.html.")
    def report(agreement_dirs: tuple[str, ...], as_json: bool, day: str, seed: int,
               out_dir: str) -> None:
        """Replay a launch under every regime and write an offline HTML report."""
        from gsomia.service.stories import agreement_story
        from gsomia.shell.report import custody_paths, write_report

        cat = catalogue(agreement_dirs)
        # demo's replay of every regime draws its own bar on the console it is given.
        warnings = model_runs(day, seed, progress_console(as_json)).story()
        with progress("writing the report", as_json=as_json):
            story = {**agreement_story(cat), "warning": warnings,
                     "custody": custody_paths(cat)}
            path = write_report(story, out_dir)
        if as_json:
            emit_json({"report": str(path), "launch": warnings["launch"]["id"],
                       "first_warning_s": {
                           name: {p: o["first_warning_s"] for p, o in run["parties"].items()}
                           for name, run in warnings["regimes"].items()}})
            return
        click.echo(str(path))

    @cli.command("replay")
    @click.option("--node", "node_dir", required=True, metavar="DIR", help="The node folder.")
    @click.option("--launch", "day", default="2017-08-29", show_default=True,
                  help="Launch to replay (date).")
    @click.option("--regime", "regime_name", default="direct", show_default=True,
                  type=click.Choice(["none", "hub", "direct", "trilateral"]))
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--speed", type=click.FloatRange(0, 1000), default=0.0, show_default=True,
                  help="Times faster than the flight (0: publish everything at once).")
    @json_option
    def replay(node_dir: str, day: str, regime_name: str, seed: int, speed: float,
               as_json: bool) -> None:
        """Replay a launch and publish, at the node, the flight path, impact predictions and
        warnings its party would hold (STIX notes), so that its dashboard shows them."""
        from gsomia import bootstrap
        from gsomia.shell.web import NodeView, publish_replay, replay_entries

        node = bootstrap.open_node(node_dir)
        try:
            with progress(f"replaying {day} under {regime_name}", as_json=as_json) as steps:
                entries = replay_entries(day, regime_name, node.party, seed,
                                         catalogue=node.catalogue)
                steps.update(total=len(entries), completed=0,
                             description=f"publishing at the {node.party} node")
                view = NodeView(node.store, node.keys, node.catalogue, node.party)
                done = publish_replay(view, entries, speed=speed,
                                      on_publish=lambda n: steps.update(completed=n))
        finally:
            node.close()
        warnings = [o["x_gsomia_warning"] for _, o, _ in entries if "x_gsomia_warning" in o]
        if as_json:
            emit_json({"published": done, "warnings": warnings})
            return
        click.echo(f"published {done} item(s) at the {node.party} node")
        for w in warnings:
            click.echo(f"  warning {w['action']} T+{w['at_s']:.0f} s: "
                       f"{', '.join(w['regions']) or 'no region'}")
