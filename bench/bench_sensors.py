"""The node's warning centre and sensor feeds (issue 12).

- salvo: 50 missiles (the 2017-08-29 Hwasong-12 fitted on bearings 60-85 degrees, launched
  together; each radar's scan sees all of those in its beam at once) seen by every radar of
  the catalogue (JPN, KOR, USA), their measurements turned
  into shared reports (one per sensor and second, as the intake makes them) and fed to one
  node's centre (``core.node_centre.NodeCentre``) in report-time order, for the first
  ``SALVO_S`` seconds of flight. It keeps up at 10x real time if feeding ``SALVO_S`` seconds
  of flight takes at most ``SALVO_S / 10`` seconds of CPU (in this process, alone on a core:
  the machine has 2). Figures: CPU seconds, the real-time factor it could sustain, and the
  worst lag of the centre behind the feed at 10x (how far its CPU time ran ahead of the
  flight's wall time at 10x at any point).
- measurement in, warning out: a real ``gsomia node run`` (JPN, no partners) fed the launch
  (JPN's radars, the whole flight) ``LATENCY_ROUNDS`` times in sequence over HTTPS at
  ``LATENCY_SPEED`` times real time, each round the same flight under a later lift-off (its
  epoch moved past the previous round's last measurement, so the centre sees one launch after
  another); for every item the centre published (impact predictions, flight paths,
  warnings), the time from the POST that carried the newest measurement it used until the
  item was stored (p50/p95/p99/max, with counts), split at the node's answer to that POST
  (the intake's commit) from the centre's part. Aim: p99 < 100 ms.
- sensor report to partner: a ``direct`` federation; KOR's node fed its radars over HTTPS (KOR's
  whole view of the flight, ``REPORT_ROUNDS`` rounds in sequence as above, at ``REPORT_SPEED``
  times real time: light load, a report every second or two per radar, about three a second in
  all); for each report, from its publish at KOR (KOR's stamp, before KOR's commit) until JPN's
  answer to its delivery reached KOR's sender (KOR's outbox ``delivered_at``), which JPN sends
  once its commit of the report is done: no earlier than JPN holds it (p50/p95/p99/max); beside
  it, until KOR recorded that answer (``to_recorded_at_kor``: the receipt's audit event; the
  figure's end up to stop 27, when ``delivered_at`` was stamped at the record), and until JPN's
  own stamp (``to_stamp_at_jpn``: taken as JPN's handler parses the batch, before the envelope is
  verified and committed, so earlier than JPN holds it; up to stop 25 this was the figure); and
  where the time went: the POST until KOR answered it (intake and commit) and from that answer
  until JPN's stamp (sender, courier, JPN's receive), and the POST until KOR's handler took it
  (its stamp: the start of what the aim measures); and the same figure split by whether KOR
  published the report while an earlier delivery to JPN (a report, or an output of KOR's centre)
  was still unanswered (``behind_unanswered``: until pipeline20 one batch per partner was in
  flight, so it waited for that answer before it was posted; now it goes beside that batch, two in
  flight at most; two radars' reports come within a few milliseconds of each other now and then)
  or not (``alone``). Aim: p99 < 50 ms.

Up to stop 21 a run counted 27 reports and 43 outputs (one launch, 90 s of KOR's view at real
time, 420 s of JPN's at 20x): a p99 was the slowest one or two. The rounds give several
hundred of each.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SALVO = 50
SALVO_S = 240.0
LATENCY_SPEED, LATENCY_ROUNDS = 20.0, 4
REPORT_SPEED, REPORT_ROUNDS = 4.0, 2
ROUND_GAP_S = 20.0   # flight seconds between one round's last measurement and the next's first
AIM_LATENCY_P99_MS, AIM_REPORT_P99_MS = 100.0, 50.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _salvo_reports() -> list[tuple[float, str, dict[str, Any]]]:
    from dataclasses import replace

    from gsomia.core.sensor_feed import Registered, read_lines, reference_report
    from gsomia.core.tracking.sensors import observe
    from gsomia.core.tracking.trajectory import fit
    from gsomia.core.types import iso
    from gsomia.shell import feeds

    launch = feeds.find_launch("2017-08-29")
    start = launch.launched_at
    assert start is not None
    base = launch.flight_request()
    radars = [s for s in feeds.load_sensors() if s.kind == "radar"]
    reg = {s.id: Registered(s.id, f"{s.owner}-radar-{i}", "rae", s.lat_deg, s.lon_deg,
                            s.height_m) for i, s in enumerate(radars)}
    by_second: dict[tuple[int, str], list[bytes]] = {}
    for k in range(SALVO):
        traj = fit(replace(base, bearing_deg=60.0 + 25.0 * k / (SALVO - 1)))
        for n, s in enumerate(radars):
            # One scan of a radar sees every missile in its beam: the same scan times (and
            # draws) for all of them.
            m = observe(s, traj, 0.0, SALVO_S, np.random.default_rng(n), cued=True)
            for i in range(len(m)):
                r, az, el = (float(v) for v in m.values[i])
                sr, sa, se = (float(v) for v in m.sigmas[i])
                line = {"sensor": s.id, "epoch": iso(start), "t": float(m.times[i]),
                        "range_m": r, "azimuth_deg": float(np.degrees(az)),
                        "elevation_deg": float(np.degrees(el)),
                        "noise": {"range_m": sr, "azimuth_deg": float(np.degrees(sa)),
                                  "elevation_deg": float(np.degrees(se))}}
                second = int(float(m.report_times[i]))
                by_second.setdefault((second, s.id), []).append(json.dumps(line).encode())
    out = []
    latest: dict[str, float] = {}
    for (second, _), lines in sorted(by_second.items()):
        for got, taken in read_lines(lines, reg, latest, 60.0).accepted.items():
            out.append((float(second + 1), reg[got].id.split("-")[0].upper(),
                        reference_report(reg[got], sorted(taken, key=lambda x: x.at))))
    return out


def salvo() -> dict[str, Any]:
    from gsomia.core.node_centre import NodeCentre
    from gsomia.shell import feeds

    reports = _salvo_reports()
    centre = NodeCentre("JPN", feeds.load_geography())
    measurements = sum(len(r["t"]) for _, _, r in reports)
    outputs = 0
    worst_lag = 0.0
    began = _cpu()
    for at, origin, report in reports:
        outputs += len(centre.report(origin, report))
        # At 10x, the report arrives at wall time at / 10; the centre is done with it at
        # its CPU time so far: how far behind is it?
        worst_lag = max(worst_lag, (_cpu() - began) - at / 10.0)
    cpu = _cpu() - began
    tracks = int(centre.counts.get("measurements", 0))
    return {"missiles": SALVO, "flight_s": SALVO_S, "reports": len(reports),
            "measurements": measurements, "taken": tracks, "late": centre.counts.get("late", 0),
            "outputs": outputs, "cpu_s": round(cpu, 2),
            "real_time_factor": round(SALVO_S / cpu, 1) if cpu else None,
            "keeps_up_at_10x": cpu <= SALVO_S / 10.0,
            "worst_lag_at_10x_s": round(max(worst_lag, 0.0), 2)}


def _gsomia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gsomia", *args], capture_output=True,
                          text=True, timeout=900, check=True)


def _operator(folder: Path, name: str, clearance: str) -> str:
    out = _gsomia("user", "add", "--node", str(folder), "--name", name, "--clearance",
                  clearance, "--need-to-know", "dprk-missile", "--role", "operator", "--json")
    return str(json.loads(out.stdout)["token"])


def _percentiles(ms: list[float]) -> dict[str, Any]:
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    return {"n": len(ms), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1)}


@contextmanager
def _federation(topology: str, party: str, name: str, clearance: str
                ) -> Iterator[tuple[Path, str, str]]:
    """A federation on loopback for the block (temporary folders), with an operator at
    ``party``'s node: (the federation folder, that node's URL, the operator's token)."""
    from gsomia.shell import federation

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fed"
        federation.up(folder, topology, federation.free_base_port())
        try:
            token = _operator(folder / party, name, clearance)
            yield folder, federation.load_federation(folder)["nodes"][party]["url"], token
        finally:
            federation.down(folder)


