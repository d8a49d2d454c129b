"""``federation up|down|status``, ``node run`` and ``consent request|grant|deny|list``.

A federation folder holds one node folder per party (``JPN/``, ``KOR/``, ``USA/``),
``federation.json`` (topology, ports, URLs) and, while it runs, one ``node.pid`` per node.
Each node process (``gsomia node run``) serves the API and runs the sender.

Topologies: ``none`` — three nodes with no partners: none trusts another's certificate or
delivers to it, so nothing crosses; ``direct`` — every pair of parties delivers to each other
(JPN and KOR under the 2016 GSOMIA); ``hub`` — JPN and KOR deliver only to USA, which relays
under TISA and only with the originator's consent; ``trilateral`` — every pair delivers
directly, as under the 2023 real-time missile warning mechanism: the federation file names
its label policy (``trilateral-mwd-2023``), which publishers pin their labels to, so the
release policy lets only launch points, flight paths and impact predictions pass.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from gsomia.core.errors import MalformedInput
from gsomia.core.types import Party
from gsomia.shell.commands.common import emit_json, json_option, progress
from gsomia.shell.consents import consent_decide, consent_request

FEDERATION_FILE = "federation.json"
PID_FILE = "node.pid"
TOPOLOGIES = ("none", "direct", "hub", "trilateral")
# The label policy a topology's publishers pin their labels to (``LabelRequest.policy``).
LABEL_POLICIES = {"trilateral": "trilateral-mwd-2023"}


def deliveries(topology: str, me: Party) -> tuple[Party, ...]:
    """Whom ``me`` delivers to under ``topology``."""
    from gsomia.shell.exchange import PARTIES

    if topology == "none":
        return ()
    if topology in ("direct", "trilateral"):
        return tuple(p for p in PARTIES if p != me)
    if topology == "hub":
        return ("USA",) if me != "USA" else tuple(p for p in PARTIES if p != "USA")
    raise MalformedInput(f"unknown topology {topology!r}", where="--topology",
                         expected=" or ".join(TOPOLOGIES))


def free_base_port() -> int:
    """A base port with three free ports above it on 127.0.0.1 (one per party)."""
    import socket

    for _ in range(50):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 30000
        socks: list[socket.socket] = []
        try:
            for i in range(3):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise MalformedInput("no three free ports found on 127.0.0.1", where="--base-port",
                         expected="a --base-port whose three ports are free")


def _pid(folder: Path) -> int | None:
    try:
        pid = int((folder / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie child of ours counts as gone.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return None
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as handle:
            if handle.read().split()[2] == "Z":
                return None
    except OSError:
        pass
    return pid


def _answers(url: str, folder: Path, code: Party) -> bool:
    """Whether the node of party ``code`` answers at ``url``, as that party (its pinned CA)."""
    import httpx

    from gsomia.shell.exchange import client_tls

    try:
        with httpx.Client(verify=client_tls(folder, code), timeout=1.0) as client:
            return client.get(url.rstrip("/") + "/taxii2/").status_code < 500
    except (httpx.HTTPError, OSError):
        return False


def load_federation(folder: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((folder / FEDERATION_FILE).read_text("utf-8"))
        return data
    except FileNotFoundError:
        raise MalformedInput(f"{folder} holds no federation", where="--dir",
                             expected="a folder made by gsomia federation up") from None
    except (OSError, ValueError) as exc:
        raise MalformedInput(f"cannot read {folder / FEDERATION_FILE}: {exc}",
                             where="--dir") from None


def configure(folder: Path, topology: str, base_port: int) -> dict[str, Any]:
    """Create missing nodes and write the federation file and each node's partners."""
    from gsomia import bootstrap
    from gsomia.shell.exchange import PARTIES, Partners, Peer
    from gsomia.shell.keys import FileKeyStore, cert_fingerprint

    folder.mkdir(parents=True, exist_ok=True)
    nodes: dict[str, dict[str, Any]] = {}
    peers: dict[Party, Peer] = {}
    for i, code in enumerate(PARTIES):
        home = folder / code
        if not (home / "node.toml").exists():
            bootstrap.init_node(home, code).close()
        keys = FileKeyStore(home, code)
        port = base_port + i
        url = f"https://127.0.0.1:{port}"
        nodes[code] = {"dir": str(home), "port": port, "url": url,
                       "deliver_to": list(deliveries(topology, code))}
        peers[code] = Peer(code, url, keys.public_signing_key(),
                           keys.envelope_key().public_key(),
                           cert_fingerprint(keys.certificate("ca")))
    for code in PARTIES:
        home = folder / code
        # With no partners a node knows and trusts only itself (a folder reused from
        # another topology loses the partners' CAs).
        known = peers if topology != "none" else {code: peers[code]}
        Partners(code, topology, known, deliveries(topology, code)).write(home)
        trusted = home / "tls" / "partners"
        trusted.mkdir(parents=True, exist_ok=True)
        for other in PARTIES:
            if other == code:
                continue
            if other in known:
                (trusted / f"{other}.crt").write_bytes(
                    (folder / other / "tls" / "ca.crt").read_bytes())
            else:
                (trusted / f"{other}.crt").unlink(missing_ok=True)
    doc = {"topology": topology, "base_port": base_port, "nodes": nodes,
           "label_policy": LABEL_POLICIES.get(topology)}
    (folder / FEDERATION_FILE).write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    return doc


