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
    @click.option("--node", "node_dir", required=True, metavar="DIR",
                  help="The folder of a running node (gsomia node run).")
    @click.option("--launch", "day", default="2017-08-29", show_default=True,
                  help="Launch to replay (date).")
    @click.option("--index", type=int, default=None, help="Which launch of that day (0-based).")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="The sensors' noise and scan draws (as `scenario run --seed`).")
    @click.option("--speed", type=click.FloatRange(0, 1000, min_open=True), default=10.0,
                  show_default=True, metavar="X",
                  help="X times faster than the flight (it is played as it unfolds).")
    @click.option("--until", "until_s", type=click.FloatRange(min=0.0), default=None,
                  metavar="SECONDS", help="Stop at this time of the flight.")
    @click.option("--regime", hidden=True, default=None)
    @json_option
    def replay(node_dir: str, day: str, index: int | None, seed: int, speed: float,
               until_s: float | None, regime: str | None, as_json: bool) -> None:
        """Play a real launch's measurements from the node's own radars (and its pre-launch
        indicators) into the running node, as the flight unfolds, and print the warnings its
        own warning centre issued for it."""
        from pathlib import Path

        from gsomia import bootstrap
        from gsomia.core.errors import MalformedInput
        from gsomia.shell.sensor_player import replay as play_into
        from gsomia.shell.stop_with import stop_with_named_process

        stop_with_named_process()   # $GSOMIA_STOP_WITH, as for sensors run
        if regime is not None:
            raise MalformedInput("a replay plays the node's own sensors; what it shares "
                                 "follows its partners (partners.json)", where="--regime",
                                 expected="no --regime (gsomia federation up --topology "
                                          "sets whom a node shares with)")
        with progress(f"playing {day} into the node at {speed:g}x",
                      as_json=as_json) as steps:
            doc = play_into(Path(node_dir), day, index, seed, speed, until_s,
                            bootstrap.open_node,
                            lambda n, total: steps.update(total=total, completed=n))
        if as_json:
            emit_json(doc)
            return
        warned = doc["warnings"]
        click.echo(f"{doc['party']}: {doc['indicators']} indicators and "
                   f"{doc['measurements']} measurements played into the node at "
                   f"{speed:g}x; its warning centre issued {len(warned)} warning(s)")
        for w in warned:
            click.echo(f"  T+{w['after_launch_s']:6.1f} s  {w['action']:<9} "
                       f"{', '.join(w['regions']) or 'no region'}")