def _stored(folder: Path) -> list[Any]:
    """(id, content, added_at) of every item the node in ``folder`` holds."""
    import sqlalchemy as sa

    from gsomia import bootstrap
    from gsomia.shell.store import items

    node = bootstrap.open_node(folder)
    try:
        with node.store.engine.connect() as conn:
            return list(conn.execute(sa.select(items.c.id, items.c.content,
                                               items.c.added_at)).all())
    finally:
        node.close()


def _outputs_of(folder: Path, party: str) -> list[tuple[float, dict[str, Any]]]:
    """(stored at, object) of the warning centre's outputs the node in ``folder`` holds that
    ``party`` originated (its own centre's, not a partner's it was given)."""
    import sqlalchemy as sa

    from gsomia import bootstrap
    from gsomia.shell.store import items

    node = bootstrap.open_node(folder)
    try:
        with node.store.engine.connect() as conn:
            rows = conn.execute(sa.select(items.c.content, items.c.added_at).where(
                items.c.originator == party, items.c.type == "note")).all()
    finally:
        node.close()
    out = []
    for r in rows:
        obj = json.loads(bytes(r.content))
        if any(prop in obj for prop in OUTPUT_PROPS):
            out.append((r.added_at.timestamp(), obj))
    return out


def _outputs_from_post(outputs: list[tuple[float, dict[str, Any]]],
                       posts: list[tuple[float, float, float]]) -> dict[str, list[float]]:
    """Per output property, ms from the POST that carried an output's newest measurement to
    the output stored. An output's created is the flight instant of the newest measurement
    it used: the batch that carried it is the first whose newest is that late."""
    from gsomia.core.types import instant

    ordered = sorted(posts)
    newest = np.array([p[0] for p in ordered])
    sent = np.array([p[1] for p in ordered])
    ms: dict[str, list[float]] = {}
    for stored_at, obj in outputs:
        for prop in OUTPUT_PROPS:
            if prop not in obj:
                continue
            i = int(np.searchsorted(newest, instant(obj["created"]).timestamp() - 0.002))
            if i < len(sent):
                ms.setdefault(prop, []).append((stored_at - sent[i]) * 1000.0)
    return ms


