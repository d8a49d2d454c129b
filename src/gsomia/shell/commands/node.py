"""``node``, ``user``, ``publish``, ``items``, ``item show`` and ``audit``: one node's life.

The store, the keys and stix2-validator are imported inside the commands that need them, so
``gsomia --help`` and the other commands start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gsomia import bootstrap
from gsomia.core.errors import MalformedInput
from gsomia.shell.commands.common import (
    Steps,
    agreements_option,
    emit_json,
    json_option,
    label_options,
    progress,
    read_json_input,
    split_values,
)

if TYPE_CHECKING:
    from gsomia.core.custody import Holding, ReceiptRecord, Release
    from gsomia.shell.node import Node


def _now() -> datetime:
    return datetime.now(UTC)


def _node_option(fn: Any) -> Any:
    return click.option("--node", "node_dir", required=True, metavar="DIR",
                        type=click.Path(file_okay=False),
                        help="The node folder (made by `gsomia node init`).")(fn)


def _open(node_dir: str, agreement_dirs: tuple[str, ...] = ()) -> Node:
    return bootstrap.open_node(node_dir, agreement_dirs)


def holding_json(h: Holding, node: Node, releases: Sequence[Release] = (),
                 receipts: Sequence[ReceiptRecord] = ()) -> dict[str, Any]:
    """An item as ``items --json`` and ``item show --json`` describe it: its custody is the
    custody register's steps with the item's releases to partners and its receipts."""
    from gsomia.core.custody import custody_trail

    schemes = node.catalogue.schemes
    current = h.current
    original = current.original_label
    return {
        "id": h.item.item_id, "version": h.item.version, "type": h.item.stix_type,
        "originator": h.item.originator, "added_at": h.item.added_at.isoformat(),
        "label": current.national_label.to_json(),
        "marking": current.national_label.english_marking(schemes),
        "national_marking": current.national_label.national_marking(),
        "original_marking": original.national_marking(),
        "content_hash": h.item.content_hash(),
        "custody": custody_trail(h, releases, receipts),
    }


def _group(cli: click.Group, name: str, help_text: str) -> click.Group:
    """The group ``name``, shared with other command modules that add to it (``node serve``)."""
    found = cli.commands.get(name)
    if isinstance(found, click.Group):
        return found
    group = click.Group(name, help=help_text)
    cli.add_command(group)
    return group


def register(cli: click.Group) -> None:
    # ---- node -------------------------------------------------------------------------------
    node_group = _group(cli, "node", "Create a node, show its identity, serve it.")

    @node_group.command("init")
    @click.option("--party", required=True, metavar="P", help="The node's party (JPN, KOR, USA).")
    @click.option("--dir", "node_dir", required=True, metavar="DIR",
                  type=click.Path(file_okay=False), help="Folder to create the node in.")
    @click.option("--db", "db_url", metavar="URL",
                  help="Database URL (default: SQLite node.db in the folder; or "
                       "postgresql+psycopg://USER@HOST/DB).")
    @agreements_option
    @json_option
    def init(party: str, node_dir: str, db_url: str | None, agreement_dirs: tuple[str, ...],
             as_json: bool) -> None:
        """Create keys, certificates, the database and the audit log of a new node.

        Refuses to overwrite an existing node.
        """
        with progress(f"creating the {party} node: keys, certificates, database",
                      as_json=as_json):
            node = bootstrap.init_node(node_dir, party, db_url=db_url, cli_dirs=agreement_dirs)
        with node:
            doc = _info(node)
        if as_json:
            emit_json(doc)
            return
        click.echo(f"node {doc['party']} created in {doc['folder']}")
        click.echo(f"  database     {doc['database']}")
        for name, fp in doc["fingerprints"].items():
            click.echo(f"  {name:<20} {fp}")

    @node_group.command("info")
    @click.option("--dir", "node_dir", required=True, metavar="DIR",
                  type=click.Path(file_okay=False), help="The node folder.")
    @json_option
    def info(node_dir: str, as_json: bool) -> None:
        """Party, key and certificate fingerprints, database and audit log size."""
        with _open(node_dir) as node:
            doc = _info(node)
        if as_json:
            emit_json(doc)
            return
        click.echo(f"party        {doc['party']}")
        click.echo(f"folder       {doc['folder']}")
        click.echo(f"database     {doc['database']} ({doc['backend']})")
        click.echo(f"created      {doc['created']}")
        click.echo(f"audit log    {doc['audit']['size']} events, signed head "
                   f"{doc['audit']['head_size']}")
        click.echo(f"holdings     {doc['items']} item versions, {doc['users']} users")
        for name, fp in doc["fingerprints"].items():
            click.echo(f"{name:<20} {fp}")

    # ---- users ------------------------------------------------------------------------------
    user_group = _group(cli, "user", "The node's register of cleared people.")

    @user_group.command("add")
    @_node_option
    @click.option("--name", required=True, help="User name (no spaces).")
    @click.option("--clearance", required=True, metavar="LEVEL",
                  help="Clearance, a level of the node's national scheme.")
    @click.option("--need-to-know", "need_to_know", required=True, multiple=True,
                  metavar="PURPOSE", help="Purpose(s) the user needs to know (repeat or "
                                          "comma-separate).")
    @click.option("--role", default="reader", show_default=True,
                  type=click.Choice(["reader", "operator", "admin"]),
                  help="What the user may do at the dashboard's desk: reader (read only), "
                       "operator (consents, incidents, reclassification, publishing), admin "
                       "(also users).")
    @json_option
    def user_add(node_dir: str, name: str, clearance: str, need_to_know: tuple[str, ...],
                 role: str, as_json: bool) -> None:
        """Add a user; prints their access token once (only its hash is stored)."""
        from gsomia.service import handlers
        from gsomia.shell.node import new_token

        token = new_token()
        with _open(node_dir) as node:
            user = handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                                     name=name, clearance=clearance,
                                     need_to_know=split_values(need_to_know), token=token,
                                     now=_now(), purposes=node.catalogue.vocabulary.purposes,
                                     role=role)
        if as_json:
            emit_json({**user.public_json(), "token": token})
            return
        click.echo(f"user {user.name} ({user.party} {user.clearance}; need-to-know "
                   f"{', '.join(sorted(user.need_to_know))}; role {user.role}) added")
        click.echo(f"token: {token}")
        click.echo("The token is shown only now; keep it safe.", err=True)

    @user_group.command("list")
    @_node_option
    @json_option
    def user_list(node_dir: str, as_json: bool) -> None:
        """List the node's users (never their tokens), each with its role and its token's
        state: active or revoked."""
        with _open(node_dir) as node, node.store.repository() as repo:
            revoked = repo.revoked_names()
            people = [{**u.public_json(), "state": "revoked" if u.name in revoked
                       else "active"} for u in repo.users()]
        if as_json:
            emit_json({"party": node.party, "users": people})
            return
        for u in people:
            click.echo(f"{u['name']:<20} {u['state']:<8} {u['role']:<9} {u['clearance']:<14} "
                       f"{', '.join(u['need_to_know'])}")

    @user_group.command("revoke")
    @_node_option
    @click.option("--name", required=True, help="The user whose token is withdrawn.")
    @json_option
    def user_revoke(node_dir: str, name: str, as_json: bool) -> None:
        """Revoke a user's token: the TAXII API, the dashboard (signed-in sessions too) and
        every command refuse it from now on. Audited; the user stays listed, as revoked."""
        from gsomia.service import handlers

        with _open(node_dir) as node:
            done = handlers.revoke_user(node.uow(), name=name, now=_now())
        if as_json:
            emit_json({"name": done.name, "state": "revoked", "revoked_at": done.to_json()["at"]})
            return
        click.echo(f"user {done.name}: token revoked")

    # ---- publishing and holdings ------------------------------------------------------------
    @cli.command("publish")
    @_node_option
    @click.option("--file", "source", required=True, metavar="OBJ.json|-",
                  help="A STIX 2.1 object, or a bundle (each object its own commit).")
    @label_options
    @agreements_option
    @json_option
    def publish(node_dir: str, source: str, level: str, rel_to: str, purpose: str,
                caveats: tuple[str, ...], category: str | None, policy: str | None,
                agreement_dirs: tuple[str, ...], as_json: bool) -> None:
        """Validate, label, bind, store and audit STIX objects; prints each item id.

        An id is printed only once its item and audit events are durable. In a bundle the
        objects are published in order; the first one refused stops the run (exit 2), and
        those printed before it stay published.
        """
        from gsomia.service import handlers
        from gsomia.shell.stix_check import check_stix

        doc = read_json_input(source, what="a STIX object or bundle")
        bundle = isinstance(doc, dict) and doc.get("type") == "bundle"
        if bundle:
            objects = doc.get("objects")
            if not isinstance(objects, list) or not objects:
                raise MalformedInput("the bundle holds no objects", where=source,
                                     expected="a bundle with a non-empty objects list")
        else:
            objects = [doc]
        request = handlers.LabelRequest(level, tuple(split_values((rel_to,))), purpose,
                                        frozenset(split_values(caveats)), policy, category)
        published = []
        with _open(node_dir, agreement_dirs) as node, \
                progress("publishing", len(objects), as_json=as_json or not bundle) as steps:
            for obj in objects:
                result = handlers.publish(node.uow(), keys=node.keys, catalogue=node.catalogue,
                                          obj=obj, label=request, now=_now(),
                                          validate=check_stix)
                published.append(result.to_json())
                steps.advance()
                if not as_json:
                    click.echo(result.item_id)
                    sys.stdout.flush()
        if as_json:
            emit_json({"published": published} if bundle else published[0])

    @cli.command("items")
    @_node_option
    @json_option
    def items_(node_dir: str, as_json: bool) -> None:
        """The items this node holds: labels (English and national marking) and custody."""
        with _open(node_dir) as node, node.store.repository() as repo:
            releases, receipts = repo.releases_by_version(), repo.receipts_by_version()
            held = [holding_json(h, node, releases.get(key, ()), receipts.get(key, ()))
                    for h in repo.holdings()
                    for key in [(h.item.item_id, h.item.version)]]
        if as_json:
            emit_json({"party": node.party, "items": held})
            return
        for h in held:
            origin = h["custody"][0]
            source = "created here" if origin["event"] == "created" else \
                f"from {origin['provider']} under {origin['agreement']}"
            receipts_from = {c["from"] for c in h["custody"]
                             if c["event"] == "receipt" and "from" in c}
            released = ", ".join(
                f"{c['recipient']} ("
                f"{'receipt' if c['recipient'] in receipts_from else c['delivery']})"
                for c in h["custody"] if c["event"] == "released")
            click.echo(f"{h['id']}  {h['version']}  {h['national_marking']}  ({source})"
                       + (f"  released to {released}" if released else ""))

    item_group = _group(cli, "item", "One item, read by a person through the access rule "
                                     "(Art. 7).")

    @item_group.command("show")
    @click.argument("item_id")
    @_node_option
    @click.option("--user", "token", required=True, envvar="GSOMIA_TOKEN", metavar="TOKEN",
                  help="The reader's token (or $GSOMIA_TOKEN).")
    @click.option("--version", "version", help="A version (default: the latest).")
    @json_option
    def item_show(item_id: str, node_dir: str, token: str, version: str | None,
                  as_json: bool) -> None:
        """Show an item if the reader's clearance and need-to-know allow (exit 1 if not).

        Granted or denied, the read is audited.
        """
        from gsomia.core.custody import Holding
        from gsomia.service import handlers

        with _open(node_dir) as node:
            reading = handlers.read_item(node.uow(), schemes=node.catalogue.schemes,
                                         token=token, item_id=item_id, version=version,
                                         now=_now())
            key = (reading.item.item_id, reading.item.version)
            with node.store.repository() as repo:
                history = repo.custody_of(*key)
                releases = repo.releases_by_version(key[0]).get(key, [])
                receipts = repo.receipts_by_version(key[0]).get(key, [])
            doc = {**holding_json(Holding(reading.item, tuple(history)), node, releases,
                                  receipts),
                   "reader": reading.user.name, "decision": reading.decision.to_json(),
                   "audit_seq": reading.seq, "object": reading.item.object()}
        if as_json:
            emit_json(doc)
            return
        click.echo(f"{doc['marking']}  ({doc['national_marking']})")
        click.echo(f"read by {doc['reader']}: " + "; ".join(reading.decision.reasons))
        emit_json(doc["object"])

    # ---- audit ------------------------------------------------------------------------------
    audit_group = _group(cli, "audit", "The node's tamper-evident audit log: verify, signed "
                                       "head, proofs.")

    @audit_group.command("verify")
    @_node_option
    @click.option("--partners", "ask_partners", is_flag=True,
                  help="Also ask each partner for the newest head of this node it holds: "
                       "catches a node rolled back in full (database and head file).")
    @json_option
    def verify(node_dir: str, ask_partners: bool, as_json: bool) -> None:
        """Recompute the log, items and registers from the store (exit 0 intact, 1 not)."""
        from gsomia.service import handlers

        def run(node: Node, tolerant: bool) -> Any:
            with node.store.reader(tolerant=tolerant) as reader, \
                    progress("verifying the audit log", reader.size(),
                             as_json=as_json) as steps:
                counted = _CountingReader(reader, steps) if steps.shown else reader
                return handlers.verify_audit(
                    counted, public_key=node.keys.public_signing_key(), now=_now())

        with _open(node_dir) as node:
            try:
                try:
                    verdict = run(node, False)
                except Exception as exc:
                    if "decode" not in str(exc):
                        raise
                    verdict = run(node, True)  # bytes in a text column: read, then named
            except Exception as exc:  # a store too broken to read was tampered with
                verdict = _unreadable(exc)
            views = _partner_views(node) if ask_partners else None
        failed = [v for v in views or [] if v.failed]
        # Asked, and nobody answered: the roll-back check did not run, which is no pass.
        unasked = bool(views) and all(v.status == "unreachable" for v in views or [])
        ok = verdict.ok and not failed and not unasked
        if as_json:
            doc = verdict.to_json()
            if views is not None:
                doc["partners"] = [v.to_json() for v in views]
                doc["partners_answered"] = not unasked
                doc["ok"] = ok
            emit_json(doc)
        else:
            if verdict.ok:
                click.echo(f"audit log intact: {verdict.size} events, root "
                           f"{verdict.root.hex()}")
            else:
                click.echo(f"audit log TAMPERED: {len(verdict.problems)} problem(s)"
                           + (" (more not shown)" if verdict.truncated else ""), err=True)
                for p in verdict.problems:
                    click.echo(f"  {p.what} at {p.where}: {p.message}", err=True)
            for v in views or []:
                line = f"partner {v.partner}: {v.status}: {v.reason}"
                click.echo(line, err=v.failed)
            if views is not None and not views:
                click.echo("no partners to ask (no partners.json)", err=True)
            if unasked:
                click.echo("no partner answered: the roll-back check did not run", err=True)
        if not ok:
            raise click.exceptions.Exit(1)

    @audit_group.command("accept-head")
    @_node_option
    @click.option("--checked-with-partners", "checked", is_flag=True,
                  help="Confirm you checked this node's log with its partners' operators.")
    @json_option
    def accept_head(node_dir: str, checked: bool, as_json: bool) -> None:
        """Adopt the log's latest head after tree-head.json was lost (recorded in the log).

        Only with --checked-with-partners, only when the log verifies apart from the
        missing head file, and only when no reachable partner holds a head of this node
        that the log does not extend. The adoption is an audit event (head-accepted) naming
        each partner's answer; the commit writes tree-head.json again.
        """
        from gsomia.service import handlers

        if not checked:
            raise MalformedInput("adopting the log's head needs your confirmation",
                                 where="--checked-with-partners",
                                 expected="the flag, after checking the log with the "
                                          "partners' operators")
        with _open(node_dir) as node:
            with node.store.reader() as reader:
                verdict = handlers.verify_audit(
                    reader, public_key=node.keys.public_signing_key(), now=_now())
                latest = handlers.latest_head(reader)
            others = [p for p in verdict.problems
                      if p.what not in ("head-file-missing", "external-head")]
            if verdict.ok or others:
                why = ("the head file is present and the log intact: nothing to accept"
                       if verdict.ok else
                       f"the log has other problems ({others[0].what} at {others[0].where})"
                       ": run gsomia audit verify")
                click.echo(f"refused: {why}", err=True)
                raise click.exceptions.Exit(1)
            views = _partner_views(node)
            failed = [v for v in views if v.failed]
            if failed:
                for v in failed:
                    click.echo(f"refused: partner {v.partner}: {v.reason}", err=True)
                raise click.exceptions.Exit(1)
            uow = node.uow()
            event = handlers.accept_head(
                uow, head=latest, problems=[p.what for p in verdict.problems],
                partners=[{"partner": v.partner, "status": v.status,
                           "size": v.head.size if v.head else None} for v in views],
                now=_now())
            head = uow.committed_head
            if head is not None:
                node.store.write_external_head(head, create=True)
        doc = {"accepted": latest.to_json(), "event": event.seq,
               "partners": [v.to_json() for v in views]}
        if as_json:
            emit_json(doc)
            return
        click.echo(f"head of size {latest.size} accepted (event {event.seq}); "
                   "tree-head.json written again")
        for v in views:
            click.echo(f"  partner {v.partner}: {v.status}")

    @audit_group.command("head")
    @_node_option
    @json_option
    def head(node_dir: str, as_json: bool) -> None:
        """The latest signed tree head."""
        from gsomia.service import handlers

        with _open(node_dir) as node, node.store.reader() as reader:
            latest = handlers.latest_head(reader)
        if as_json:
            emit_json(latest.to_json())
            return
        click.echo(f"size {latest.size}  root {latest.root.hex()}")
        click.echo(f"signed {latest.to_json()['timestamp']} by key {latest.key}")

    @audit_group.command("prove")
    @_node_option
    @click.option("--event", type=int, metavar="N", help="Prove event N is in the log.")
    @click.option("--item", "item", metavar="ID[@VERSION]",
                  help="Prove the event that stored this item is in the log, and where it "
                       "records the item (the version stored last if none is given). With "
                       "--event N of a read of several items: that this item was among them, "
                       "showing none of the others.")
    @click.option("--against", type=int, metavar="HEAD_SIZE",
                  help="Prove the signed head of this size is a prefix of the latest.")
    @click.option("--whole-batch", is_flag=True,
                  help="For an item stored by a batch leaf of the earlier form, which lists "
                       "the whole batch: make the proof anyway, showing every item of the "
                       "batch (for your own records, not to hand to a partner).")
    @click.option("--out", type=click.Path(dir_okay=False), help="Write the proof here.")
    @json_option
    def prove(node_dir: str, event: int | None, item: str | None, against: int | None,
              whole_batch: bool, out: str | None, as_json: bool) -> None:
        """Inclusion and consistency proofs anyone can check with the node's public key."""
        from gsomia.service import handlers

        if event is None and against is None and item is None:
            raise MalformedInput("nothing to prove", where="audit prove",
                                 expected="--event N, --item ID[@VERSION] and/or "
                                          "--against HEAD_SIZE")
        # A STIX id holds no "@": what follows the first one is the version.
        wanted = None if item is None else (item.partition("@")[0],
                                            item.partition("@")[2] or None)
        with _open(node_dir) as node, node.store.reader() as reader:
            doc = handlers.prove(reader, public_key=node.keys.public_signing_key(),
                                 event=event, against=against, party_code=node.party,
                                 item=wanted, whole_batch=whole_batch)
        if out:
            import json

            Path(out).write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n",
                                 encoding="utf-8")
        if as_json or not out:
            emit_json(doc)

    @audit_group.command("check-proof")
    @click.option("--file", "source", required=True, metavar="PROOF.json|-")
    @click.option("--public-key", "public_key", required=True, metavar="KEY",
                  type=click.Path(dir_okay=False),
                  help="The node's public key: keys/signing.pub (PEM) or raw base64url.")
    @json_option
    def check_proof(source: str, public_key: str, as_json: bool) -> None:
        """Check a proof offline (exit 0 valid, 1 invalid)."""
        from gsomia.service import handlers
        from gsomia.shell.keys import load_signing_public

        doc = read_json_input(source, what="an audit proof")
        result = handlers.check_proof(doc, load_signing_public(public_key))
        if as_json:
            emit_json(result.to_json())
            return
        click.echo("proof valid:")
        for line in result.checks:
            click.echo(f"  {line}")

    @audit_group.command("events")
    @_node_option
    @click.option("--item", "item_id", help="Only events naming this item.")
    @click.option("--from", "start", type=int, default=0, show_default=True, metavar="SEQ")
    @click.option("--limit", type=int, default=1000, show_default=True)
    @json_option
    def events(node_dir: str, item_id: str | None, start: int, limit: int,
               as_json: bool) -> None:
        """List audit events in seq order."""
        with _open(node_dir) as node, node.store.reader() as reader:
            rows = reader.events_from(start, limit, item_id)
        if as_json:
            emit_json({"party": node.party, "events": rows})
            return
        for r in rows:
            click.echo(f"{r['seq']:>8}  {r['at']}  {r['kind']:<22} {r['actor']:<12} "
                       f"{r['item_id'] or ''}")


