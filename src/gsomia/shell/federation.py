"""A federation of three node processes (JPN, KOR, USA) on loopback: its folder, its
topology, and starting and stopping its nodes (``gsomia federation up|down|status``).

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
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypedDict

from gsomia.core.errors import MalformedInput, PortTaken
from gsomia.core.types import Party

__all__ = ["FEDERATION_FILE", "HANG_S", "LABEL_POLICIES", "PID_FILE", "START_CPU_S", "STILL_S",
           "TOPOLOGIES", "FederationFile", "FederationStatus", "NodeEntry", "NodeState",
           "Started", "await_answer", "configure", "deliveries", "down", "free_base_port",
           "load_federation", "process_cpu_s", "running_pid", "status", "stop_node",
           "stop_process", "up", "up_on_free_ports"]


class NodeEntry(TypedDict):
    """One party's node in ``federation.json``."""

    dir: str
    port: int
    url: str
    deliver_to: list[Party]


class FederationFile(TypedDict):
    """``federation.json``: what ``configure`` wrote."""

    topology: str
    base_port: int
    nodes: dict[Party, NodeEntry]
    label_policy: str | None


class NodeState(NodeEntry):
    pid: int | None
    running: bool
    answers: bool   # it answers TAXII discovery as its party (its pinned CA)


class FederationStatus(TypedDict):
    topology: str
    base_port: int
    label_policy: str | None
    nodes: dict[Party, NodeState]


class Started(FederationStatus):
    started: dict[Party, int]   # the processes this ``up`` started, by party


FEDERATION_FILE = "federation.json"
PID_FILE = "node.pid"
TOPOLOGIES = ("none", "direct", "hub", "trilateral")
# The label policy a topology's publishers pin their labels to (``LabelRequest.policy``).
LABEL_POLICIES = {"trilateral": "trilateral-mwd-2023"}
# A node's start is judged by the CPU it takes, not by the wall clock (await_answer): at a
# load of 20 nodes answered 37 s after they were started, having taken 1.3 to 4 s of CPU,
# and a 60 s wall-clock limit failed starts that were getting on.
START_CPU_S = 60.0   # this much CPU without answering: stuck (15x a loaded start's)
STILL_S = 30.0       # no CPU at all for this long without answering: hung
HANG_S = 600.0       # a last guard, for a process that ticks over and never answers


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


def running_pid(folder: Path) -> int | None:
    """The pid of the node process of ``folder`` while it runs (None: it does not)."""
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


def load_federation(folder: Path) -> FederationFile:
    try:
        data: FederationFile = json.loads((folder / FEDERATION_FILE).read_text("utf-8"))
        return data
    except FileNotFoundError:
        raise MalformedInput(f"{folder} holds no federation", where="--dir",
                             expected="a folder made by gsomia federation up") from None
    except (OSError, ValueError) as exc:
        raise MalformedInput(f"cannot read {folder / FEDERATION_FILE}: {exc}",
                             where="--dir") from None


def configure(folder: Path, topology: str, base_port: int) -> FederationFile:
    """Create missing nodes and write the federation file and each node's partners."""
    from gsomia.shell.catalogue import load_catalogue
    from gsomia.shell.exchange import PARTIES, Partners, Peer
    from gsomia.shell.keys import FileKeyStore, cert_fingerprint
    from gsomia.shell.node import init_node

    folder.mkdir(parents=True, exist_ok=True)
    nodes: dict[Party, NodeEntry] = {}
    peers: dict[Party, Peer] = {}
    shipped = load_catalogue()
    for i, code in enumerate(PARTIES):
        home = folder / code
        if not (home / "node.toml").exists():
            # The shipped agreements know every party's scheme, which is all a new node
            # is checked against; the node processes read the agreements in effect.
            init_node(home, code, catalogue=shipped, now=datetime.now(UTC)).close()
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
    doc: FederationFile = {"topology": topology, "base_port": base_port, "nodes": nodes,
                           "label_policy": LABEL_POLICIES.get(topology)}
    (folder / FEDERATION_FILE).write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    return doc