def _answered(folder: Path, recipient: str) -> list[tuple[str, float, float, float | None]]:
    """(item id, queued, answered, recorded) instants (POSIX s) of every delivery the node in
    ``folder`` queued to ``recipient`` and recorded the answer of. That answer is sent once
    the recipient's commit of the item is done: the item is held there no later. Recorded:
    when the node wrote the recipient's receipt (its audit event; None if not found), the
    end this figure had up to stop 27, when the outbox was stamped as the answer was
    recorded rather than as it came back."""
    import sqlalchemy as sa

    from gsomia import bootstrap
    from gsomia.core.types import instant
    from gsomia.shell.store import audit_events, outbox

    node = bootstrap.open_node(folder)
    try:
        with node.store.engine.connect() as conn:
            rows = conn.execute(sa.select(
                outbox.c.item_id, outbox.c.queued_at, outbox.c.delivered_at).where(
                outbox.c.kind == "delivery", outbox.c.recipient == recipient,
                outbox.c.delivered_at.is_not(None))).all()
            events = conn.execute(sa.select(
                audit_events.c.item_id, audit_events.c.at, audit_events.c.details).where(
                audit_events.c.kind == "receipt")).all()
    finally:
        node.close()
    recorded = {str(e.item_id): instant(e.at).timestamp() for e in events
                if json.loads(e.details).get("peer") == recipient}
    return [(str(r.item_id), r.queued_at.timestamp(), r.delivered_at.timestamp(),
             recorded.get(str(r.item_id))) for r in rows]


def _rounds(lines: list[tuple[float, dict[str, Any]]], rounds: int
            ) -> list[tuple[float, dict[str, Any]]]:
    """``lines`` (report time, measurement) played ``rounds`` times in sequence: round k's
    lift-off (its lines' epoch) and report times moved on by k times the span of the lines
    and ``ROUND_GAP_S``, so that its first report comes ``ROUND_GAP_S`` after the previous
    round's last. The first round keeps the wait before the first report (the node's centre
    gets ready when the indicators come, as with a real launch's hours of warning)."""
    from datetime import timedelta

    from gsomia.core.types import instant, iso

    first, last = lines[0][0], lines[-1][0]
    shift = last - first + ROUND_GAP_S
    out = []
    for k in range(rounds):
        for at, line in lines:
            epoch = iso(instant(line["epoch"]) + timedelta(seconds=k * shift))
            out.append((at + k * shift, {**line, "epoch": epoch}))
    return out


