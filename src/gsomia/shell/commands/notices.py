"""``incident report|list``, ``item reclassify`` and ``audit partners``.

An incident report (Art. 17) is recorded here and queued to the party the item came from;
a reclassification (only by the originator) re-marks the item here and queues the signed
notice to every party that holds it. The node process (``gsomia node run``) sends both and
exchanges signed tree heads with its partners; ``audit partners`` shows the latest head of
each partner and whether it extended the one recorded before (exit 1 if any did not).
"""

from __future__ import annotations

from typing import Any

import click

from gsomia import bootstrap
from gsomia.core.custody import INCIDENT_KINDS
from gsomia.shell.commands.common import emit_json, json_option


def _group(cli: click.Group, name: str, help_text: str) -> click.Group:
    found = cli.commands.get(name)
    if isinstance(found, click.Group):
        return found
    group = click.Group(name, help=help_text)
    cli.add_command(group)
    return group


def _node_option(fn: Any) -> Any:
    return click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False),
                        help="The node folder (gsomia node init).")(fn)


def register(cli: click.Group) -> None:
    from gsomia.shell import notices

    incident = _group(cli, "incident",
                      "Loss or compromise of received information (Art 17): report, list.")

    @incident.command("report")
    @_node_option
    @click.argument("item_id")
    @click.option("--kind", required=True, type=click.Choice(INCIDENT_KINDS))
    @click.option("--description", required=True, help="What happened; what was done.")
    @json_option
    def report_cmd(node_dir: str, item_id: str, kind: str, description: str,
                   as_json: bool) -> None:
        """Record an incident about ITEM_ID and queue it to whoever provided the item."""
        with bootstrap.open_node(node_dir) as node:
            report, queued = notices.report_incident(node, item_id=item_id, kind=kind,
                                                     description=description)
        doc = {**report.to_json(), "queued_to": queued}
        if as_json:
            emit_json(doc)
            return
        to = ", ".join(queued) or "nobody (the item originated here)"
        click.echo(f"{report.reference}: {kind} of {item_id} recorded; notice to {to}")

    @incident.command("list")
    @_node_option
    @json_option
    def list_cmd(node_dir: str, as_json: bool) -> None:
        """Incidents reported here and received from partners, with delivery state."""
        with bootstrap.open_node(node_dir) as node:
            rows = notices.incident_rows(node)
        if as_json:
            emit_json({"incidents": rows})
            return
        for r in rows:
            sent = "; ".join(f"{s['to']} {s['status']}" for s in r["sent"])
            click.echo(f"{r['at']}  {r['direction']:<8} {r['kind']:<20} {r['item_id']}  "
                       f"by {r['reported_by']}" + (f"  → {sent}" if sent else ""))

    item = _group(cli, "item", "One item.")

    @item.command("reclassify")
    @_node_option
    @click.argument("item_id")
    @click.option("--level", required=True, help="The new level in this party's scheme.")
    @json_option
    def reclassify_cmd(node_dir: str, item_id: str, level: str, as_json: bool) -> None:
        """As originator, change ITEM_ID's level; every holder is notified and re-marks."""
        with bootstrap.open_node(node_dir) as node:
            notice, queued = notices.reclassify(node, item_id=item_id, level=level)
        doc = {"item_id": item_id, "old_level": notice.old_level,
               "new_level": notice.new_level, "notice": notice.to_json(),
               "queued_to": queued}
        if as_json:
            emit_json(doc)
            return
        click.echo(f"{item_id}: {notice.old_level} → {notice.new_level}; notice to "
                   + (", ".join(queued) or "no holder"))

    audit = _group(cli, "audit", "The node's tamper-evident audit log.")

    @audit.command("partners")
    @_node_option
    @json_option
    def partners_cmd(node_dir: str, as_json: bool) -> None:
        """Each partner's latest signed tree head and whether it extends the one recorded
        before (exit 1 if a partner's log is inconsistent)."""
        with bootstrap.open_node(node_dir) as node:
            rows = notices.partner_heads(node)
        bad = [r["partner"] for r in rows if r["consistent"] is False]
        if as_json:
            emit_json({"partners": rows, "consistent": not bad})
        else:
            if not rows:
                click.echo("no partner tree heads recorded yet")
            for r in rows:
                state = {True: "consistent", False: "INCONSISTENT", None: "not checked"}[
                    r["consistent"]]
                size = (r["head"] or {}).get("size")
                click.echo(f"{r['partner']}  size {size}  at {r['at']}  {state}"
                           + (f": {r['reason']}" if r["reason"] else ""))
        if bad:
            raise click.exceptions.Exit(1)
