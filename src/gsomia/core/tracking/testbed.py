"""Ballistic truth and simulated radar measurements, to test and benchmark the tracker.

The truth is free flight in the same Earth-fixed dynamics the tracker assumes (no thrust, no
drag), started on the ground with the speed and flight-path angle that reproduce a recorded
apogee and range. That isolates tracker error from model mismatch; the trajectory module
models boost and drag for the warning scenarios. Noise comes only from the numpy Generator the
caller passes in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from gsomia.core.tracking import earth
from gsomia.core.tracking.impact import ground_crossing
from gsomia.core.tracking.predictor import acceleration, rk4_step
from gsomia.core.tracking.types import Array, Detection, SensorSite
from gsomia.core.tracking.updater import measure


@dataclass(frozen=True, slots=True)
class Flight:
    """A flight from the ground: initial state at t = 0, impact time and point.

    Free flight unless ``thrust`` (m/s^2, along the velocity) burns until ``burn_s``;
    ``inv_beta`` (1 / ballistic coefficient) adds drag in the predictor's atmosphere.
    """

    x0: Array
    impact_time: float
    impact_lat_deg: float
    impact_lon_deg: float
    launch_lat_deg: float
    launch_lon_deg: float
    apogee_m: float
    thrust: float = 0.0
    burn_s: float = 0.0
    inv_beta: float = 0.0

    def _step(self, s: Array, t: float, h: float) -> Array:
        if t >= self.burn_s or self.thrust == 0.0:
            return rk4_step(s, np.array([h]), self.inv_beta)

        def f(y: Array) -> Array:
            out = np.empty_like(y)
            out[:, :3] = y[:, 3:]
            v = y[:, 3:]
            out[:, 3:] = acceleration(y[:, :3], v, self.inv_beta) + self.thrust * v / np.sqrt(
                np.einsum("ki,ki->k", v, v))[:, None]
            return out

        k1 = f(s)
        k2 = f(s + 0.5 * h * k1)
        k3 = f(s + 0.5 * h * k2)
        k4 = f(s + h * k3)
        out: Array = s + h / 6.0 * (k1 + 2.0 * (k2 + k3) + k4)
        return out

    def states(self, times: Array, step_s: float = 1.0) -> Array:
        """Truth states (T, 6) at increasing times in [0, impact_time]."""
        out = np.empty((times.shape[0], 6))
        s = self.x0[None, :].copy()
        t = 0.0
        for i, ti in enumerate(times):
            while t < ti:
                # Steps end on burnout so the thrust switches off exactly there.
                # Under thrust at low speed the path turns fast: small steps.
                end = min(float(ti), t + (min(step_s, 0.05) if t < self.burn_s else step_s))
                if t < self.burn_s < end:
                    end = self.burn_s
                s = self._step(s, t, end - t)
                t = end
            out[i] = s[0]
        return out


def powered_flight(lat_deg: float, lon_deg: float, bearing_deg: float, gamma: float,
                   thrust: float, burn_s: float, ballistic_coefficient: float = math.inf
                   ) -> Flight:
    """A missile that leaves the ground slowly, thrusts along its velocity until burnout,
    then flies free (with drag if a ballistic coefficient is given) to impact."""
    inv_beta = 0.0 if math.isinf(ballistic_coefficient) else 1.0 / ballistic_coefficient
    x0 = launch_state(lat_deg, lon_deg, bearing_deg, 30.0, gamma)
    draft = Flight(x0, math.inf, 0.0, 0.0, lat_deg, lon_deg, 0.0, thrust, burn_s, inv_beta)
    at_burnout = draft.states(np.array([burn_s]))
    tc, rc, ok = ground_crossing(at_burnout, np.array([burn_s]), np.ones(1), step_s=2.0,
                                 max_time_s=20_000.0, inv_beta=inv_beta)
    if not ok[0]:
        raise ValueError("the powered flight does not come down")
    lat, lon, _ = earth.ecef_to_geodetic(rc[0])
    return Flight(x0, float(tc[0]), math.degrees(float(lat)), math.degrees(float(lon)),
                  lat_deg, lon_deg, 0.0, thrust, burn_s, inv_beta)


def launch_state(lat_deg: float, lon_deg: float, bearing_deg: float, speed: float,
                 gamma: float) -> Array:
    """ECEF state on the ground at (lat, lon) with speed (m/s) at flight-path angle gamma."""
    lat, lon, b = math.radians(lat_deg), math.radians(lon_deg), math.radians(bearing_deg)
    basis = earth.enu_basis(lat, lon)
    enu = speed * np.array([math.cos(gamma) * math.sin(b), math.cos(gamma) * math.cos(b),
                            math.sin(gamma)])
    x = np.empty(6)
    x[:3] = earth.geodetic_to_ecef(lat, lon, 1.0)
    x[3:] = basis.T @ enu
    return x


def _fly(x0: Array) -> tuple[float, Array, float]:
    """Impact time, impact ECEF point and apogee height (m) of a free flight."""
    tc, rc, ok = ground_crossing(x0[None, :], np.zeros(1), np.ones(1), step_s=5.0,
                                 max_time_s=20_000.0)
    if not ok[0]:
        return 20_000.0, x0[:3], 1e9
    # Apogee: heights every 5 s, refined by the parabola through the highest three.
    n = max(3, math.ceil(float(tc[0]) / 5.0))
    s = x0[None, :].copy()
    rows = [s[0]]
    for _ in range(n):
        s = rk4_step(s, np.array([5.0]))
        rows.append(s[0])
    heights = earth.ecef_to_geodetic(np.array(rows)[:, :3])[2]
    i = int(np.clip(np.argmax(heights), 1, heights.size - 2))
    a, b, c = heights[i - 1], heights[i], heights[i + 1]
    denom = a - 2.0 * b + c
    best = float(b - 0.125 * (c - a) ** 2 / denom) if denom < 0.0 else float(b)
    return float(tc[0]), rc[0], best


def fit_flight(lat_deg: float, lon_deg: float, bearing_deg: float, apogee_km: float,
               range_km: float) -> Flight:
    """The free flight from (lat, lon) along ``bearing_deg`` with the given apogee and range.

    Solves for launch speed and flight-path angle by least squares on the two misfits.
    """
    lat0, lon0 = math.radians(lat_deg), math.radians(lon_deg)

    def misfit(p: Array) -> Array:
        x0 = launch_state(lat_deg, lon_deg, bearing_deg, p[0], p[1])
        _, r, apogee = _fly(x0)
        lat, lon, _ = earth.ecef_to_geodetic(r)
        rng = float(earth.great_circle_m(lat0, lon0, lat, lon))
        return np.array([apogee / 1000.0 - apogee_km, rng / 1000.0 - range_km])

    # Flat-Earth guess: apogee ~ (v sin g)^2 / 2g, range ~ v^2 sin 2g / g.
    gamma0 = math.atan2(4.0 * apogee_km, range_km)
    v0 = math.sqrt(2 * 9.8 * apogee_km * 1000.0) / math.sin(gamma0)
    sol = least_squares(misfit, np.array([v0, gamma0]), x_scale=np.array([100.0, 0.01]),
                        diff_step=1e-6)
    x0 = launch_state(lat_deg, lon_deg, bearing_deg, float(sol.x[0]), float(sol.x[1]))
    t_imp, r_imp, apogee = _fly(x0)
    lat, lon, _ = earth.ecef_to_geodetic(r_imp)
    return Flight(x0, t_imp, math.degrees(float(lat)), math.degrees(float(lon)),
                  lat_deg, lon_deg, apogee)


@dataclass(frozen=True, slots=True)
class Radar:
    """A simulated radar: site, noise (1 sigma), coverage and revisit."""

    site: SensorSite
    sigma_range_m: float = 50.0
    sigma_angle_rad: float = math.radians(0.05)
    max_range_m: float = 1_000_000.0
    min_elevation_rad: float = math.radians(1.0)
    period_s: float = 2.0
    offset_s: float = 0.0

    @property
    def R(self) -> Array:
        return np.diag([self.sigma_range_m**2, self.sigma_angle_rad**2,
                        self.sigma_angle_rad**2])


def observe(flights: Sequence[Flight], launch_times: Sequence[float], radars: Sequence[Radar],
            rng: np.random.Generator, *, until: float | None = None,
            labels: Sequence[str] | None = None) -> list[Detection]:
    """Noisy radar detections of the flights, time-ordered.

    Each radar looks every ``period_s`` from ``offset_s``; a flight is seen when in range
    and above the radar's minimum elevation. ``until`` cuts the measurements off.
    """
    out: list[Detection] = []
    for k, (flight, t0) in enumerate(zip(flights, launch_times, strict=True)):
        label = labels[k] if labels is not None else str(k)
        end = t0 + flight.impact_time if until is None else min(until, t0 + flight.impact_time)
        for radar in radars:
            first = radar.offset_s + radar.period_s * math.ceil((t0 - radar.offset_s)
                                                                / radar.period_s)
            times = np.arange(first, end, radar.period_s)
            times = times[times > t0]
            if times.size == 0:
                continue
            states = flight.states(times - t0)
            z, _ = measure(states, radar.site.ecef, radar.site.basis, "rae")
            visible = (z[:, 0] <= radar.max_range_m) & (z[:, 2] >= radar.min_elevation_rad)
            noise = rng.standard_normal((times.size, 3)) * np.array(
                [radar.sigma_range_m, radar.sigma_angle_rad, radar.sigma_angle_rad])
            zn = z + noise
            zn[:, 1] = np.mod(zn[:, 1], 2 * math.pi)
            R = radar.R
            out.extend(Detection(float(times[i]), radar.site, "rae", zn[i], R, label)
                       for i in np.flatnonzero(visible))
    out.sort(key=lambda d: (d.time, d.sensor.id))
    return out


# The 2017-08-29 Hwasong-12 shot, approximately: over Hokkaido, ~550 km apogee, ~2,700 km.
HWASONG12_2017 = (40.85, 129.67, 73.0, 550.0, 2700.0)
KOREAN_RADAR = SensorSite.at("KOR-GREEN-PINE", 36.9, 127.5, 200.0)
JAPANESE_RADAR = SensorSite.at("JPN-FPS5-SADO", 38.0, 138.4, 300.0)


def korean_radar(period_s: float = 1.0) -> Radar:
    """A Green Pine-class radar south of the launch areas: sees the early flight."""
    return Radar(KOREAN_RADAR, 30.0, math.radians(0.05), 900_000.0, math.radians(0.5),
                 period_s)


def japanese_radar(period_s: float = 2.0) -> Radar:
    """An FPS-5-class radar on Sado island: sees the later flight above 4 degrees."""
    return Radar(JAPANESE_RADAR, 50.0, math.radians(0.05), 2_500_000.0, math.radians(4.0),
                 period_s, 0.5)