def _logged_target(url: str, token: str, ca: str) -> Any:
    from gsomia.core.types import instant
    from gsomia.shell.sensor_player import Target

    class Logged(Target):
        """Notes each batch: its newest measurement's instant (POSIX s), when it was posted
        and when the node answered."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.posts: list[tuple[float, float, float]] = []
            self.batch_of: dict[float, int] = {}   # a measurement's instant: its post

        def send(self, docs: list[dict[str, Any]]) -> None:
            at = [instant(d["epoch"]).timestamp() + float(d["t"]) for d in docs if "t" in d]
            posted = time.time()
            super().send(docs)
            self.batch_of.update((round(a, 2), len(self.posts)) for a in at)
            self.posts.append((max(at, default=-1e18), posted, time.time()))

    return Logged(url, token, ca)


OUTPUT_PROPS = ("x_gsomia_ipp", "x_gsomia_track", "x_gsomia_warning")


def latency() -> dict[str, Any]:
    from gsomia.core.types import instant
    from gsomia.shell.sensor_player import play, playlist

    indicators, lines = playlist("2017-08-29", None, "JPN", 0, None)
    lines = _rounds(lines, LATENCY_ROUNDS)
    with _federation("none", "JPN", "sato", "極秘") as (folder, url, token):
        target = _logged_target(url, token, str(folder / "JPN" / "tls" / "ca.crt"))
        began = time.monotonic()
        try:
            play(target, indicators, lines, LATENCY_SPEED)
        finally:
            target.close()
        played = time.monotonic() - began
        time.sleep(3.0)
        rows = _stored(folder / "JPN")
    posts = sorted(target.posts)
    newest = np.array([p[0] for p in posts])
    sent = np.array([p[1] for p in posts])
    answered = np.array([p[2] for p in posts])
    ms: dict[str, list[float]] = {}
    intake_ms, centre_ms = [], []
    for r in rows:
        obj = json.loads(bytes(r.content))
        for prop in ("x_gsomia_ipp", "x_gsomia_track", "x_gsomia_warning"):
            if prop not in obj:
                continue
            # An output's created is the flight instant of the newest measurement it used:
            # the batch that carried it is the first whose newest is that late.
            flight = instant(obj["created"]).timestamp()
            i = int(np.searchsorted(newest, flight - 0.002))
            if i < len(sent):
                ms.setdefault(prop, []).append((r.added_at.timestamp() - sent[i]) * 1000.0)
                # Where it went: the POST until the node answered (the intake's commit),
                # and from that answer until the centre published.
                intake_ms.append((answered[i] - sent[i]) * 1000.0)
                centre_ms.append((r.added_at.timestamp() - answered[i]) * 1000.0)
    every = [v for vs in ms.values() for v in vs]
    got = _percentiles(every)
    return {"speed": LATENCY_SPEED, "rounds": LATENCY_ROUNDS, "posts": len(posts),
            "measurements": len(lines),
            "offered_posts_per_s": round(len(posts) / played, 1) if played else None,
            "all": got,
            **{k.removeprefix("x_gsomia_"): _percentiles(v) for k, v in ms.items()},
            "post_to_answer": _percentiles(intake_ms),
            "answer_to_published": _percentiles(centre_ms),
            "aim_p99_ms": AIM_LATENCY_P99_MS,
            "meets_aim": bool(every) and got["p99_ms"] < AIM_LATENCY_P99_MS}


def report_to_partner() -> dict[str, Any]:
    from gsomia.core.types import instant
    from gsomia.shell.sensor_player import play, playlist

    indicators, lines = playlist("2017-08-29", None, "KOR", 0, None)
    lines = _rounds(lines, REPORT_ROUNDS)
    with _federation("direct", "KOR", "kim", "군사II급비밀") as (folder, url, token):
        target = _logged_target(url, token, str(folder / "KOR" / "tls" / "ca.crt"))
        began = time.monotonic()
        try:
            play(target, indicators, lines, REPORT_SPEED)
        finally:
            target.close()
        played = time.monotonic() - began
        time.sleep(3.0)
        stored = {code: {r.id: (r.added_at.timestamp(), json.loads(bytes(r.content)))
                         for r in _stored(folder / code)
                         if b"x_gsomia_sensor_report" in bytes(r.content)}
                  for code in ("KOR", "JPN")}
        deliveries = _answered(folder / "KOR", "JPN")
        kor_outputs = _outputs_from_post(_outputs_of(folder / "KOR", "KOR"), target.posts)
    to_jpn = sorted((queued, at) for _, queued, at, _ in deliveries)
    answered = {item: at for item, _, at, _ in deliveries}
    recorded = {item: at for item, _, _, at in deliveries if at is not None}
    kor, jpn = stored.get("KOR", {}), stored.get("JPN", {})
    # When is a report held at JPN? After JPN's commit of it, which neither node stamps:
    # JPN's added_at is taken as its handler parses the batch, before the envelope is
    # verified and the commit made (an end too early), and JPN's answer, sent after that
    # commit, reaches KOR's sender (an end a little late). The aim is judged on the late end;
    # the early one, and KOR's record of the answer (later still), are given beside it.
    held = {i: answered[i] for i in kor if i in jpn and i in answered}
    ms = [(held[i] - kor[i][0]) * 1000.0 for i in held]
    got = _percentiles(ms)
    stamped_ms = [(jpn[i][0] - kor[i][0]) * 1000.0 for i in kor if i in jpn]
    recorded_ms = [(recorded[i] - kor[i][0]) * 1000.0 for i in held if i in recorded]
    # Published while an earlier delivery to JPN waited for its answer (queued before, in
    # another commit: a report of the same commit goes in the same batch)?
    alone_ms: list[float] = []
    behind_ms: list[float] = []
    for i, (at, _) in kor.items():
        if i in held:
            behind = any(q < at < a for q, a in to_jpn)
            (behind_ms if behind else alone_ms).append((held[i] - at) * 1000.0)
    # Where the time went: the post that carried a report's measurements.
    intake_ms, onward_ms, reach_ms = [], [], []
    for i, (taken, obj) in kor.items():
        rep = obj["x_gsomia_sensor_report"]
        n = target.batch_of.get(round(instant(rep["epoch"]).timestamp() + max(rep["t"]), 2))
        if n is None or i not in jpn:
            continue
        post = target.posts[n]
        intake_ms.append((post[2] - post[1]) * 1000.0)
        onward_ms.append((jpn[i][0] - post[2]) * 1000.0)
        reach_ms.append((taken - post[1]) * 1000.0)
    return {"reports_published": len(kor), "held_at_jpn": len(stamped_ms), **got,
            "to_stamp_at_jpn": _percentiles(stamped_ms),
            "to_recorded_at_kor": _percentiles(recorded_ms),
            "speed": REPORT_SPEED, "rounds": REPORT_ROUNDS,
            "offered_reports_per_s": round(len(kor) / played, 2) if played else None,
            "post_to_taken_at_kor": _percentiles(reach_ms),
            "post_to_answer_at_kor": _percentiles(intake_ms),
            "answer_to_held_at_jpn": _percentiles(onward_ms),
            "alone": _percentiles(alone_ms), "behind_unanswered": _percentiles(behind_ms),
            # KOR's own centre's outputs, from the POST of their newest measurement: what
            # its pass's head start for the couriers costs KOR's own warnings (headstart29).
            "kor_outputs_from_post": _percentiles([v for vs in kor_outputs.values()
                                                   for v in vs]),
            **{f"kor_{k.removeprefix('x_gsomia_')}s_from_post": _percentiles(v)
               for k, v in kor_outputs.items()},
            "aim_p99_ms": AIM_REPORT_P99_MS,
            "meets_aim": bool(ms) and got["p99_ms"] < AIM_REPORT_P99_MS}


# Each part runs alone as ``python -m bench sensors:PART`` (the report's figure in ~3 min
# instead of the whole module's ~7).
PARTS = {"salvo": salvo, "measurement_to_warning": latency,
         "report_to_partner": report_to_partner}


def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fn in PARTS.items():
        out[name] = fn()
        print(name, json.dumps(out[name]), flush=True)
    return out
