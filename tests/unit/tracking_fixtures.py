"""Shared truth for the tracker tests: fitted free flights and simulated radars (cached)."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from gsomia.core.tracking import testbed as tb
from gsomia.core.tracking.types import Detection

# A KN-23-like short-range shot from near Pyongyang into the East Sea.
SRBM = (39.0, 125.7, 80.0, 50.0, 450.0)


@cache
def hwasong12() -> tb.Flight:
    return tb.fit_flight(*tb.HWASONG12_2017)


@cache
def srbm() -> tb.Flight:
    return tb.fit_flight(*SRBM)


def radars() -> list[tb.Radar]:
    return [tb.korean_radar(), tb.japanese_radar()]


@cache
def hwasong12_detections(seed: int) -> tuple[Detection, ...]:
    return tuple(tb.observe([hwasong12()], [0.0], radars(), np.random.default_rng(seed)))


def km_between(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    from gsomia.core.tracking import earth

    return float(earth.great_circle_m(math.radians(lat1), math.radians(lon1),
                                      math.radians(lat2), math.radians(lon2))) / 1000.0


GEO_SATELLITE = ("USA-SBIRS-GEO", 0.0, 130.0, 35_786_000.0)


def example_document(seed: int = 1) -> dict[str, Any]:
    """The measurement file at tests/assets/measurements-example.json: the SRBM seen by the
    Korean radar every 4 s and by an infrared satellite (line of sight) every 10 s early on.

    Regenerate with ``python tests/unit/tracking_fixtures.py``.
    """
    from gsomia.core.tracking.types import SensorSite
    from gsomia.core.tracking.updater import measure

    flight = srbm()
    rng = np.random.default_rng(seed)
    radar = tb.Radar(tb.KOREAN_RADAR, 30.0, math.radians(0.05), 900_000.0,
                     math.radians(0.5), 4.0)
    rows: list[dict[str, Any]] = []
    for d in tb.observe([flight], [0.0], [radar], rng):
        rows.append({"t": round(d.time, 3), "sensor": d.sensor.id,
                     "range_m": round(float(d.z[0]), 2),
                     "azimuth_deg": round(math.degrees(d.z[1]), 5),
                     "elevation_deg": round(math.degrees(d.z[2]), 5)})
    geo = SensorSite.at(*GEO_SATELLITE)
    sigma = 0.002
    times = np.arange(5.0, 60.0, 10.0)
    z, _ = measure(flight.states(times), geo.ecef, geo.basis, "los")
    z = z + rng.standard_normal(z.shape) * math.radians(sigma)
    for t, (az, el) in zip(times, z, strict=True):
        rows.append({"t": float(t), "sensor": geo.id,
                     "azimuth_deg": round(math.degrees(az) % 360.0, 6),
                     "elevation_deg": round(math.degrees(el), 6)})
    rows.sort(key=lambda r: (float(r["t"]), str(r["sensor"])))
    return {
        "description": "A KN-23-like short-range flight (39.0N 125.7E, bearing 80 deg, "
                       "apogee 50 km, range 450 km) seen by a Korean radar and a US "
                       "infrared satellite; simulated with seed 1.",
        "epoch": "2019-07-25T20:23:00Z",
        "sensors": [
            {"id": tb.KOREAN_RADAR.id, "kind": "rae", "lat_deg": 36.9, "lon_deg": 127.5,
             "height_m": 200.0,
             "noise": {"range_m": 30.0, "azimuth_deg": 0.05, "elevation_deg": 0.05}},
            {"id": geo.id, "kind": "los", "lat_deg": GEO_SATELLITE[1],
             "lon_deg": GEO_SATELLITE[2], "height_m": GEO_SATELLITE[3],
             "noise": {"azimuth_deg": sigma, "elevation_deg": sigma}},
        ],
        "measurements": rows,
        "truth": {"launch_lat_deg": flight.launch_lat_deg,
                  "launch_lon_deg": flight.launch_lon_deg,
                  "impact_lat_deg": round(flight.impact_lat_deg, 6),
                  "impact_lon_deg": round(flight.impact_lon_deg, 6),
                  "impact_t": round(flight.impact_time, 3)},
    }


if __name__ == "__main__":
    import json
    from pathlib import Path

    out = Path(__file__).resolve().parents[1] / "assets" / "measurements-example.json"
    out.write_text(json.dumps(example_document(), indent=1) + "\n", encoding="utf-8")
    print(out)
