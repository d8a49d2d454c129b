"""Ballistic motion model in the Earth-fixed frame: propagate states and covariances of N tracks.

State per track: ECEF position (m) and velocity (m/s), shape (N, 6). Motion is free flight
under gravity with J2 plus the Coriolis and centrifugal terms of the rotating frame, integrated
with classical RK4. The transition matrix comes from the analytic Jacobian (point-mass gravity
gradient, centrifugal and Coriolis terms, second order in the step): J2 moves the gradient by
about 0.1%, far below what the measurements resolve. Unmodelled forces (thrust, drag,
manoeuvres) enter as white acceleration noise of spectral density ``q`` (m^2/s^3).

Drag is optional: with a ballistic coefficient ``beta`` (m / (Cd A), kg/m^2) the model adds
``-rho(h) |v| v / (2 beta)`` in an exponential atmosphere (the Earth-fixed velocity is the
air-relative one without wind), and the Jacobian its derivatives. Low, short-range flights
need it: without it their impact points fall kilometres long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import earth
from gsomia.core.tracking.types import Array

_W = earth.OMEGA
_W2 = _W * _W
_C = np.array([[0.0, 2.0 * _W, 0.0], [-2.0 * _W, 0.0, 0.0], [0.0, 0.0, 0.0]])
_C2 = _C @ _C
_CENTRIFUGAL = np.diag([_W2, _W2, 0.0])
_I3 = np.eye(3)
RHO0 = 1.225            # sea-level density (kg/m^3)
SCALE_HEIGHT = 7_200.0  # exponential atmosphere (m)


def height_fast(r: Array) -> Array:
    """Height above the ellipsoid along the radius (m): within a metre of geodetic below
    100 km, which is where the atmosphere matters; no iteration."""
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    r2 = x * x + y * y + z * z
    out: Array = np.sqrt(r2) - earth.B / np.sqrt(1.0 - earth.E2 * (x * x + y * y) / r2)
    return out


def density(r: Array) -> Array:
    """Air density (kg/m^3) at ECEF positions, exponential atmosphere."""
    out: Array = RHO0 * np.exp(-np.maximum(height_fast(r), -1_000.0) / SCALE_HEIGHT)
    return out


def acceleration(r: Array, v: Array, inv_beta: float = 0.0) -> Array:
    """The same acceleration as :func:`earth.acceleration_ecef`, written out for speed, plus
    drag when ``inv_beta`` (1 / ballistic coefficient) is positive.

    ``np.cross`` costs more than the whole gravity term on small arrays, and this runs four
    times per integration step for every track and sigma point.
    """
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    rr2 = x * x + y * y + z * z
    inv_r2 = 1.0 / rr2
    k = -earth.GM * inv_r2 * np.sqrt(inv_r2)
    j = 1.5 * earth.J2 * (earth.A * earth.A) * inv_r2
    t = j * (1.0 - 5.0 * z * z * inv_r2)
    kxy = k * (1.0 + t)
    out = np.empty_like(r)
    out[..., 0] = kxy * x + _W2 * x + 2.0 * _W * v[..., 1]
    out[..., 1] = kxy * y + _W2 * y - 2.0 * _W * v[..., 0]
    out[..., 2] = k * z * (1.0 + t + 2.0 * j)
    if inv_beta > 0.0:
        speed = np.sqrt(np.einsum("...i,...i->...", v, v))
        out -= (0.5 * inv_beta * density(r) * speed)[..., None] * v
    return out


def jacobi_integral(x: Array) -> Array:
    """Jacobi integral per unit mass (J/kg) of states (K, 6).

    Kinetic energy plus the J2 potential less the centrifugal potential: constant in free flight
    in the rotating frame (Coriolis does no work), rising under thrust, falling under drag.
    """
    r, v = x[:, :3], x[:, 3:]
    rr2 = np.einsum("ki,ki->k", r, r)
    rr = np.sqrt(rr2)
    p2 = 1.5 * r[:, 2] ** 2 / rr2 - 0.5
    potential = -earth.GM / rr * (1.0 - earth.J2 * earth.A * earth.A / rr2 * p2)
    rho2 = r[:, 0] ** 2 + r[:, 1] ** 2
    energy: Array = 0.5 * np.einsum("ki,ki->k", v, v) + potential - 0.5 * _W2 * rho2
    return energy


def jacobi_energy(x: Array) -> tuple[Array, Array]:
    """:func:`jacobi_integral` of states (K, 6) and its gradient (K, 6)."""
    r, v = x[:, :3], x[:, 3:]
    energy = jacobi_integral(x)
    grad = np.empty_like(x)
    # Gravity and centrifugal acceleration are minus the gradient of the effective potential.
    grad[:, :3] = -(earth.gravity(r) + _W2 * np.stack([r[:, 0], r[:, 1], np.zeros(x.shape[0])],
                                                      axis=-1))
    grad[:, 3:] = v
    return energy, grad


def _derivative(s: Array, inv_beta: float) -> Array:
    out = np.empty_like(s)
    out[..., :3] = s[..., 3:]
    out[..., 3:] = acceleration(s[..., :3], s[..., 3:], inv_beta)
    return out


def rk4_step(s: Array, h: Array, inv_beta: float = 0.0) -> Array:
    """One RK4 step of the ballistic ODE for states (K, 6) with per-row step h (K,) seconds;
    ``inv_beta`` > 0 adds drag (1 / ballistic coefficient, m^2/kg). Compiled
    (:mod:`kernels`); :func:`rk4_step_numpy` is the same step in NumPy."""
    # Imported here: numba loads only in processes that integrate flights.
    from gsomia.core.tracking import kernels

    return kernels.rk4_step(kernels.rows(s, s.shape), kernels.rows(h, s.shape[:1]),
                            float(inv_beta))


def rk4_step_numpy(s: Array, h: Array, inv_beta: float = 0.0) -> Array:
    """:func:`rk4_step` in NumPy: the reference the compiled step is tested against."""
    hc = h[:, None]
    k1 = _derivative(s, inv_beta)
    k2 = _derivative(s + 0.5 * hc * k1, inv_beta)
    k3 = _derivative(s + 0.5 * hc * k2, inv_beta)
    k4 = _derivative(s + hc * k3, inv_beta)
    out: Array = s + (hc / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
    return out


def gravity_gradient(r: Array) -> Array:
    """d(acceleration)/d(position) (K, 3, 3): point-mass gravity gradient plus centrifugal."""
    rr2 = np.einsum("ki,ki->k", r, r)
    rr = np.sqrt(rr2)
    mu_r3 = earth.GM / (rr2 * rr)
    u = r / rr[:, None]
    g: Array = (3.0 * mu_r3)[:, None, None] * (u[:, :, None] * u[:, None, :])
    g -= mu_r3[:, None, None] * _I3
    g += _CENTRIFUGAL
    return g


def transition(r_mid: Array, h: Array, v_mid: Array | None = None,
               inv_beta: float = 0.0) -> Array:
    """State transition matrices (K, 6, 6) over steps h (K,) linearised at positions r_mid
    (and velocities v_mid, needed for drag)."""
    k = r_mid.shape[0]
    g = gravity_gradient(r_mid)
    hh = h[:, None, None]
    h2 = hh * hh * 0.5
    c: Array = np.broadcast_to(_C, (k, 3, 3))
    if inv_beta > 0.0 and v_mid is not None:
        rho = density(r_mid)
        speed = np.sqrt(np.einsum("ki,ki->k", v_mid, v_mid))
        kd = 0.5 * inv_beta * rho
        vv = v_mid[:, :, None] * v_mid[:, None, :] / np.maximum(speed, 1e-9)[:, None, None]
        c = c - kd[:, None, None] * (speed[:, None, None] * _I3 + vv)
        up = r_mid / np.sqrt(np.einsum("ki,ki->k", r_mid, r_mid))[:, None]
        g = g + (kd * speed / SCALE_HEIGHT)[:, None, None] * (v_mid[:, :, None] * up[:, None, :])
    phi = np.empty((k, 6, 6))
    phi[:, :3, :3] = _I3 + g * h2
    phi[:, :3, 3:] = _I3 * hh + c * h2
    phi[:, 3:, :3] = g * hh + np.matmul(c, g) * h2
    phi[:, 3:, 3:] = _I3 + c * hh + (g + np.matmul(c, c)) * h2
    return phi


def white_acceleration_noise(q: float | Array, h: Array) -> Array:
    """Process noise (K, 6, 6) of white acceleration with spectral density q (scalar or (K,))
    over steps h (K,)."""
    h = np.abs(h)
    out = np.zeros((h.shape[0], 6, 6))
    a = q * h**3 / 3.0
    b = q * h**2 / 2.0
    c = q * h
    for i in range(3):
        out[:, i, i] = a
        out[:, i, i + 3] = b
        out[:, i + 3, i] = b
        out[:, i + 3, i + 3] = c
    return out


@dataclass(frozen=True, slots=True)
class BallisticPredictor:
    """Predicts ballistic tracks; ``q`` is the white acceleration noise (m^2/s^3).

    The default ``q`` suits free flight, where only drag and model error are unmodelled: a
    larger one makes the filter needlessly conservative (its NEES drops well under the state
    dimension). Thrust is not in the model, so a track still climbing below
    ``boost_ceiling_m`` gets ``q_boost`` instead (0 ceiling: never).

    ``max_step_s`` bounds the RK4 step: every call integrates all tracks with the same number
    of substeps, each track with its own step length, so one call serves tracks of mixed age.
    """

    q: float = 1e-4
    max_step_s: float = 10.0
    q_boost: float = 400.0
    boost_ceiling_m: float = 0.0
    ballistic_coefficient: float = math.inf

    def __post_init__(self) -> None:
        if not (self.q >= 0.0 and self.q_boost >= 0.0 and self.max_step_s > 0.0
                and self.ballistic_coefficient > 0.0):
            raise MalformedInput(
                "predictor needs q, q_boost >= 0, max_step_s > 0 and a positive ballistic "
                "coefficient", where="BallisticPredictor")

    @property
    def inv_beta(self) -> float:
        """1 / ballistic coefficient (m^2/kg); 0 without drag."""
        return 0.0 if math.isinf(self.ballistic_coefficient) else 1.0 / self.ballistic_coefficient

    def _q(self, x: Array) -> float | Array:
        if self.boost_ceiling_m <= 0.0:
            return self.q
        r = x[:, :3]
        # Height over a sphere and radial speed are enough to tell a climbing booster.
        radial = np.einsum("ki,ki->k", r, x[:, 3:])
        height = np.sqrt(np.einsum("ki,ki->k", r, r)) - earth.R_MEAN
        boosting = (height < self.boost_ceiling_m) & (radial > 0.0)
        return np.where(boosting, self.q_boost, self.q)

    def _substeps(self, dt: Array) -> int:
        longest = float(np.max(np.abs(dt))) if dt.size else 0.0
        return max(1, math.ceil(longest / self.max_step_s))

    def propagate(self, x: Array, dt: Array) -> Array:
        """States (N, 6) moved by dt (N,) seconds (negative dt runs time backwards)."""
        n = self._substeps(dt)
        h = dt / n
        for _ in range(n):
            x = rk4_step(x, h, self.inv_beta)
        return x

    def predict(self, x: Array, P: Array, dt: Array, q_extra: Array | None = None
                ) -> tuple[Array, Array]:
        """States (N, 6) and covariances (N, 6, 6) predicted dt (N,) seconds ahead.

        ``q_extra`` (N,) adds per-track manoeuvre noise (see :class:`Tracker`). Compiled
        (:mod:`kernels`): a scan predicts one or two tracks, where NumPy's call overhead
        outweighs the arithmetic a hundred times.
        """
        from gsomia.core.tracking import kernels  # numba: only in processes that track

        n = self._substeps(dt)
        k = x.shape[0]
        extra = np.zeros(k) if q_extra is None else kernels.rows(q_extra, (k,))
        return kernels.predict(kernels.rows(x, x.shape), kernels.rows(P, P.shape),
                               kernels.rows(dt / n, (k,)), n, float(self.q),
                               float(self.q_boost), float(self.boost_ceiling_m), extra,
                               self.inv_beta)

    def predict_numpy(self, x: Array, P: Array, dt: Array, q_extra: Array | None = None
                      ) -> tuple[Array, Array]:
        """:meth:`predict` in NumPy, all tracks at once: the reference the compiled
        prediction is tested against."""
        n = self._substeps(dt)
        h = dt / n
        for _ in range(n):
            x_next = rk4_step_numpy(x, h, self.inv_beta)
            mid = 0.5 * (x + x_next)
            phi = transition(mid[:, :3], h, mid[:, 3:], self.inv_beta)
            P = np.matmul(np.matmul(phi, P), phi.transpose(0, 2, 1))
            q = self._q(x) if q_extra is None else self._q(x) + q_extra
            if np.any(q):
                P = P + white_acceleration_noise(q, h)
            x = x_next
        P = 0.5 * (P + P.transpose(0, 2, 1))
        return x, P
