"""A real launch's measurements played into a party's node, as its sensors would send them.

The party's radars observe the fitted flight of the launch as the scenario model's sensors do
(``core.tracking.sensors.observe``, the same noise and scan draws for a seed), and each
measurement is sent when its report reaches the party's operations centre (its report time),
at real time or ``speed`` times faster, as newline-delimited JSON
(:mod:`gsomia.core.sensor_feed`). The party's own pre-launch indicators about the launch
site (HUMINT, imagery: observed hours before) are sent first, and cue its radars as in the
model. A node folder takes them into its store directly (the node's operator, on its host);
a URL gets them by ``POST /sensors/v1/measurements`` with an operator's token over HTTPS,
trusting the node's CA.

:func:`replay` (``gsomia replay``) plays a node's own sensors into the running node in its
folder, waits for the node's warning centre, and reads back the warnings it issued: nothing
is computed outside the node.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gsomia.core.errors import MalformedInput

if TYPE_CHECKING:
    from gsomia.shell.node import Node

__all__ = ["QUIET_S", "Sink", "Target", "centre_warnings", "cueing", "liftoff", "play",
           "playlist", "replay", "settle"]

# How long a node stores nothing before its centre is taken to be done with what it holds.
QUIET_S = 3.0


def playlist(day: str, index: int | None, party: str, seed: int,
             until_s: float | None = None) -> tuple[list[dict[str, Any]],
                                                    list[tuple[float, dict[str, Any]]]]:
    """(indicator lines, [(report time s, measurement line)]) of ``party`` for the launch."""
    import numpy as np

    from gsomia.core.tracking.trajectory import fit
    from gsomia.core.types import iso
    from gsomia.shell import feeds

    launch = feeds.find_launch(day, index)
    if not launch.fittable:
        raise MalformedInput(f"launch {launch.id} has no recorded apogee and distance",
                             where="launch", expected="a launch with apogee and distance")
    trajectory = fit(launch.flight_request())
    start = liftoff(launch)
    own, cued = cueing(launch, party, seed)
    horizon = trajectory.flight_time_s if until_s is None else min(trajectory.flight_time_s,
                                                                    until_s)
    rng = np.random.default_rng(seed)
    lines: list[tuple[float, dict[str, Any]]] = []
    epoch = iso(start)
    for sensor in feeds.load_sensors():
        # Every sensor takes its draw, as in the model, so a seed gives its measurements.
        sub = np.random.default_rng(rng.integers(2**63))
        if sensor.owner != party or sensor.kind != "radar":
            continue
        m = sensor_observe(sensor, trajectory, horizon, sub, cued)
        for i in range(len(m)):
            r, az, el = (float(v) for v in m.values[i])
            sr, sa, se = (float(v) for v in m.sigmas[i])
            lines.append((float(m.report_times[i]), {
                "sensor": sensor.id, "epoch": epoch, "t": round(float(m.times[i]), 6),
                "range_m": round(r, 3), "azimuth_deg": round(math.degrees(az), 9),
                "elevation_deg": round(math.degrees(el), 9),
                "noise": {"range_m": sr, "azimuth_deg": math.degrees(sa),
                          "elevation_deg": math.degrees(se)}}))
    lines.sort(key=lambda x: x[0])
    return [{"indicator": i.to_json()} for i in own], lines


def cueing(launch: Any, party: str, seed: int) -> tuple[list[Any], bool]:
    """``party``'s own pre-launch indicators about the launch's site, and whether they cue
    its radars (as in the scenario model)."""
    from gsomia.core.tracking.indicators import generate, is_cued
    from gsomia.shell import feeds

    start = liftoff(launch)
    others = tuple(sorted({x.facility.id for x in feeds.load_launches()
                           if x.facility.id not in (launch.facility.id, "unknown")}))[:6]
    own = [i for i in generate(launch.facility.id, start, seed, others)
           if i.originator == party and i.facility == launch.facility.id]
    return own, is_cued(own, launch.facility.id, start - timedelta(minutes=1))


def sensor_observe(sensor: Any, trajectory: Any, horizon: float, rng: Any, cued: bool) -> Any:
    from gsomia.core.tracking.sensors import observe

    return observe(sensor, trajectory, 0.0, horizon, rng, cued=cued)


class Target:
    """Where the lines go: a node folder's intake, or a node's HTTPS route."""

    def __init__(self, node: str, token: str | None, ca: str | None,
                 open_node: Callable[[Path], Node] | None = None) -> None:
        self.totals: dict[str, int] = {}
        self.refused: list[dict[str, Any]] = []
        self.url = node if node.startswith(("https://", "http://")) else None
        if self.url is not None:
            import httpx

            if not token:
                raise MalformedInput("no token", where="--token",
                                     expected="an operator's token (or $GSOMIA_TOKEN) for a URL")
            verify: Any = True if ca is None else _ca_context(ca)
            self.client = httpx.Client(verify=verify, timeout=30.0,
                                       headers={"Authorization": f"Bearer {token}"})
        else:
            from gsomia.shell.sensor_intake import SensorIntake

            if open_node is None:
                raise MalformedInput("a node folder needs a way to open it", where="--node",
                                     expected="the node's https:// address")
            self.node = open_node(Path(node))
            self.intake = SensorIntake(self.node)

    def send(self, docs: list[dict[str, Any]]) -> None:
        import orjson

        body = b"\n".join(orjson.dumps(d) for d in docs)
        if self.url is not None:
            import httpx

            try:
                answer = self.client.post(self.url.rstrip("/") + "/sensors/v1/measurements",
                                          content=body,
                                          headers={"Content-Type": "application/x-ndjson"})
            except httpx.HTTPError as exc:
                raise MalformedInput(f"cannot reach the node: {exc}", where="--node",
                                     expected="the URL of a running node") from None
            if answer.status_code != 200:
                raise MalformedInput(f"the node answered {answer.status_code}: "
                                     f"{answer.text[:300]}", where="--node",
                                     expected="an operator's token for that node")
            doc = answer.json()
        else:
            doc = self.intake.take(body.split(b"\n"), datetime.now(UTC)).to_json()
        for name, n in doc["counts"].items():
            self.totals[name] = self.totals.get(name, 0) + int(n)
        self.refused += doc["refused"][:100 - len(self.refused)]

    def close(self) -> None:
        if self.url is not None:
            self.client.close()
        else:
            self.node.close()


def _ca_context(path: str) -> Any:
    import ssl

    if not Path(path).is_file():
        raise MalformedInput(f"no file {path}", where="--ca",
                             expected="the node's CA certificate (tls/ca.crt of its folder)")
    return ssl.create_default_context(cafile=path)


class Sink(Protocol):
    """Where :func:`play` sends each batch of lines."""

    def send(self, docs: list[dict[str, Any]]) -> None: ...


def play(target: Sink, indicators: list[dict[str, Any]],
         lines: list[tuple[float, dict[str, Any]]], speed: float,
         liftoff_at: float | None = None) -> int:
    """Send ``indicators`` at once, then each line at its report time / ``speed`` after
    ``liftoff_at`` (``time.monotonic()``; by default once the indicators are sent); the
    number of batches sent."""
    batches = 0
    if indicators:
        target.send(indicators)
        batches += 1
    began = time.monotonic() if liftoff_at is None else liftoff_at
    i = 0
    while i < len(lines):
        flight = (time.monotonic() - began) * speed
        j = i
        while j < len(lines) and lines[j][0] <= flight:
            j += 1
        if j > i:
            target.send([d for _, d in lines[i:j]])
            batches += 1
            i = j
            continue
        time.sleep(min(max((lines[i][0] - flight) / speed, 0.001), 0.5))
    return batches


def settle(nodes: Mapping[str, Any], busy: Callable[[], bool] = lambda: False,
           quiet_s: float = QUIET_S, timeout: float = 120.0) -> bool:
    """Until every node's warning centre has taken what its node holds, no node has stored
    anything for ``quiet_s`` and nothing is ``busy`` (a delivery pending, a consent being
    asked). The centres are asked (their progress), not guessed from a quiet store: on a
    loaded machine a centre still loading its tracker stored nothing for 3 s, and a flight
    played at 50x was read (and its nodes stopped) before any centre had tracked. False if
    ``timeout`` seconds passed first, said on stderr with what was still moving: the figures
    read next are partial, and a caller must say so too (its JSON's ``settled``)."""
    from gsomia.shell.warning_centre import centre_caught_up

    end = time.monotonic() + timeout
    last: tuple[int, ...] = ()
    since = time.monotonic()
    behind: list[str] = []
    pending = storing = False
    while time.monotonic() < end:
        counts = []
        for node in nodes.values():
            with node.store.repository() as repo:
                counts.append(int(repo.count_items()))
        behind = [p for p, node in nodes.items() if not centre_caught_up(node)]
        pending, storing = busy(), tuple(counts) != last
        if storing or pending or behind:
            last, since = tuple(counts), time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return True
        time.sleep(0.2)
    moving = ([f"the warning centre of {', '.join(behind)} had not taken what its node holds"]
              if behind else []) + (["a delivery or a consent was pending"] if pending else []) \
        + (["a node was still storing"] if storing else [])
    print(f"gsomia: not settled after {timeout:g} s ({'; '.join(moving) or 'never quiet'}):"
          " the figures read now are partial", file=sys.stderr, flush=True)
    return False


def _newest_seq(node: Any) -> int:
    with node.store.repository() as repo:
        return int(repo.newest_item_seq())


def centre_warnings(node: Any, after_seq: int, launched: datetime) -> list[dict[str, Any]]:
    """The warnings the node's own centre stored after ``after_seq``, in the order stored,
    with their time after ``launched`` (the flight instant the centre stamped them with)."""
    import json

    from gsomia.core.types import instant

    with node.store.repository() as repo:
        rows = repo.items_stored_after(after_seq, originator=node.party, stix_type="note")
    out = []
    for item_id, content in rows:
        obj = json.loads(content)
        w = obj.get("x_gsomia_warning")
        if not isinstance(w, dict):
            continue
        after = (instant(str(obj["created"]), where="created") - launched).total_seconds()
        out.append({"id": item_id, "action": w.get("action"), "level": w.get("level"),
                    "after_launch_s": round(after, 1), "regions": list(w.get("regions", [])),
                    "time_to_impact_s": w.get("time_to_impact_s"), "reason": w.get("reason")})
    return out


def _require_centre(folder: Path, party: str, *, during: bool = False) -> None:
    """Refuse a node whose warning centre does not run (``node run`` runs it)."""
    from gsomia.shell.warning_centre import centre_running

    if centre_running(folder) is not False:
        return
    if during:
        from gsomia.core.errors import Unavailable

        # Exit 1, not 2: the input was good, the node went away.
        raise Unavailable(
            f"the {party} node in {folder} stopped during the replay: what its sensors sent "
            "is held, and its warning centre tracks it when the node runs again "
            f"(gsomia node run --dir {folder})")
    raise MalformedInput(
        f"no warning centre runs for the {party} node in {folder} (the node is not running, "
        "or `node serve` serves it without one), so nothing was played into it",
        where="--node",
        expected=f"a running node: start it with `gsomia node run --dir {folder}` (or "
                 "`gsomia federation up`), then replay")


def replay(folder: Path, day: str, index: int | None, seed: int, speed: float,
           until_s: float | None, open_node: Callable[[Path], Node],
           on_sent: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Play the node's own sensors for the launch into the running node in ``folder`` (its
    sensor intake, as ``gsomia sensors run --node DIR``) at ``speed`` times real time, wait
    until its centre is done (:func:`settle`), and say what it took and what its centre
    warned. ``on_sent(lines sent, lines in all)``: progress."""
    from gsomia.shell import feeds

    folder = Path(folder)
    target = Target(str(folder), None, None, open_node)
    try:
        node = target.node
        _require_centre(folder, node.party)
        indicators, lines = playlist(day, index, node.party, seed, until_s)
        began = liftoff(feeds.find_launch(day, index))
        mark = _newest_seq(node)
        total = len(indicators) + len(lines)
        sink: Sink = target if on_sent is None else _Counting(target, total, on_sent)
        batches = play(sink, indicators, lines, speed)
        _require_centre(folder, node.party, during=True)
        settled = settle({node.party: node})
        warnings = centre_warnings(node, mark, began)
        return {"party": node.party, "launch": day, "seed": seed, "speed": speed,
                "indicators": len(indicators), "measurements": len(lines),
                "batches": batches, "counts": dict(sorted(target.totals.items())),
                "refused": target.refused, "settled": settled, "warnings": warnings}
    finally:
        target.close()


def liftoff(launch: Any) -> datetime:
    """The launch's instant (its date's midnight UTC when the data set has no time)."""
    launched: datetime | None = launch.launched_at
    return launched or datetime.combine(launch.date, datetime.min.time(), UTC)


class _Counting:
    def __init__(self, target: Sink, total: int, on_sent: Callable[[int, int], None]) -> None:
        self.target, self.total, self.on_sent, self.sent = target, total, on_sent, 0

    def send(self, docs: list[dict[str, Any]]) -> None:
        self.target.send(docs)
        self.sent += len(docs)
        self.on_sent(self.sent, self.total)
