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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gsomia.core.errors import MalformedInput

if TYPE_CHECKING:
    from gsomia.shell.node import Node

__all__ = ["Sink", "Target", "cueing", "play", "playlist"]


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
    start = launch.launched_at or datetime.combine(launch.date, datetime.min.time(), UTC)
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

    start = launch.launched_at or datetime.combine(launch.date, datetime.min.time(), UTC)
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
         lines: list[tuple[float, dict[str, Any]]], speed: float) -> int:
    """Send ``indicators`` at once, then each line at its report time / ``speed``; the
    number of batches sent."""
    batches = 0
    if indicators:
        target.send(indicators)
        batches += 1
    began = time.monotonic()
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
