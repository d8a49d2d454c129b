"""``gsomia sensors run``: play a real launch's measurements into a party's node
(:mod:`gsomia.shell.sensor_player`). ``--node DIR`` takes them into the node folder's store
directly (the node's operator, on its host); ``--node URL`` posts them to
``POST /sensors/v1/measurements`` with an operator's token over HTTPS, trusting the node's
CA (``--ca``).
"""

from __future__ import annotations

import click

from gsomia.shell.commands.common import emit_json, json_option

__all__ = ["register"]


def register(cli: click.Group) -> None:
    @cli.group("sensors")
    def sensors() -> None:
        """Feed a node with its sensors' measurements."""

    @sensors.command("run")
    @click.option("--launch", "day", required=True, metavar="DATE",
                  help="The launch's date (Korea/Japan or UTC), as in `gsomia launches`.")
    @click.option("--index", type=int, default=None, help="Which launch of that day (0-based).")
    @click.option("--party", required=True, type=click.Choice(["JPN", "KOR", "USA"]),
                  help="Whose sensors.")
    @click.option("--node", "node", required=True, metavar="DIR|URL",
                  help="The party's node: its folder, or its https:// address.")
    @click.option("--token", envvar="GSOMIA_TOKEN", default=None, metavar="TOKEN",
                  help="With a URL: an operator's token (or $GSOMIA_TOKEN).")
    @click.option("--ca", default=None, metavar="FILE",
                  help="With a URL: the node's CA certificate (its folder's tls/ca.crt).")
    @click.option("--speed", type=click.FloatRange(min=0.0, min_open=True), default=1.0,
                  show_default=True, metavar="X", help="X times faster than real time.")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="The sensors' noise and scan draws (as `scenario run --seed`).")
    @click.option("--until", "until_s", type=click.FloatRange(min=0.0), default=None,
                  metavar="SECONDS", help="Stop at this time of the flight.")
    @json_option
    def run(day: str, index: int | None, party: str, node: str, token: str | None,
            ca: str | None, speed: float, seed: int, until_s: float | None,
            as_json: bool) -> None:
        """Play a real launch's measurements (and pre-launch indicators) into a node."""
        from gsomia import bootstrap
        from gsomia.shell.sensor_player import Target, play, playlist
        from gsomia.shell.stop_with import stop_with_named_process

        # $GSOMIA_STOP_WITH, as for node run: a player plays until --until, minutes on, for
        # nobody once whoever started it is gone. What it sent is stored; it holds nothing else.
        stop_with_named_process()
        indicators, lines = playlist(day, index, party, seed, until_s)
        target = Target(node, token, ca, bootstrap.open_node)
        try:
            batches = play(target, indicators, lines, speed)
        finally:
            target.close()
        doc = {"party": party, "launch": day, "seed": seed, "speed": speed,
               "indicators": len(indicators), "measurements": len(lines), "batches": batches,
               "counts": dict(sorted(target.totals.items())), "refused": target.refused}
        if as_json:
            emit_json(doc)
        else:
            click.echo(f"{party}: {len(indicators)} indicators, {len(lines)} measurements in "
                       f"{batches} batches; " + ", ".join(
                           f"{k} {v}" for k, v in sorted(target.totals.items())))
