"""Sensor feeds into real nodes and the node's warning centre (issue 12, parts 1 and 2).

Real ``gsomia node run`` processes on loopback (``Federation.running``), measurements played
by ``gsomia sensors run`` (the regimes: ``test_demo.py``):

- the intake refuses strangers (401), readers (403), oversized bodies (413) and each bad line
  with its reason, and the reports it publishes do not carry the sensor's site;
- a JPN node killed (SIGKILL) mid-flight resumes from its store: every warning once, the
  same ones as a centre fed the same holdings without a break.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from test_federation import Federation
from test_limits import read_response

from gsomia.shell import exchange, federation
from gsomia.shell.node import Node
from starting import waited

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]

NDJSON = "application/x-ndjson"
LAUNCH = "2017-08-29"
SPEED = "40"
WAIT = 60.0


def gsomia(*args: str, stdin: str | None = None, timeout: float = 240
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gsomia", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def user(folder: Path, name: str, clearance: str, role: str = "operator") -> str:
    out = gsomia("user", "add", "--node", str(folder), "--name", name, "--clearance",
                 clearance, "--need-to-know", "dprk-missile", "--role", role, "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["token"])


def url(fed: Federation, code: str) -> str:
    return str(federation.load_federation(fed.folder)["nodes"][code]["url"])


def notes(node: Node, prop: str) -> list[dict[str, Any]]:
    from gsomia.shell.store import items

    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(items.c.id, items.c.originator, items.c.content)
                            .order_by(items.c.seq)).all()
    out = []
    for r in rows:
        obj = json.loads(bytes(r.content))
        if prop in obj:
            out.append({"id": r.id, "originator": r.originator, **obj[prop]})
    return out


def first_warning_s(node: Node) -> float | None:
    own = [w for w in notes(node, "x_gsomia_warning") if w["originator"] == node.party]
    issued = [float(w["at_s"]) for w in own if w["action"] == "issued"]
    return min(issued) if issued else None


def settled(node: Node, quiet_s: float = 3.0, timeout: float = WAIT) -> None:
    """Wait until the node has stored nothing new for ``quiet_s``; fail if it is still
    storing after ``timeout`` (a hang guard): the counts compared next would not be final."""
    last, since = -1, time.monotonic()

    def quiet() -> bool:
        nonlocal last, since
        with node.store.repository() as repo:
            n = repo.count_items()
        if n != last:
            last, since = n, time.monotonic()
        return time.monotonic() - since > quiet_s

    waited(quiet, f"{node.party}'s node to store nothing new for {quiet_s:g} s",
           lambda: f"{last} items, the latest stored {time.monotonic() - since:.1f} s before",
           timeout=timeout, interval=0.2)


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """One federation under ``none`` for the module: the intake's test uses only KOR's node,
    the killed node's test only JPN's, and under ``none`` nothing passes between them, so
    neither sees what the other did (three node starts fewer: 24.2 -> 19.8 s of the file's
    CPU, side by side)."""
    with Federation.running(tmp_path_factory.mktemp("alone") / "fed", "none") as fed:
        yield fed


# ---- the intake --------------------------------------------------------------------------------


def test_the_intake_refuses_strangers_readers_big_bodies_and_bad_lines(alone: Federation
                                                                       ) -> None:
    fed = alone
    kor = fed.nodes["KOR"]
    folder = fed.folder / "KOR"
    operator = user(folder, "kim", "군사II급비밀")
    reader = user(folder, "lee", "군사II급비밀", role="reader")
    address = url(fed, "KOR") + "/sensors/v1/measurements"
    ca = str(folder / "tls" / "ca.crt")
    good = {"sensor": "kor-greenpine-jincheon", "epoch": "2017-08-28T20:58:00Z",
            "t": 60.0, "range_m": 350000.0, "azimuth_deg": 10.0, "elevation_deg": 20.0,
            "noise": {"range_m": 50.0, "azimuth_deg": 0.05, "elevation_deg": 0.05}}
    lines = [json.dumps(good), "not json", json.dumps({**good, "sensor": "jpn-fps5-sado"}),
             json.dumps({**good, "t": 61.0, "range_m": -5}),
             json.dumps({**good, "t": 30.0}),          # 30 s behind: beyond the window
             json.dumps({**good, "t": 58.0})]          # 2 s behind: within it
    body = "\n".join(lines).encode()
    headers = {"Content-Type": NDJSON}

    def post(token: str | None, data: bytes = body) -> requests.Response:
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(address, data=data, headers={**headers, **auth},
                             verify=ca, timeout=30)

    assert post(None).status_code == 401
    assert post("not-a-token").status_code == 401
    refused = post(reader)
    assert refused.status_code == 403 and "operator" in refused.json()["description"]
    # A body over the bound is refused before it is read (declared, none of it sent).
    host, port = url(fed, "KOR").removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=ca)
    with ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=20),
                         server_hostname=host) as sock:
        sock.sendall(f"POST /sensors/v1/measurements HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {operator}\r\nContent-Type: {NDJSON}\r\n"
                     f"Content-Length: {1024 * 1024 + 1}\r\n\r\n".encode())
        status, _, _ = read_response(sock)
    assert status == 413
    with kor.store.repository() as repo:
        before = repo.count_items()
    answer = post(operator)
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["accepted"] == 2
    reasons = {r["line"]: r["reason"] for r in doc["refused"]}
    assert set(reasons) == {2, 3, 4, 5}
    assert reasons[2] == "not JSON"
    assert "unknown sensor" in reasons[3]
    assert "range_m" in reasons[4]
    assert "window" in reasons[5]
    assert doc["counts"] == {"accepted": 2, "malformed": 2, "out-of-order": 1,
                             "unknown-sensor": 1}
    reports = notes(kor, "x_gsomia_sensor_report")
    assert len(reports) == 1
    with kor.store.repository() as repo:
        assert repo.count_items() == before + 1
    # The report names the radar by pseudonym and measures from the public point: the
    # site (36.9 N 127.4 E, labelled for KOR alone) is not in it.
    text = json.dumps(reports[0])
    assert "jincheon" not in text and "127.4" not in text
    assert reports[0]["sensor"].startswith("KOR-radar-")


# ---- the warning centre ------------------------------------------------------------------------


def test_a_node_killed_mid_flight_resumes_without_warning_twice(alone: Federation) -> None:
    fed = alone
    jpn = fed.nodes["JPN"]
    home = fed.folder / "JPN"
    player = subprocess.Popen(
        [sys.executable, "-m", "gsomia", "sensors", "run", "--launch", LAUNCH, "--party",
         "JPN", "--node", str(home), "--speed", SPEED, "--until", "640", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert exchange.wait_until(lambda: first_warning_s(jpn) is not None, WAIT)
        pid = int((home / federation.PID_FILE).read_text())
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        before = notes(jpn, "x_gsomia_warning")
        assert before, "the node had warned before it was killed"
        _, err = player.communicate(timeout=240)   # the sensors went on meanwhile
        assert player.returncode == 0, err
    finally:
        if player.poll() is None:
            player.kill()
    # What a centre fed the same holdings without a break warns (its own outputs are
    # not its input, so this does not depend on how far the restarted node has got).
    unbroken = sorted(unbroken_warnings(jpn))
    fed.up()   # the same node folder, started again
    # On a loaded machine the restarted centre can be quiet for seconds while it loads
    # the tracker and goes through its holdings: wait for what it should reach, then for
    # nothing more to come.
    waited(lambda: sorted(w["id"] for w in notes(jpn, "x_gsomia_warning")) == unbroken,
           f"the restarted centre's warnings to be the {len(unbroken)} of an unbroken run",
           lambda: sorted(w["id"] for w in notes(jpn, "x_gsomia_warning")),
           timeout=WAIT, interval=0.5)
    settled(jpn)
    after = notes(jpn, "x_gsomia_warning")
    keys = [(w["action"], w["level"], tuple(w["regions"]), w["at_s"]) for w in after]
    assert len(keys) == len(set(keys)), "a warning was published twice"
    assert {w["id"] for w in before} <= {w["id"] for w in after}
    assert len(after) > len(before)       # it went on warning after the restart
    # The same warnings as a centre fed the same holdings without a break.
    assert sorted(w["id"] for w in after) == unbroken


def unbroken_warnings(node: Node) -> list[str]:
    """The ids of the warnings a centre fed ``node``'s holdings in one go would publish."""
    from gsomia.shell.store import items
    from gsomia.shell.warning_centre import CentreWorker, id_secret, output_id

    worker = CentreWorker(node)
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(items.c.originator, items.c.content, items.c.label)
                            .where(items.c.type == "note").order_by(items.c.seq)).all()
    return [output_id(id_secret(node), worker.centre, o)
            for r in rows for o in worker.feed(str(r.originator), bytes(r.content),
                                               label=bytes(r.label))
            if o.category == "warning"]
