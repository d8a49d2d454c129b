"""``gsomia warnings``: the warnings a node holds, as one reader may see them, in the formats
public warning systems take (CAP 1.2, GeoJSON) or as JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from gsomia.core.errors import PolicyDenied
from gsomia.shell.commands.common import emit_json


def register(cli: click.Group) -> None:
    @cli.command("warnings")
    @click.option("--node", "node_dir", required=True, metavar="DIR",
                  type=click.Path(file_okay=False),
                  help="The node folder (made by `gsomia node init`).")
    @click.option("--user", "token", required=True, envvar="GSOMIA_TOKEN", metavar="TOKEN",
                  help="The reader's token (or $GSOMIA_TOKEN): only what they may read.")
    @click.option("--json", "fmt", flag_value="json", help="The index of CAP messages, JSON.")
    @click.option("--cap", "fmt", flag_value="cap",
                  help="A CAP 1.2 alert (the newest, or --id); all of them with --out.")
    @click.option("--geojson", "fmt", flag_value="geojson",
                  help="Tracks, impact ellipses and warned regions as GeoJSON.")
    @click.option("--id", "identifier", metavar="ID", help="With --cap: this message.")
    @click.option("--out", "out_dir", metavar="DIR", type=click.Path(file_okay=False),
                  help="With --cap: write every message to DIR/ID.cap.xml.")
    def warnings(node_dir: str, token: str, fmt: str | None, identifier: str | None,
                 out_dir: str | None) -> None:
        """Issued, updated, passed and retracted warnings the reader may see (Art. 7); every
        note read is audited. The warning centre's warnings are CAP Actual (replays too: a replay
        plays sensors into the live centre); model replays stored by earlier versions
        (``x_gsomia_replay``) are Exercise."""
        from gsomia import bootstrap
        from gsomia.core import alerting
        from gsomia.core.errors import MalformedInput
        from gsomia.service.handlers import not_readable
        from gsomia.service.taxii import NotFound
        from gsomia.shell.warnings_out import read_warnings

        if (identifier or out_dir) and fmt != "cap":
            raise MalformedInput("--id and --out go with --cap", where="--id/--out",
                                 expected="gsomia warnings --cap --id ID, or --cap --out DIR")
        node = bootstrap.open_node(node_dir)
        try:
            service, store = bootstrap.taxii_service(node)
            try:
                person = service.authenticate(token)
                if person is None:
                    raise PolicyDenied(("no user holds this token",))
                found = read_warnings(service, person, datetime.now(UTC))
            finally:
                store.close()
        finally:
            node.close()
        if fmt == "json":
            emit_json(found.index())
        elif fmt == "geojson":
            emit_json(found.geojson())
        elif fmt == "cap" and out_dir is not None:
            folder = Path(out_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for m in found.messages:
                # Identifiers come from STIX ids (type--UUID), but a file name is no place
                # to trust that: no separators, no leading dot.
                safe = m.identifier.replace("/", "_").replace("\\", "_").lstrip(".")
                path = folder / f"{safe}.cap.xml"
                path.write_bytes(found.cap(m.identifier))
                click.echo(str(path))
        elif fmt == "cap":
            if identifier is None and not found.messages:
                click.echo("no warning that you may read is held here", err=True)
                return
            wanted = identifier or found.messages[-1].identifier
            try:
                body = found.cap(wanted)
            except NotFound:
                raise PolicyDenied((not_readable(f"warning {wanted}"),)) from None
            click.echo(body.decode("utf-8"))
        else:
            if not found.messages:
                click.echo("no warning that you may read is held here")
            for m in found.messages:
                w = m.record.warning
                tti = "" if w.time_to_impact_s is None else \
                    f", impact in {w.time_to_impact_s:.0f} s"
                click.echo(f"{alerting.index_entry(m)['sent']}  {m.status:<8} "
                           f"{m.msg_type:<6} {w.party} {w.level} {w.action}: "
                           f"{', '.join(w.regions) or 'no region'}{tti}  "
                           f"[{m.record.marking.national}]  {m.identifier}")
