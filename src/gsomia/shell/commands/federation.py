"""``federation up|down|status``, ``node run``, ``consent request|grant|deny|list`` and
``consent standing grant|revoke|list``: the
federation itself (folder, topologies, node processes) is :mod:`gsomia.shell.federation`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from gsomia.core.errors import MalformedInput
from gsomia.shell.commands.common import emit_json, json_option, progress
from gsomia.shell.consents import (
    answer_consent,
    consent_request,
    standing_grant,
    standing_list,
    standing_revoke,
)
from gsomia.shell.federation import TOPOLOGIES, down, status, stop_process, up


def run_node(node_dir: str, host: str, port: int, log_level: str, *,
             listen_fd: int | None = None, worker: int = 0) -> None:
    """Serve the node's API and run its sender and warning centre in the same process until
    SIGTERM.

    ``listen_fd``: serve on this inherited socket, as worker ``worker`` of
    :func:`run_workers` (which checked the node at start); only worker 0 exchanges tree
    heads with partners."""
    import socket

    from gsomia import bootstrap
    from gsomia.shell.commands import serve as serve_cmd
    from gsomia.shell.exchange import CourierProgress, start_sender, stop_background
    from gsomia.shell.node import taxii_collections
    from gsomia.shell.partner_check import check_at_start
    from gsomia.shell.signatures import SignatureWorker

    serve_cmd.refuse_exposed_keys(node_dir)  # before the sender starts with the key
    # Before the node is opened: the worker is forked holding no key and no open file.
    signatures = SignatureWorker().start()
    try:
        node = bootstrap.open_node(node_dir)
    except BaseException:
        signatures.close()
        raise
    node.signatures.close()
    node.signatures = signatures
    try:
        if listen_fd is None:
            check_at_start(node)  # before anything is sent or served
        # A collection the agreements do not allow stops the node before anything is sent.
        taxii_collections(Path(node.folder), node.config, node.catalogue)
    except BaseException:
        node.close()
        raise
    node.store.copy_heads_behind()  # the centre's and the sender's commits
    node.store.checkpoint_behind()
    # The couriers tell the centre how far they got: its pass gives way to their posts.
    progress = CourierProgress()
    thread, stop = start_sender(node, progress)
    from gsomia.shell.notices import start_notices

    heads = start_notices(node) if worker == 0 else None  # tree heads
    from gsomia.shell.warning_centre import centre_elsewhere, start_centre

    # One centre per node: it tracks and warns from what the node holds (several would
    # each publish the same warnings).
    centre = start_centre(node, progress) if worker == 0 else None
    if centre is None:
        centre_elsewhere(Path(node.folder))
    # The sender first: the answer to a batch it has in flight is what a kill would lose
    # (its rows go again and the partner answers them twice); the others lose nothing.
    loops = [(thread, stop), *(loop for loop in (heads, centre) if loop is not None)]

    def stop_loops() -> None:
        for _, told in loops:
            told.set()

    try:
        # uvicorn turns SIGTERM into a graceful shutdown and returns here; the loops are
        # told to stop as it begins, and end while it waits for the requests running.
        serve_cmd.serve(node_dir, host, port, log_level=log_level, check_partners=False,
                        sockets=None if listen_fd is None else [socket.socket(
                            fileno=listen_fd)], signatures=signatures, on_stop=stop_loops)
    finally:
        stop_background(loops, timeout=5)
        node.close()


def run_workers(node_dir: str, host: str, port: int, log_level: str, workers: int) -> int:
    """``workers`` processes of one node over its PostgreSQL database, each serving the API
    on one shared listening socket (the kernel hands each connection to one of them) and
    running a sender; until SIGTERM, which is passed on to all. The exit code: 0, or the
    first worker's that stopped on its own (the others are then stopped too).

    The database is what they share, and what keeps them apart: one writer at a time
    appends to the log and signs its head (an advisory lock), each outbox row is taken by
    one sender at a time (``FOR UPDATE SKIP LOCKED`` and a lease), and TAXII cursors are
    keyed by the node's key, so any worker reads the next page of any other's."""
    import socket

    from gsomia import bootstrap
    from gsomia.shell.commands import serve as serve_cmd
    from gsomia.shell.node import taxii_collections
    from gsomia.shell.partner_check import check_at_start
    from gsomia.shell.stop_with import STOP_WITH_ENV

    if not 1 <= workers <= 64:
        raise MalformedInput(f"{workers} is not a number of worker processes",
                             where="--workers", expected="1 to 64")
    serve_cmd.refuse_exposed_keys(node_dir)
    with bootstrap.open_node(node_dir) as node:
        if node.store.dialect != "postgresql":
            raise MalformedInput(
                f"--workers {workers}: this node's database is {node.store.dialect}, which "
                "has one writer process", where="--workers",
                expected="--workers 1, or a node whose database is PostgreSQL "
                         "(gsomia node init --db postgresql+psycopg://USER@HOST/DB)")
        check_at_start(node)
        taxii_collections(Path(node.folder), node.config, node.catalogue)
    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                    else socket.AF_INET, backlog=2048)
    listener.set_inheritable(True)
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop_all(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    # Each worker stops with this process (even killed: it cannot pass SIGTERM on then), so
    # none serves or sends for a node nobody runs. Named by its pid at the worker's start,
    # not read there as its parent: one already gone by then would name the orphans' reaper.
    env = {**os.environ, STOP_WITH_ENV: str(os.getpid())}
    try:
        for k in range(workers):
            # -P: not a ``gsomia`` planted in the working folder (see federation.up).
            children.append(subprocess.Popen(
                [sys.executable, "-P", "-m", "gsomia", "node", "run", "--dir", str(node_dir),
                 "--host", host, "--port", str(port), "--log-level", log_level,
                 "--listen-fd", str(listener.fileno()), "--worker", str(k)],
                pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL, env=env))
        listener.close()  # the workers hold it
        click.echo(f"gsomia node: {workers} workers on https://{host}:{port}/taxii2/",
                   err=True)
        code = 0
        while any(c.poll() is None for c in children):
            ended = [c for c in children if c.returncode is not None]
            if ended and not stopping:
                code = ended[0].returncode or 1
                stop_all(signal.SIGTERM, None)
            time.sleep(0.1)
        return code
    finally:
        stop_all(signal.SIGTERM, None)
        for child in children:
            stop_process(child, timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()


def register(cli: click.Group) -> None:
    group = cli.commands.get("federation")
    if not isinstance(group, click.Group):
        @cli.group("federation")
        def federation_group() -> None:
            """Three node processes (JPN, KOR, USA) on loopback: none, direct, hub, trilateral."""

        group = federation_group

    @group.command("up")
    @click.option("--dir", "folder", required=True, type=click.Path(file_okay=False))
    @click.option("--topology", default="direct", show_default=True,
                  type=click.Choice(TOPOLOGIES))
    @click.option("--base-port", default=18443, show_default=True, type=int)
    @json_option
    def up_cmd(folder: str, topology: str, base_port: int, as_json: bool) -> None:
        """Initialise the nodes if needed and start one process per party."""
        if not 0 < base_port < 65534:
            raise MalformedInput(f"{base_port} is not a TCP port", where="--base-port")
        with progress("waiting for the nodes", 3, as_json=as_json) as steps:
            doc = up(Path(folder), topology, base_port, on_ready=lambda _: steps.advance())
        if as_json:
            emit_json(doc)
            return
        for code, node in doc["nodes"].items():
            click.echo(f"{code}  {node['url']}  pid {node['pid']}  → "
                       f"{', '.join(node['deliver_to']) or 'nobody (no partners)'}")

    @group.command("down")
    @click.option("--dir", "folder", required=True, type=click.Path(file_okay=False))
    @click.option("--timeout", default=10.0, show_default=True, type=float,
                  help="Seconds between SIGTERM and SIGKILL.")
    @json_option
    def down_cmd(folder: str, timeout: float, as_json: bool) -> None:
        """Stop the federation's node processes (SIGTERM, then SIGKILL)."""
        doc = down(Path(folder), timeout)
        if as_json:
            emit_json(doc)
            return
        for code, how in doc.items():
            click.echo(f"{code}  {how}")

    @group.command("status")
    @click.option("--dir", "folder", required=True, type=click.Path(file_okay=False))
    @json_option
    def status_cmd(folder: str, as_json: bool) -> None:
        """Which nodes run and answer."""
        doc = status(Path(folder))
        if as_json:
            emit_json(doc)
            return
        for code, node in doc["nodes"].items():
            state = "answers" if node["answers"] else \
                ("running" if node["running"] else "stopped")
            click.echo(f"{code}  {node['url']}  {state}")

    node_group = cli.commands.get("node")
    if not isinstance(node_group, click.Group):
        @cli.group("node")
        def node_group_fn() -> None:
            """Create, inspect and serve a node."""

        node_group = node_group_fn

    @node_group.command("run")
    @click.option("--dir", "node_dir", required=True, type=click.Path(file_okay=False))
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8443, show_default=True, type=int)
    @click.option("--log-level", default="warning", show_default=True,
                  type=click.Choice(["critical", "error", "warning", "info", "debug"]))
    @click.option("--workers", default=1, show_default=True, type=int,
                  help="Processes, each serving the API and delivering the outbox "
                       "(more than 1 needs the node's database on PostgreSQL).")
    @click.option("--listen-fd", type=int, default=None, hidden=True)
    @click.option("--worker", "worker", type=int, default=0, hidden=True)
    def run_cmd(node_dir: str, host: str, port: int, log_level: str, workers: int,
                listen_fd: int | None, worker: int) -> None:
        """Serve the API and deliver the outbox to partners (one process, or --workers N
        over one PostgreSQL database)."""
        from gsomia.shell.stop_with import stop_with_named_process

        stop_with_named_process()   # $GSOMIA_STOP_WITH: refused here, before anything starts
        if listen_fd is None and workers != 1:
            code = run_workers(node_dir, host, port, log_level, workers)
            if code:
                raise SystemExit(code)
            return
        run_node(node_dir, host, port, log_level, listen_fd=listen_fd, worker=worker)

    consent = cli.commands.get("consent")
    if not isinstance(consent, click.Group):
        @cli.group("consent")
        def consent_group() -> None:
            """The originator's consent to pass an item to a third party."""

        consent = consent_group

    def _node(node_dir: str) -> Any:
        from gsomia import bootstrap

        return bootstrap.open_node(node_dir)

    @consent.command("request")
    @click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False))
    @click.option("--item", "item_id", required=True)
    @click.option("--to", "to", required=True, help="The third party to release to.")
    @click.option("--reason", default="", help="Why, for the originator's operator.")
    @json_option
    def request_cmd(node_dir: str, item_id: str, to: str, reason: str, as_json: bool) -> None:
        """As holder, ask the item's originator to consent to a release to TO."""
        with _node(node_dir) as node:
            doc = consent_request(node, item_id, to, reason)
        emit_json(doc) if as_json else click.echo(doc["request"])

    for name, grant in (("grant", True), ("deny", False)):
        @consent.command(name)
        @click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False))
        @click.option("--request", "request_id", required=True)
        @click.option("--reason", default="")
        @json_option
        def decide_cmd(node_dir: str, request_id: str, reason: str, as_json: bool,
                       grant: bool = grant) -> None:
            """As originator, answer a consent request (the holder is told)."""
            with _node(node_dir) as node:
                doc = answer_consent(node, request_id, grant, reason)
            emit_json(doc) if as_json else click.echo(f"{doc['request']} {doc['status']}")

    @consent.group("standing")
    def standing_group() -> None:
        """Standing consents: relays of a category of the originator's items, for one
        purpose, to one recipient, for a validity period, until revoked."""

    @standing_group.command("grant")
    @click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False))
    @click.option("--to", "to", required=True, help="The third party relays may go to.")
    @click.option("--category", "categories", required=True, multiple=True,
                  help="A label category covered (repeat for more).")
    @click.option("--purpose", required=True, help="The label purpose covered.")
    @click.option("--from", "since", default=None,
                  help="Valid from (ISO 8601 instant; default now).")
    @click.option("--until", required=True, help="Valid until (ISO 8601 instant, exclusive).")
    @json_option
    def standing_grant_cmd(node_dir: str, to: str, categories: tuple[str, ...], purpose: str,
                           since: str | None, until: str, as_json: bool) -> None:
        """As originator, consent in advance to relays to TO (sent to the partners)."""
        with _node(node_dir) as node:
            doc = standing_grant(node, to=to, categories=list(categories), purpose=purpose,
                                 until=until, since=since)
        emit_json(doc) if as_json else click.echo(
            f"{doc['id']}  → {doc['recipient']}  {', '.join(doc['categories'])}  "
            f"{doc['purpose']}  {doc['not_before']} .. {doc['not_after']}  sent to "
            f"{', '.join(doc['sent_to']) or 'nobody (no partners)'}")

    @standing_group.command("revoke")
    @click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False))
    @click.option("--id", "consent_id", required=True)
    @json_option
    def standing_revoke_cmd(node_dir: str, consent_id: str, as_json: bool) -> None:
        """As originator, revoke a standing consent (the partners are told)."""
        with _node(node_dir) as node:
            doc = standing_revoke(node, consent_id)
        emit_json(doc) if as_json else click.echo(f"{doc['consent_id']} revoked")

    @standing_group.command("list")
    @click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False))
    @json_option
    def standing_list_cmd(node_dir: str, as_json: bool) -> None:
        """Standing consents given and obtained here, with their state."""
        with _node(node_dir) as node:
            rows = standing_list(node)
            me = node.party
        if as_json:
            emit_json({"party": me, "standing_consents": rows})
            return
        for row in rows:
            click.echo(f"{row['id']}  {row['direction']}  {row['originator']} → "
                       f"{row['recipient']}  {', '.join(row['categories'])}  "
                       f"{row['purpose']}  until {row['not_after']}  {row['state']}")

    @consent.command("list")
    @click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False))
    @json_option
    def list_cmd(node_dir: str, as_json: bool) -> None:
        """Consent requests made to and by this node."""
        from gsomia.shell.exchange import consent_rows

        with _node(node_dir) as node:
            rows = consent_rows(node)
            me = node.party
        if as_json:
            emit_json({"party": me, "requests": rows})
            return
        for row in rows:
            click.echo(f"{row['id']}  {row['direction']}  {row['item_id']} → "
                       f"{row['recipient']}  {row['status']}")


__all__ = ["register", "run_node"]