def _partner_views(node: Node) -> list[Any]:
    from gsomia.shell.partner_check import ask_partners

    return ask_partners(node)


def _unreadable(exc: Exception) -> Any:
    """The verdict on a store that cannot even be read the way the node writes it."""
    from gsomia.core.audit import EMPTY_ROOT, LogProblem, LogVerdict

    return LogVerdict(False, 0, EMPTY_ROOT, (LogProblem(
        "unreadable", "database",
        f"the store cannot be read as the node wrote it ({type(exc).__name__}: "
        f"{str(exc)[:300]}): it was changed behind the node's back"),))


class _CountingReader:
    """The store's audit reader, advancing a progress bar as the log's rows are read."""

    def __init__(self, reader: Any, steps: Steps) -> None:
        self._reader, self._steps = reader, steps

    def rows(self) -> Iterator[Any]:
        for n, row in enumerate(self._reader.rows(), 1):
            if n % 256 == 0:
                self._steps.advance(256)
            yield row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _info(node: Node) -> dict[str, Any]:
    from gsomia.shell.store import mask_url

    with node.store.reader() as reader:
        size = reader.size()
        latest = reader.latest_head()
    with node.store.repository() as repo:
        n_items, n_users = repo.count_items(), repo.count_users()
    return {
        "party": node.party, "folder": str(node.folder), "created": node.config.created,
        "database": mask_url(node.store.url), "backend": node.store.dialect,
        "fingerprints": node.keys.fingerprints(),
        "public_key_file": str(node.keys.path("signing_public")),
        "audit": {"size": size, "head_size": latest.size if latest else 0,
                  "root": latest.root.hex() if latest else None},
        "items": n_items, "users": n_users,
    }
