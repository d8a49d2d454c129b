"""Ballistic missile trajectories on the rotating WGS-84 Earth, fitted to recorded flights.

The model, in the Earth-fixed frame (so the launch starts at rest and the Earth's rotation
enters as Coriolis and centrifugal terms):

- gravity with J2 (:mod:`earth`);
- a boost phase shaped by the missile class: one to three stages, each with a thrust
  acceleration that grows as propellant burns (``a0 / (1 - f * tau / burn)``), a vertical rise,
  then a pitch program that turns linearly to the burnout pitch in the launch plane;
- after burnout, drag in an exponential atmosphere with the class's ballistic coefficient;
- for manoeuvring classes (``pullup``: KN-23 family; ``glide``: boost-glide vehicles), lift
  during the descent, proportional to drag, that flattens the dive and stretches the range;
  below a few kilometres the vehicle dives ballistically onto the target.

Two numbers steer a flight: ``energy`` (below 1: engine cut-off at that fraction of the total
burn, the usual way to shorten a range; above 1: thrust scaled up, for lofted shots) and the
burnout pitch. :func:`fit_many` solves both, per launch, so that the flight reproduces a
recorded apogee and ground range, and corrects the launch azimuth so that the impact lies on
the recorded bearing despite the Coriolis drift. It integrates every launch of a batch at once
(RK4, per-row step sizes, NumPy across rows), which is what makes fitting the whole data set
take seconds rather than minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.earth import (
    E2,
    GM,
    J2,
    OMEGA,
    R_MEAN,
    A,
    Array,
    B,
    ecef_to_geodetic,
    geodetic_to_ecef,
    great_circle_m,
)

Mask = NDArray[np.bool_]

G0 = 9.806_65                   # standard gravity (m/s^2)
RHO0 = 1.225                    # sea-level density (kg/m^3)
SCALE_HEIGHT = 7_200.0          # exponential atmosphere (m); within ~15% of US-1976 to 80 km
TOLERANCE = 1e-3                # relative apogee/range error at which a fit stops
_BOOST_STEP = 1.0               # s
_MAX_COAST_STEP = 30.0          # s, high above the atmosphere where only gravity acts
_MIN_STEP = 0.25                # s, close to the ground (drag, lift, impact)
_LIFT_FULL_DIVE = math.sin(math.radians(10.0))   # dive angle at which lift is fully applied
_DIVE_BAND = 4_000.0            # m over which lift fades out above the terminal-dive altitude

MISSILE_CLASSES = ("SRBM", "MRBM", "IRBM", "ICBM", "SLBM", "SLV", "HGV")
MANEUVERS = ("pullup", "glide")


@dataclass(frozen=True, slots=True)
class Stage:
    """One rocket stage: burn time, thrust acceleration at ignition (in g) and propellant share.

    The acceleration at ``tau`` seconds into the burn is ``a0 / (1 - f * tau / burn)``: constant
    thrust on a mass that loses the fraction ``f`` of itself by burnout.
    """

    burn_s: float
    thrust_g: float
    propellant_fraction: float

    def delta_v(self, fraction: float = 1.0) -> float:
        """Ideal velocity gain (m/s) after burning ``fraction`` of the stage."""
        f = self.propellant_fraction
        return -self.thrust_g * G0 * self.burn_s / f * math.log(1.0 - f * fraction)


@dataclass(frozen=True, slots=True)
class Profile:
    """The boost and airframe of a missile class (public, approximate, order-of-magnitude)."""

    missile_class: str
    maneuver: str | None
    stages: tuple[Stage, ...]
    vertical_s: float
    ballistic_coefficient: float    # m / (Cd * A), kg/m^2, of what re-enters
    lift_to_drag: float = 0.0
    dive_altitude_m: float = 3_000.0

    @property
    def burn_s(self) -> float:
        return sum(s.burn_s for s in self.stages)

    def delta_v(self, energy: float) -> float:
        """Ideal velocity gain (m/s) for a given ``energy`` (see the module docstring)."""
        cutoff = min(energy, 1.0) * self.burn_s
        scale = max(energy, 1.0)
        total, start = 0.0, 0.0
        for s in self.stages:
            burnt = min(max(cutoff - start, 0.0), s.burn_s)
            if burnt > 0.0:
                total += s.delta_v(burnt / s.burn_s)
            start += s.burn_s
        return scale * total


# Burn times and accelerations are public estimates for each class (Scud/KN-23, Nodong,
# Hwasong-12, Hwasong-15/17, Pukguksong, Unha); the fit scales them to each recorded flight.
# A space launcher's first stage (Unha-3, Chollima-1: ~120 s, lift-off thrust ~1.3 g) burns
# out near 1.9 km/s, so that it falls ~430-450 km downrange, where it did: the zones DPRK
# announced to the IMO and Japan Coast Guard for 2012-12, 2016-02 and 2023-05/08/11 lie in the
# Yellow Sea west of Korea, ~35-36 N, and the ROK Navy raised the 2012 first stage's oxidizer
# tank ~160 km west of Gunsan and the 2023-05-31 one ~200 km west of Eocheongdo (~430 km from
# Sohae). The second stage carries the rest (the fit cuts it off at the recorded range, where
# the second-stage zone east of Luzon lies); the third, orbit-bound stage never fires in the
# model. (At 1.4 g and 85% propellant the first stage burnt out at 2.7 km/s and fell 880-910 km
# downrange, off Okinawa's Sakishima islands.)
_STAGES: dict[str, tuple[tuple[Stage, ...], float, float]] = {
    "SRBM": ((Stage(62.0, 2.0, 0.70),), 5.0, 6_000.0),
    "MRBM": ((Stage(110.0, 1.5, 0.80),), 8.0, 10_000.0),
    "IRBM": ((Stage(140.0, 1.6, 0.85),), 10.0, 20_000.0),
    "ICBM": ((Stage(150.0, 1.6, 0.85), Stage(150.0, 0.9, 0.85)), 12.0, 30_000.0),
    "SLBM": ((Stage(55.0, 2.2, 0.80), Stage(50.0, 1.5, 0.80)), 8.0, 15_000.0),
    "SLV": ((Stage(120.0, 1.3, 0.76), Stage(110.0, 1.45, 0.85), Stage(90.0, 0.5, 0.80)),
            15.0, 1_500.0),
    "HGV": ((Stage(110.0, 1.5, 0.80),), 8.0, 8_000.0),
}
# A KN-23-class body flies whole to the target (dense, ~10 t/m^2) and pulls up with modest lift;
# a glide vehicle is lighter for its size and glides with more.
_MANEUVER_AIRFRAME = {"pullup": (10_000.0, 1.2), "glide": (8_000.0, 2.5)}


def profile_for(missile_class: str, maneuver: str | None = None) -> Profile:
    """The profile of a class (``SRBM`` … ``SLV``, ``HGV``); ``pullup``/``glide`` airframes."""
    cls = missile_class.upper()
    if cls not in _STAGES:
        raise MalformedInput(f"unknown missile class {missile_class!r}", where="missile",
                             expected="one of " + ", ".join(MISSILE_CLASSES))
    if cls == "HGV" and maneuver is None:
        maneuver = "glide"
    if maneuver is not None and maneuver not in MANEUVERS:
        raise MalformedInput(f"unknown manoeuvre {maneuver!r}", where="maneuver",
                             expected="pullup, glide or none")
    stages, vertical, beta = _STAGES[cls]
    ld = 0.0
    if maneuver is not None:
        beta, ld = _MANEUVER_AIRFRAME[maneuver]
    return Profile(cls, maneuver, stages, vertical, beta, ld)


def keplerian_launch(apogee_m: float, range_m: float) -> tuple[float, float]:
    """Speed (m/s) and flight-path angle (rad) at the surface of a vacuum Kepler arc.

    The arc leaves and returns to a sphere of mean radius, covering ``range_m`` and peaking
    ``apogee_m`` above it: ``e = (ra - r0) / (ra - r0 cos(psi/2))``, ``p = ra (1 - e)``.
    """
    r0 = R_MEAN
    ra = R_MEAN + apogee_m
    half = range_m / R_MEAN / 2.0
    e = (ra - r0) / (ra - r0 * math.cos(half))
    p = ra * (1.0 - e)
    sma = p / (1.0 - e * e)
    v = math.sqrt(GM * (2.0 / r0 - 1.0 / sma))
    gamma = math.atan2(e * math.sin(half), 1.0 - e * math.cos(half))
    return v, gamma


def infer_class(apogee_km: float, range_km: float) -> tuple[str, str | None]:
    """A plausible class for a launch of unknown type, from what its flight needed.

    Flat flights (apogee under 100 km and under 15% of the range) are taken for the KN-23
    family with its pull-up; otherwise the vacuum launch speed picks the class.
    """
    if apogee_km <= 100.0 and apogee_km < 0.15 * range_km:
        return "SRBM", "pullup"
    v, _ = keplerian_launch(apogee_km * 1e3, range_km * 1e3)
    for cls, limit in (("SRBM", 2_000.0), ("MRBM", 3_300.0), ("IRBM", 5_000.0)):
        if v < limit:
            return cls, None
    return "ICBM", None


@dataclass(frozen=True, slots=True, eq=False)
class Trajectory:
    """One flight from lift-off to impact: samples in ECEF (m, m/s, m/s^2) against seconds.

    ``positions``/``velocities``/``accelerations`` are (n, 3); the last sample is the impact.
    :meth:`state_at` interpolates between samples with cubic Hermite polynomials.
    """

    times: Array
    positions: Array
    velocities: Array
    accelerations: Array
    missile_class: str
    maneuver: str | None
    launch_lat_deg: float
    launch_lon_deg: float
    bearing_deg: float              # launch-to-impact bearing asked for
    azimuth_deg: float              # launch azimuth flown (bearing less the Coriolis drift)
    energy: float
    burnout_pitch_deg: float
    burnout_s: float
    apogee_m: float
    apogee_s: float
    range_m: float
    impact_lat_deg: float
    impact_lon_deg: float
    apogee_error: float = field(default=0.0)   # relative, achieved vs asked (0 if not fitted)
    range_error: float = field(default=0.0)

    @property
    def flight_time_s(self) -> float:
        return float(self.times[-1])

    @property
    def apogee_km(self) -> float:
        return self.apogee_m / 1e3

    @property
    def range_km(self) -> float:
        return self.range_m / 1e3

    @property
    def launch_ecef(self) -> Array:
        return np.asarray(self.positions[0])

    @property
    def impact_ecef(self) -> Array:
        return np.asarray(self.positions[-1])

    def state_at(self, t: Array | float) -> tuple[Array, Array]:
        """Position and velocity at times ``t`` (s after lift-off; clipped to the flight)."""
        tt = np.clip(np.asarray(t, dtype=float), 0.0, self.flight_time_s)
        i = np.clip(np.searchsorted(self.times, tt, side="right") - 1, 0, len(self.times) - 2)
        h = (self.times[i + 1] - self.times[i])[..., None]
        s = ((tt - self.times[i])[..., None]) / h
        s2, s3 = s * s, s * s * s
        h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
        p0, p1 = self.positions[i], self.positions[i + 1]
        v0, v1 = self.velocities[i], self.velocities[i + 1]
        a0, a1 = self.accelerations[i], self.accelerations[i + 1]
        pos = h00 * p0 + h10 * h * v0 + h01 * p1 + h11 * h * v1
        vel = h00 * v0 + h10 * h * a0 + h01 * v1 + h11 * h * a1
        return pos, vel

    def position_at(self, t: Array | float) -> Array:
        return self.state_at(t)[0]

    def velocity_at(self, t: Array | float) -> Array:
        return self.state_at(t)[1]

    def altitude_at(self, t: Array | float) -> Array:
        return ecef_to_geodetic(self.position_at(t))[2]

    def boosting(self, t: Array | float) -> Mask:
        """True while the engines burn (what an infrared early-warning satellite can see)."""
        tt = np.asarray(t, dtype=float)
        return np.asarray((tt >= 0.0) & (tt <= self.burnout_s))

    def in_flight(self, t: Array | float) -> Mask:
        tt = np.asarray(t, dtype=float)
        return np.asarray((tt >= 0.0) & (tt <= self.flight_time_s))

    def ground_track(self, n: int = 64) -> tuple[Array, Array]:
        """Latitudes and longitudes (degrees) of ``n`` points under the flight, launch to impact."""
        lat, lon, _ = ecef_to_geodetic(self.position_at(np.linspace(0.0, self.flight_time_s, n)))
        return np.degrees(lat), np.degrees(lon)


@dataclass(frozen=True, slots=True)
class FlightRequest:
    """A flight to fit: where from, which way, how high and how far, and what flew it."""

    lat_deg: float
    lon_deg: float
    bearing_deg: float
    apogee_km: float
    range_km: float
    missile_class: str = "SRBM"
    maneuver: str | None = None

    def __post_init__(self) -> None:
        for name in ("lat_deg", "lon_deg", "bearing_deg", "apogee_km", "range_km"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v):
                raise MalformedInput(f"{v!r} is not a number", where=name,
                                     expected="a finite number")
        if not -90.0 <= self.lat_deg <= 90.0:
            raise MalformedInput(f"latitude {self.lat_deg} out of range", where="lat_deg",
                                 expected="-90 to 90 degrees")
        if self.apogee_km <= 0.5 or self.range_km <= 0.5:
            raise MalformedInput(
                f"apogee {self.apogee_km} km, range {self.range_km} km", where="apogee/range",
                expected="an apogee and a ground range of at least 1 km")
        if self.range_km > 0.45 * math.pi * R_MEAN / 1e3:
            raise MalformedInput(f"range {self.range_km} km", where="range_km",
                                 expected="a sub-orbital range under 9,000 km")
        profile_for(self.missile_class, self.maneuver)

    @property
    def profile(self) -> Profile:
        return profile_for(self.missile_class, self.maneuver)


# --- the batch integrator -------------------------------------------------------------------


class _Batch(NamedTuple):
    """Per-row constants of a batch of flights (rows on the last axis)."""

    start: Array        # (K, N) stage ignition times
    burn: Array         # (K, N)
    a0: Array           # (K, N) m/s^2
    frac: Array         # (K, N)
    cutoff: Array       # (N,) burnout time
    scale: Array        # (N,) thrust scale
    vertical: Array     # (N,) end of the vertical rise
    pitch_bo: Array     # (N,) rad
    normal: Array       # (3, N) unit normal of the launch plane
    beta: Array         # (N,)
    lift: Array         # (N,) lift-to-drag
    dive: Array         # (N,) altitude below which lift fades (m)
    safe_burn: Array    # (K, N) burn, 1 where a stage is absent
    span: Array         # (N,) duration of the pitch-over
    sharp: Array        # (N,) exponent of the pitch-over


def _height(x: Array, y: Array, z: Array) -> Array:
    """Height above the ellipsoid along the radius: within a metre of geodetic below 100 km."""
    r2 = x * x + y * y + z * z
    r = np.sqrt(r2)
    return np.asarray(r - B / np.sqrt(1.0 - E2 * (x * x + y * y) / r2))


def _derivative(t: Array, phase: Array, s: Array, p: _Batch) -> Array:
    """d/dt of the (6, N) state. ``phase`` (a time inside the step) picks the stage and phase,
    so that a step ending on a staging event integrates the burn it began with."""
    x, y, z, vx, vy, vz = s
    r2 = x * x + y * y + z * z
    r = np.sqrt(r2)
    # gravity with J2, then the rotating-frame terms
    k = -GM / (r2 * r)
    zr2 = z * z / r2
    j = 1.5 * J2 * A * A / r2
    kxy = k * (1.0 + j * (1.0 - 5.0 * zr2))
    ax = kxy * x + OMEGA * OMEGA * x + 2.0 * OMEGA * vy
    ay = kxy * y + OMEGA * OMEGA * y - 2.0 * OMEGA * vx
    az = k * z * (1.0 + j * (3.0 - 5.0 * zr2))

    boosting = phase < p.cutoff
    ux, uy, uz = x / r, y / r, z / r
    if boosting.any():
        tau_phase = phase - p.start
        on = boosting & (tau_phase >= 0.0) & (tau_phase < p.burn)
        f = np.minimum(np.maximum((t - p.start) / p.safe_burn, 0.0), 1.0)
        thrust = (np.where(on, p.a0 / (1.0 - p.frac * f), 0.0)).sum(axis=0) * p.scale
        q = np.minimum(np.maximum((t - p.vertical) / p.span, 0.0), 1.0)
        pitch = p.pitch_bo + (0.5 * np.pi - p.pitch_bo) * (1.0 - q) ** p.sharp
        nx, ny, nz = p.normal
        dx, dy, dz = ny * uz - nz * uy, nz * ux - nx * uz, nx * uy - ny * ux
        dn = np.sqrt(dx * dx + dy * dy + dz * dz)
        sp, cp = np.sin(pitch) * thrust, np.cos(pitch) * thrust / dn
        ax = ax + sp * ux + cp * dx
        ay = ay + sp * uy + cp * dy
        az = az + sp * uz + cp * dz

    coasting = ~boosting
    if coasting.any():
        h = r - B / np.sqrt(1.0 - E2 * (x * x + y * y) / r2)
        speed = np.sqrt(vx * vx + vy * vy + vz * vz)
        rho = RHO0 * np.exp(-np.maximum(h, -1_000.0) / SCALE_HEIGHT)
        drag = np.where(coasting, 0.5 * rho * speed / p.beta, 0.0)   # times v gives m/s^2
        ax = ax - drag * vx
        ay = ay - drag * vy
        az = az - drag * vz
        if (p.lift > 0.0).any():
            vs = np.maximum(speed, 1e-9)
            sin_gamma = (ux * vx + uy * vy + uz * vz) / vs
            gate = (np.minimum(np.maximum(-sin_gamma / _LIFT_FULL_DIVE, 0.0), 1.0)
                    * np.minimum(np.maximum((h - p.dive) / _DIVE_BAND, 0.0), 1.0))
            lx = ux - sin_gamma * vx / vs
            ly = uy - sin_gamma * vy / vs
            lz = uz - sin_gamma * vz / vs
            ln = np.maximum(np.sqrt(lx * lx + ly * ly + lz * lz), 1e-12)
            lift = p.lift * drag * speed * gate / ln
            ax = ax + lift * lx
            ay = ay + lift * ly
            az = az + lift * lz
    return np.stack([vx, vy, vz, ax, ay, az])


def _batch(lat: Array, lon: Array, azimuth: Array, energy: Array, pitch_bo: Array,
           profiles: Sequence[Profile]) -> _Batch:
    n = len(profiles)
    k = max(len(p.stages) for p in profiles)
    burn = np.zeros((k, n))
    a0 = np.zeros((k, n))
    frac = np.zeros((k, n))
    for col, prof in enumerate(profiles):
        for row, st in enumerate(prof.stages):
            burn[row, col] = st.burn_s
            a0[row, col] = st.thrust_g * G0
            frac[row, col] = st.propellant_fraction
    start = np.vstack([np.zeros((1, n)), np.cumsum(burn, axis=0)[:-1]])
    total = burn.sum(axis=0)
    cutoff = np.minimum(energy, 1.0) * total
    vertical = np.minimum(np.array([p.vertical_s for p in profiles]), 0.3 * cutoff)
    up = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    east = np.stack([-np.sin(lon), np.cos(lon), np.zeros(n)])
    north = np.stack([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    heading = np.sin(azimuth) * east + np.cos(azimuth) * north
    normal = np.cross(up.T, heading.T).T
    normal /= np.linalg.norm(normal, axis=0)
    # Flat shots turn over early: the lower the burnout pitch, the sharper the turn.
    sharp = 1.0 + 4.0 * (1.0 - np.sin(np.maximum(pitch_bo, 0.0)))
    return _Batch(start, burn, a0, frac, cutoff, np.maximum(energy, 1.0), vertical, pitch_bo,
                  normal, np.array([p.ballistic_coefficient for p in profiles]),
                  np.array([p.lift_to_drag for p in profiles]),
                  np.array([p.dive_altitude_m for p in profiles]),
                  np.where(burn > 0.0, burn, 1.0), np.maximum(cutoff - vertical, 1e-6), sharp)


class _Flights(NamedTuple):
    times: Array        # (S, N)
    states: Array       # (S, 6, N)
    impact: NDArray[np.int64]   # (N,) index of the first sample below ground (or -1)


def _integrate(p: _Batch, r0: Array, max_time: Array) -> _Flights:
    """Fly every column of ``p`` from r0 (3, N) at rest until it comes down or passes
    ``max_time``. Compiled (:func:`kernels.fly`): a fit flies a few columns at a time, where
    NumPy's overhead per call outweighs the arithmetic; :func:`_integrate_numpy` is the
    same integration in NumPy."""
    from gsomia.core.tracking import kernels  # numba: only in processes that fly

    n = r0.shape[1]
    k = p.start.shape[0]
    events = np.vstack([p.start + p.burn, p.cutoff[None, :], p.vertical[None, :]])
    boost_step = np.minimum(np.maximum(p.burn.sum(axis=0) / 60.0, _BOOST_STEP), 5.0)
    c = _Batch(*(kernels.rows(a, np.shape(a)) for a in p))
    count = np.zeros(n, dtype=np.int64)
    impact = np.full(n, -1, dtype=np.int64)
    times, states = np.zeros((0, 0)), np.zeros((0, 6, 0))
    for keep in (False, True):     # count the steps, then store them
        if keep:
            steps = int(count.max()) + 1
            times, states = np.empty((steps, n)), np.empty((steps, 6, n))
        kernels.fly(c.start, c.burn, c.a0, c.frac, c.cutoff, c.scale, c.vertical, c.pitch_bo,
                    c.normal, c.beta, c.lift, c.dive, c.safe_burn, c.span, c.sharp,
                    kernels.rows(r0, (3, n)), kernels.rows(max_time, (n,)),
                    kernels.rows(events, (k + 2, n)), kernels.rows(boost_step, (n,)), keep,
                    count, times, states, impact)
    return _Flights(times, states, impact)


def _integrate_numpy(p: _Batch, r0: Array, max_time: Array) -> _Flights:
    """:func:`_integrate` in NumPy, all columns at once: the reference the compiled flight
    is tested against."""
    n = r0.shape[1]
    s = np.vstack([r0, np.zeros((3, n))])
    t = np.zeros(n)
    events = np.vstack([p.start + p.burn, p.cutoff[None, :], p.vertical[None, :]])
    done = np.zeros(n, dtype=bool)
    impact = np.full(n, -1)
    # long burns are smooth enough for longer steps
    boost_step = np.minimum(np.maximum(p.burn.sum(axis=0) / 60.0, _BOOST_STEP), 5.0)
    times, states = [t.copy()], [s.copy()]
    step = 0
    while not done.all():
        h = _height(s[0], s[1], s[2])
        boost = t < p.cutoff
        climb = np.abs(s[0] * s[3] + s[1] * s[4] + s[2] * s[5]) / np.sqrt(
            s[0] * s[0] + s[1] * s[1] + s[2] * s[2])
        # in the air, at most ~1.5 km of height per step (the density scale is 7 km)
        coast = np.minimum(h / 8_000.0, np.where(h < 120e3, 1_500.0 / (climb + 1.0), np.inf))
        dt = np.where(boost, boost_step,
                      np.minimum(np.maximum(coast, _MIN_STEP), _MAX_COAST_STEP))
        ahead = np.where(events > t + 1e-9, events, np.inf).min(axis=0)
        dt = np.where(done, 0.0, np.minimum(dt, ahead - t))
        phase = t + 0.5 * dt
        half = 0.5 * dt
        k1 = _derivative(t, phase, s, p)
        k2 = _derivative(t + half, phase, s + half * k1, p)
        k3 = _derivative(t + half, phase, s + half * k2, p)
        k4 = _derivative(t + dt, phase, s + dt * k3, p)
        s = s + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        t = t + dt
        step += 1
        times.append(t.copy())
        states.append(s.copy())
        hit = ~done & (_height(s[0], s[1], s[2]) < 0.0) & (t > 1.0)
        impact = np.where(hit, step, impact)
        done |= hit | (t > max_time) | ~np.isfinite(s).all(axis=0)
    return _Flights(np.array(times), np.array(states), impact)


class _Outcome(NamedTuple):
    apogee_m: Array
    apogee_s: Array
    range_m: Array
    bearing: Array      # rad, launch to impact
    impact_lat: Array   # rad
    impact_lon: Array
    flight_time: Array
    impact_state: Array  # (6, N)


def _outcome(f: _Flights, lat0: Array, lon0: Array) -> _Outcome:
    n = f.impact.shape[0]
    cols = np.arange(n)
    ok = f.impact > 0
    i1 = np.where(ok, f.impact, 1)
    i0 = i1 - 1
    s0, s1 = f.states[i0, :, cols].T, f.states[i1, :, cols].T     # (6, N)
    h0 = _height(s0[0], s0[1], s0[2])
    h1 = _height(s1[0], s1[1], s1[2])
    w = np.clip(h0 / np.where(h0 - h1 > 0, h0 - h1, 1.0), 0.0, 1.0)
    s_imp = s0 + w * (s1 - s0)
    t_imp = f.times[i0, cols] + w * (f.times[i1, cols] - f.times[i0, cols])
    ilat, ilon, _ = ecef_to_geodetic(s_imp[:3].T)

    _, _, hh = ecef_to_geodetic(np.moveaxis(f.states[:, :3, :], 1, -1))   # (S, N)
    steps = np.arange(f.times.shape[0])[:, None]
    hh = np.where(steps <= np.where(ok, f.impact, f.times.shape[0])[None, :], hh, -np.inf)
    j = np.clip(np.argmax(hh, axis=0), 1, f.times.shape[0] - 2)
    ta, tb, tc = f.times[j - 1, cols], f.times[j, cols], f.times[j + 1, cols]
    ha, hb, hc = hh[j - 1, cols], hh[j, cols], hh[j + 1, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        d1 = (hb - ha) / (tb - ta)
        d2 = (hc - hb) / (tc - tb)
        curv = (d2 - d1) / (tc - ta)
        tv = 0.5 * (ta + tb) - d1 / (2.0 * curv)
        hv = ha + d1 * (tv - ta) + curv * (tv - ta) * (tv - tb)
    good = np.isfinite(hv) & (curv < 0) & (tv >= ta) & (tv <= tc) & np.isfinite(hc)
    apogee = np.where(good, np.maximum(hv, hb), np.max(hh, axis=0))
    apogee_t = np.where(good, tv, tb)

    rng = great_circle_m(lat0, lon0, ilat, ilon)
    dlon = ilon - lon0
    bearing = np.arctan2(np.sin(dlon) * np.cos(ilat),
                         np.cos(lat0) * np.sin(ilat) - np.sin(lat0) * np.cos(ilat) * np.cos(dlon))
    nan = np.full(n, np.nan)
    return _Outcome(apogee, apogee_t, np.where(ok, rng, nan), np.where(ok, bearing, nan),
                    ilat, ilon, np.where(ok, t_imp, nan), s_imp)


def _trajectories(f: _Flights, o: _Outcome, p: _Batch, cols: Sequence[int],
                  meta: Sequence[dict[str, object]]) -> list[Trajectory]:
    out: list[Trajectory] = []
    for col, m in zip(cols, meta, strict=True):
        last = int(f.impact[col])
        if last <= 0:
            raise MalformedInput("the flight never came down", where="trajectory",
                                 expected="a sub-orbital flight")
        times = np.append(f.times[:last, col], o.flight_time[col])
        states = np.concatenate([f.states[:last, :, col], o.impact_state[:, col][None, :]])
        one = _Batch(*(a[..., col:col + 1] for a in p))
        tt = np.asarray(times)
        # acceleration just after each sample (the phase of the step that starts there),
        # just before the impact for the last one
        phase = np.append(tt[:-1] + 1e-6, tt[-1] - 1e-6)
        acc = _derivative_series(tt, phase, states, one)
        out.append(Trajectory(
            times=tt, positions=np.ascontiguousarray(states[:, :3]),
            velocities=np.ascontiguousarray(states[:, 3:]), accelerations=acc,
            burnout_s=float(p.cutoff[col]), apogee_m=float(o.apogee_m[col]),
            apogee_s=float(o.apogee_s[col]), range_m=float(o.range_m[col]),
            impact_lat_deg=math.degrees(float(o.impact_lat[col])),
            impact_lon_deg=math.degrees(float(o.impact_lon[col])),
            **m,  # type: ignore[arg-type]
        ))
    return out


def _derivative_series(t: Array, phase: Array, states: Array, one: _Batch) -> Array:
    """Accelerations at many samples of one flight, as one vectorised call."""
    n = len(t)
    wide = _Batch(*(np.broadcast_to(a, (*a.shape[:-1], n)) for a in one))
    return np.asarray(_derivative(t, phase, states.T, wide)[3:].T)


# --- flying and fitting ---------------------------------------------------------------------


def fly(lat_deg: float, lon_deg: float, azimuth_deg: float, energy: float,
        burnout_pitch_deg: float, profile: Profile) -> Trajectory:
    """Fly one missile with the given launch azimuth, energy and burnout pitch."""
    lat, lon = np.radians([lat_deg]), np.radians([lon_deg])
    p = _batch(lat, lon, np.radians([azimuth_deg]), np.array([energy]),
               np.radians([burnout_pitch_deg]), [profile])
    f = _integrate(p, geodetic_to_ecef(lat, lon, np.zeros(1)).T, np.array([4.0 * 3600.0]))
    o = _outcome(f, lat, lon)
    return _trajectories(f, o, p, [0], [{
        "missile_class": profile.missile_class, "maneuver": profile.maneuver,
        "launch_lat_deg": lat_deg, "launch_lon_deg": lon_deg,
        "bearing_deg": math.degrees(float(o.bearing[0])) % 360.0 if np.isfinite(o.bearing[0])
        else azimuth_deg, "azimuth_deg": azimuth_deg, "energy": energy,
        "burnout_pitch_deg": burnout_pitch_deg}])[0]


def _initial_guess(req: FlightRequest, prof: Profile) -> tuple[float, float, float]:
    """Energy, burnout pitch (rad) and a flight-time bound from the vacuum Kepler arc."""
    v, gamma = keplerian_launch(req.apogee_km * 1e3, req.range_km * 1e3)
    # gravity loss over the burn, and drag for flat flights that stay in the air
    need = v + 0.35 * G0 * prof.burn_s * math.sin(gamma) + (300.0 if req.apogee_km < 80 else 0.0)
    if prof.lift_to_drag > 0.0:
        need *= 0.85
    lo, hi = 0.02, 1.0
    if prof.delta_v(1.0) >= need:
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if prof.delta_v(mid) < need else (lo, mid)
        energy = 0.5 * (lo + hi)
    else:
        energy = need / prof.delta_v(1.0)
    pitch = min(max(gamma + math.radians(4.0), math.radians(2.0)), math.radians(89.5))
    sma_time = 2.0 * math.sqrt((R_MEAN + req.apogee_km * 1e3) ** 3 / GM) * math.pi
    return energy, pitch, prof.burn_s + 2.0 * sma_time + 1_800.0


_LOG_E_BOUNDS = (math.log(0.03), math.log(3.0))
_PITCH_BOUNDS = (math.radians(-20.0), math.radians(89.95))
_FD = np.array([4e-3, math.radians(0.15), math.radians(0.1)])   # log energy, pitch, azimuth
_MAX_STEP = np.array([0.4, math.radians(12.0), math.radians(20.0)])


def _residuals(o: _Outcome, target: Array, want_bearing: Array) -> Array:
    """(log apogee ratio, log range ratio, cross-track miss / asked range), rows (N, 3)."""
    apogee = np.log(np.maximum(o.apogee_m, 1.0)) - target[:, 0]
    rng = np.log(o.range_m) - target[:, 1]
    off = (o.bearing - want_bearing + np.pi) % (2.0 * np.pi) - np.pi
    cross = off * R_MEAN * np.sin(o.range_m / R_MEAN) / np.exp(target[:, 1])
    return np.stack([apogee, rng, cross], axis=1)


def fit_many(requests: Sequence[FlightRequest], *, max_iter: int = 30) -> list[Trajectory]:
    """Fit every request at once; each result carries its relative ``apogee_error``/``range_error``.

    Damped Newton on (log energy, burnout pitch, launch azimuth) against (apogee, range,
    bearing), with a finite-difference Jacobian flown in the same batch, and step halving when
    a step does not reduce the worst residual. A request the model cannot reproduce still
    returns its closest flight: check the errors (or use :func:`fit`, which raises).
    """
    n = len(requests)
    if n == 0:
        return []
    profiles = [r.profile for r in requests]
    lat = np.radians([r.lat_deg for r in requests])
    lon = np.radians([r.lon_deg for r in requests])
    want_bearing = np.radians([r.bearing_deg for r in requests])
    target = np.log(np.array([[r.apogee_km * 1e3, r.range_km * 1e3] for r in requests]))
    guesses = [_initial_guess(r, p) for r, p in zip(requests, profiles, strict=True)]
    x = np.array([[math.log(g[0]), g[1], b] for g, b in zip(guesses, want_bearing, strict=True)])
    max_time = np.array([g[2] for g in guesses])
    r0 = geodetic_to_ecef(lat, lon, np.zeros(n))

    best_x = x.copy()
    best_f = np.full((n, 3), np.inf)
    best_norm = np.full(n, np.inf)
    direction = np.zeros((n, 3))
    lam = np.ones(n)
    done = np.zeros(n, dtype=bool)
    kept: dict[int, tuple[_Flights, _Outcome, _Batch, int]] = {}

    for _ in range(max_iter):
        rows = np.flatnonzero(~done)
        if rows.size == 0:
            break
        m = rows.size
        xs = np.concatenate([x[rows]] + [x[rows] + np.eye(3)[i] * _FD[i] for i in range(3)])
        idx = np.tile(rows, 4)
        p = _batch(lat[idx], lon[idx], xs[:, 2], np.exp(xs[:, 0]), xs[:, 1],
                   [profiles[i] for i in idx])
        f = _integrate(p, r0[idx].T, max_time[idx])
        o = _outcome(f, lat[idx], lon[idx])
        res = _residuals(o, target[idx], want_bearing[idx])
        f0 = res[:m]
        norm = np.where(np.isfinite(f0).all(axis=1), np.abs(f0).max(axis=1), np.inf)
        for k, row in enumerate(int(r) for r in rows):
            if norm[k] < best_norm[row]:
                best_x[row], best_f[row], best_norm[row] = x[row], f0[k], norm[k]
                kept[row] = (f, o, p, k)
                if norm[k] < TOLERANCE:
                    done[row] = True
                    continue
                jac = np.column_stack([(res[(i + 1) * m + k] - f0[k]) / _FD[i] for i in range(3)])
                step = np.zeros(3)
                if np.isfinite(jac).all() and abs(np.linalg.det(jac)) > 1e-14:
                    step = -np.linalg.solve(jac, f0[k])
                if not np.isfinite(step).all() or not step.any():
                    step = np.array([0.1 if f0[k][1] < 0 else -0.1, 0.0, 0.0])
                direction[row] = step / max(float(np.max(np.abs(step) / _MAX_STEP)), 1.0)
                lam[row] = 1.0
            else:
                lam[row] *= 0.5
                if lam[row] < 1e-3:
                    done[row] = True      # stuck: keep the best flight found
                    continue
            x[row] = best_x[row] + lam[row] * direction[row]
            x[row, 0] = np.clip(x[row, 0], *_LOG_E_BOUNDS)
            x[row, 1] = np.clip(x[row, 1], *_PITCH_BOUNDS)

    out: list[Trajectory] = []
    for i, req in enumerate(requests):
        if i not in kept:
            raise MalformedInput(
                f"no flight of a {req.missile_class} reaches {req.range_km} km",
                where="trajectory", expected="an apogee and range a missile can fly")
        f, o, p, k = kept[i]
        out.extend(_trajectories(f, o, p, [k], [{
            "missile_class": profiles[i].missile_class, "maneuver": profiles[i].maneuver,
            "launch_lat_deg": req.lat_deg, "launch_lon_deg": req.lon_deg,
            "bearing_deg": req.bearing_deg, "azimuth_deg": math.degrees(best_x[i, 2]) % 360.0,
            "energy": math.exp(best_x[i, 0]),
            "burnout_pitch_deg": math.degrees(best_x[i, 1]),
            "apogee_error": math.expm1(best_f[i, 0]), "range_error": math.expm1(best_f[i, 1]),
        }]))
    return out


def fit(request: FlightRequest, *, tolerance: float = 0.01) -> Trajectory:
    """Fit one flight; MalformedInput if apogee or range miss by more than ``tolerance``."""
    traj = fit_many([request])[0]
    if max(abs(traj.apogee_error), abs(traj.range_error)) > tolerance:
        raise MalformedInput(
            f"a {request.missile_class} cannot fly {request.apogee_km} km high and "
            f"{request.range_km} km far (best: {traj.apogee_km:.1f} km, {traj.range_km:.1f} km)",
            where="trajectory", expected="an apogee and range the missile class can fly")
    return traj