def up(folder: Path, topology: str, base_port: int, *, cpu_limit: float = START_CPU_S,
       still_s: float = STILL_S, hang_s: float = HANG_S,
       on_ready: Callable[[Party], None] | None = None) -> Started:
    """Start every node of the federation that is not running; wait until all answer
    (:func:`await_answer`)."""
    folder = folder.resolve()
    if (folder / FEDERATION_FILE).exists():
        old = load_federation(folder)
        running = [c for c in old["nodes"] if running_pid(folder / c) is not None]
        if running and (old["topology"] != topology or old["base_port"] != base_port):
            raise MalformedInput(f"the federation is running as {old['topology']} on "
                                 f"{old['base_port']}: run federation down first",
                                 where="--dir")
    doc = configure(folder, topology, base_port)
    started: dict[str, int] = {}
    logged: dict[str, int] = {}   # where each started node's log began
    for code, node in doc["nodes"].items():
        home = Path(node["dir"])
        if running_pid(home) is not None:
            continue
        log = open(home / "node.log", "ab")  # noqa: SIM115 - the child keeps it
        logged[code] = log.tell()
        # -P: the working folder is not put first on the module path, so a ``gsomia``
        # planted there is not what runs with the node's keys.
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "gsomia", "node", "run", "--dir", str(home),
             "--host", "127.0.0.1", "--port", str(node["port"])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        (home / PID_FILE).write_text(f"{proc.pid}\n")
        started[code] = proc.pid
    for code, node in doc["nodes"].items():
        home = Path(node["dir"])
        await_answer(code, home, partial(_answers, node["url"], home, code),
                     port=node["port"], log_since=logged.get(code, 0),
                     cpu_limit=cpu_limit, still_s=still_s, hang_s=hang_s)
        if on_ready is not None:  # a progress bar's advance: one node answers
            on_ready(code)
    return {**status(folder), "started": started}


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds taken by the process ``pid`` and its live children (a node's workers);
    None where ``/proc`` does not tell (not Linux)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces: fields follow its last ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def await_answer(code: Party, home: Path, answers: Callable[[], bool], *, port: int,
                 log_since: int = 0, cpu_limit: float = START_CPU_S,
                 still_s: float = STILL_S, hang_s: float = HANG_S,
                 cpu: Callable[[int], float | None] = process_cpu_s,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    """Until the node of ``code`` in ``home`` ``answers()``, judged by the CPU its process
    takes, not by the wall clock: a start that goes on taking CPU is not cut however loaded
    the machine; one whose process ended, that took ``cpu_limit`` s of CPU, or none at all
    for ``still_s`` s, without answering is stuck and fails at once, naming the node and
    its log. ``hang_s`` of wall time is a last guard, for a process that ticks over without
    ever answering (where ``/proc`` does not tell the CPU, the only one)."""
    log = home / "node.log"
    began = clock()
    hang = began + hang_s
    first: float | None = None      # its CPU when the wait began (a running node has a past)
    used = last = -1.0              # its CPU at the latest reading, and when that moved
    moved = read = began - 1.0
    while not answers():
        pid = running_pid(home)
        if pid is None:
            if _port_taken(log, log_since):
                raise PortTaken(f"port {port} of the {code} node is taken by another process",
                                where="--base-port",
                                expected="a --base-port whose three ports are free")
            raise MalformedInput(f"the {code} node exited at start: see {log}", where="--dir")
        now = clock()
        # Read once a second: each reading goes through every process in /proc (4 ms of
        # CPU with 200 of them), and the limits are tens of seconds.
        reading = cpu(pid) if now - read >= 1.0 else None
        if reading is not None:
            read, used = now, reading
            if first is None:
                first, moved = used, now
            if used != last:
                # Less counts too: a child (a worker) that ended takes its CPU out of the
                # reading, and a start getting on read as still until it passed the old peak.
                last, moved = used, now
            if used - first >= cpu_limit:
                raise MalformedInput(f"the {code} node took {used - first:.0f} s of CPU "
                                     f"without answering (stuck): see {log}", where="--dir")
            if now - moved >= still_s:
                raise MalformedInput(f"the {code} node took no CPU for {now - moved:.0f} s "
                                     f"without answering (hung): see {log}", where="--dir")
        if now > hang:
            took = f", having taken {used - first:.1f} s of CPU" if first is not None else ""
            raise MalformedInput(f"the {code} node did not answer within {hang_s:.0f} s"
                                 f"{took}: see {log}", where="--dir")
        sleep(0.1)


def _port_taken(log: Path, since: int) -> bool:
    """Whether what a node wrote to ``log`` from offset ``since`` says it could not listen."""
    try:
        with log.open("rb") as handle:
            handle.seek(since)
            return b"address already in use" in handle.read()
    except OSError:
        return False


def up_on_free_ports(folder: Path, topology: str, *, first_base: int | None = None,
                     attempts: int = 5, hang_s: float = HANG_S) -> Started:
    """:func:`up` on ports nobody listens on, from ``first_base`` if given, else from
    :func:`free_base_port`: another process may take one of them before its node binds it
    (a node takes a second to start), and the federation then starts again on other free
    ports, at most ``attempts`` times in all. For a federation none of whose nodes runs (a
    running one keeps its ports: :func:`up`)."""
    bases = [first_base] if first_base is not None else []
    for _ in range(attempts - 1):
        try:
            return up(folder, topology, bases.pop() if bases else free_base_port(),
                      hang_s=hang_s)
        except PortTaken:
            down(folder)   # the nodes that did start, on ports of the abandoned base
    return up(folder, topology, free_base_port(), hang_s=hang_s)


def stop_node(home: Path, timeout: float = 10.0) -> str:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; how it stopped."""
    return _await_stop(home, _terminate(home), timeout)


def _terminate(home: Path) -> int | None:
    pid = running_pid(home)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    return pid


def _await_stop(home: Path, pid: int | None, timeout: float) -> str:
    if pid is None:
        (home / PID_FILE).unlink(missing_ok=True)
        return "not running"
    end = time.monotonic() + timeout
    how = "stopped"
    while running_pid(home) is not None:
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


def status(folder: Path) -> FederationStatus:
    doc = load_federation(folder.resolve())
    nodes: dict[Party, NodeState] = {}
    for code, node in doc["nodes"].items():
        home = Path(node["dir"])
        pid = running_pid(home)
        nodes[code] = {**node, "pid": pid, "running": pid is not None,
                       "answers": pid is not None and _answers(node["url"], home, code)}
    return {"topology": doc["topology"], "base_port": doc["base_port"],
            "label_policy": doc.get("label_policy"), "nodes": nodes}


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM (a node stops gracefully), then SIGKILL after ``timeout`` seconds; its exit
    code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