def up(folder: Path, topology: str, base_port: int, *, timeout: float = 60.0,
       on_ready: Any = None) -> dict[str, Any]:
    """Start every node of the federation that is not running; wait until all answer."""
    folder = folder.resolve()
    if (folder / FEDERATION_FILE).exists():
        old = load_federation(folder)
        running = [c for c in old["nodes"] if _pid(folder / c) is not None]
        if running and (old["topology"] != topology or old["base_port"] != base_port):
            raise MalformedInput(f"the federation is running as {old['topology']} on "
                                 f"{old['base_port']}: run federation down first",
                                 where="--dir")
    doc = configure(folder, topology, base_port)
    started: dict[str, int] = {}
    for code, node in doc["nodes"].items():
        home = Path(node["dir"])
        if _pid(home) is not None:
            continue
        log = open(home / "node.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "gsomia", "node", "run", "--dir", str(home),
             "--host", "127.0.0.1", "--port", str(node["port"])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        (home / PID_FILE).write_text(f"{proc.pid}\n")
        started[code] = proc.pid
    end = time.monotonic() + timeout
    for code, node in doc["nodes"].items():
        home = Path(node["dir"])
        while not _answers(node["url"], home, code):
            if _pid(home) is None:
                raise MalformedInput(f"the {code} node exited at start: see {home}/node.log",
                                     where="--dir")
            if time.monotonic() > end:
                raise MalformedInput(f"the {code} node did not answer within {timeout:.0f} s",
                                     where="--dir")
            time.sleep(0.1)
        if on_ready is not None:  # a progress bar's advance: one node answers
            on_ready(code)
    return {**status(folder), "started": started}


def stop_node(home: Path, timeout: float = 10.0) -> str:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; how it stopped."""
    return _await_stop(home, _terminate(home), timeout)


def _terminate(home: Path) -> int | None:
    pid = _pid(home)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    return pid


def _await_stop(home: Path, pid: int | None, timeout: float) -> str:
    if pid is None:
        (home / PID_FILE).unlink(missing_ok=True)
        return "not running"
    end = time.monotonic() + timeout
    how = "stopped"
    while _pid(home) is not None:
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            how = "killed"
            end = time.monotonic() + 5
        time.sleep(0.05)
    (home / PID_FILE).unlink(missing_ok=True)
    return how


def down(folder: Path, timeout: float = 10.0) -> dict[str, str]:
    """Stop every node; all are told at once, since each one's graceful shutdown waits for
    the connections its partners hold open to it."""
    doc = load_federation(folder.resolve())
    homes = {code: Path(node["dir"]) for code, node in doc["nodes"].items()}
    pids = {code: _terminate(home) for code, home in homes.items()}
    return {code: _await_stop(home, pids[code], timeout) for code, home in homes.items()}


def status(folder: Path) -> dict[str, Any]:
    doc = load_federation(folder.resolve())
    nodes = {}
    for code, node in doc["nodes"].items():
        home = Path(node["dir"])
        pid = _pid(home)
        nodes[code] = {**node, "pid": pid, "running": pid is not None,
                       "answers": pid is not None and _answers(node["url"], home, code)}
    return {"topology": doc["topology"], "base_port": doc["base_port"],
            "label_policy": doc.get("label_policy"), "nodes": nodes}


def run_node(node_dir: str, host: str, port: int, log_level: str) -> None:
    """Serve the node's API and run its sender and warning centre in the same process until
    SIGTERM."""
    from gsomia import bootstrap
    from gsomia.shell.commands import serve as serve_cmd
    from gsomia.shell.exchange import start_sender
    from gsomia.shell.node import taxii_collections
    from gsomia.shell.partner_check import check_at_start

    serve_cmd.refuse_exposed_keys(node_dir)  # before the sender starts with the key
    node = bootstrap.open_node(node_dir)
    try:
        check_at_start(node)  # before anything is sent or served
        # A collection the agreements do not allow stops the node before anything is sent.
        taxii_collections(Path(node.folder), node.config, node.catalogue)
    except BaseException:
        node.close()
        raise
    thread, stop = start_sender(node)
    from gsomia.shell.notices import start_notices

    notices_thread, notices_stop = start_notices(node)  # incidents, notices, tree heads
    from gsomia.shell.warning_centre import start_centre

    centre_thread, centre_stop = start_centre(node)  # tracks and warns from what it holds
    try:
        # uvicorn turns SIGTERM into a graceful shutdown and returns here.
        serve_cmd.serve(node_dir, host, port, log_level=log_level, check_partners=False)
    finally:
        centre_stop.set()
        centre_thread.join(timeout=5)
        notices_stop.set()
        notices_thread.join(timeout=5)
        stop.set()
        thread.join(timeout=5)
        node.close()


# ---- consent -----------------------------------------------------------------------------------




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
    def run_cmd(node_dir: str, host: str, port: int, log_level: str) -> None:
        """Serve the API and deliver the outbox to partners (one process)."""
        run_node(node_dir, host, port, log_level)

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
                doc = consent_decide(node, request_id, grant, reason)
            emit_json(doc) if as_json else click.echo(f"{doc['request']} {doc['status']}")

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


__all__ = ["configure", "deliveries", "down", "register", "status", "up"]
