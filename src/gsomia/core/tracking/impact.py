"""Impact-point and launch-point prediction: where a ballistic track meets the ground.

Each track's state is spread into unscented sigma points (2n + 1 with n = 6, equal weights on
the 12 outer points), every point is integrated forwards (impact) or backwards (launch) until
its geodetic height crosses zero, and the crossing points give the mean, a 2x2 covariance in the
local east-north plane and the crossing time's spread. All points of all tracks, both
directions, integrate together in one array.

The crossing is located inside the RK4 step by a cubic Hermite interpolant of position (its
error over a 20 s step is millimetres) and a few regula-falsi iterations on height.

The launch point assumes free flight since launch: for a real missile, a track started after
burnout extrapolates back along a ballistic arc, which lies beyond the true pad by about the
powered-flight ground distance; ``gsomia`` reports it as the ballistic launch estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gsomia.core.tracking import earth
from gsomia.core.tracking.earth import R_MEAN as R_EARTH
from gsomia.core.tracking.earth import great_circle_m
from gsomia.core.tracking.predictor import height_fast, rk4_step, rk4_step_numpy
from gsomia.core.tracking.types import Array, Ellipse, GroundPoint

N_STATE = 6
N_SIGMA = 2 * N_STATE + 1
_SPREAD = math.sqrt(N_STATE)  # lambda = 0: the centre carries no weight, the rest 1/(2n)


def _height(r: Array) -> Array:
    return earth.ecef_to_geodetic(r)[2]


def _height_sign(r: Array) -> Array:
    """Heights whose sign is the geodetic height's: geodetic within a kilometre of the ground,
    elsewhere the radial height above the ellipsoid, which differs from it by under 0.001% of
    the height (the angle between the radius and the normal is under 0.2°), at a fifth of the
    cost. Integration asks every row at every step only whether it is still up."""
    z = height_fast(r)
    near = np.abs(z) < 1_000.0
    if near.any():
        z[near] = _height(r[near])
    return z


def _hermite(p0: Array, v0: Array, p1: Array, v1: Array, h: Array, s: Array) -> Array:
    s = s[:, None]
    hc = h[:, None]
    s2, s3 = s * s, s * s * s
    out: Array = ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * hc * v0
                  + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * hc * v1)
    return out


def ground_crossing(x: Array, t0: Array, direction: Array, *, step_s: float = 20.0,
                    max_time_s: float = 7200.0, inv_beta: float = 0.0
                    ) -> tuple[Array, Array, NDArray[np.bool_]]:
    """Where and when states x (K, 6) at t0 (K,) first come down through height 0.

    ``direction`` (K,) is +1 to integrate forwards, -1 backwards. Returns crossing times
    (K,), ECEF crossing points (K, 3) and whether each row crossed within ``max_time_s``.
    A row starting below ground must rise above it first (a sigma point of a low track).
    ``inv_beta`` > 0 adds drag (see :mod:`predictor`); the step then shrinks to 2 s below
    60 km, where drag changes quickly.

    Compiled (:mod:`kernels`); :func:`ground_crossing_numpy` is the same search in NumPy.
    """
    from gsomia.core.tracking import kernels  # numba: only in processes that integrate

    k = x.shape[0]
    return kernels.ground_crossing(
        kernels.rows(x, x.shape), kernels.rows(t0, (k,)), kernels.rows(direction, (k,)),
        float(step_s), math.ceil(max_time_s / step_s), float(inv_beta))


def ground_crossing_numpy(x: Array, t0: Array, direction: Array, *, step_s: float = 20.0,
                          max_time_s: float = 7200.0, inv_beta: float = 0.0
                          ) -> tuple[Array, Array, NDArray[np.bool_]]:
    """:func:`ground_crossing` in NumPy, all rows at once: the reference the compiled
    search is tested against."""
    k = x.shape[0]
    t_cross = np.full(k, np.nan)
    r_cross = np.full((k, 3), np.nan)
    found = np.zeros(k, dtype=bool)
    idx = np.arange(k)
    s = x.copy()
    t = t0.astype(float).copy()
    h = direction.astype(float) * step_s
    # With drag the step length follows the height too, so every height is the exact one.
    height = _height if inv_beta > 0.0 else _height_sign
    z = height(s[:, :3])
    armed = z > 0.0
    steps = math.ceil(max_time_s / step_s)
    for _ in range(steps):
        if idx.size == 0:
            break
        if inv_beta > 0.0:
            h = np.where(z < 60_000.0, np.sign(h) * min(step_s, 2.0), np.sign(h) * step_s)
        s_next = rk4_step_numpy(s, h, inv_beta)
        z_next = height(s_next[:, :3])
        hit = armed & (z_next <= 0.0)
        if hit.any():
            p0, v0 = s[hit, :3], s[hit, 3:]
            p1, v1 = s_next[hit, :3], s_next[hit, 3:]
            hh = h[hit]
            lo = np.zeros(int(hit.sum()))
            hi = np.ones_like(lo)
            f_lo, f_hi = _height(p0), _height(p1)
            for _ in range(6):
                frac = np.clip(lo + f_lo / (f_lo - f_hi) * (hi - lo), 0.0, 1.0)
                f_mid = _height(_hermite(p0, v0, p1, v1, hh, frac))
                above = f_mid > 0.0
                lo = np.where(above, frac, lo)
                f_lo = np.where(above, f_mid, f_lo)
                hi = np.where(above, hi, frac)
                f_hi = np.where(above, f_hi, f_mid)
            frac = np.clip(lo + f_lo / (f_lo - f_hi) * (hi - lo), 0.0, 1.0)
            rows = idx[hit]
            t_cross[rows] = t[hit] + frac * hh
            r_cross[rows] = _hermite(p0, v0, p1, v1, hh, frac)
            found[rows] = True
        keep = ~hit
        armed = (armed | (z_next > 0.0))[keep]
        s, t, h, z, idx = s_next[keep], (t + h)[keep], h[keep], z_next[keep], idx[keep]
    return t_cross, r_cross, found


def sigma_points(x: Array, P: Array) -> Array:
    """Sigma points (N, 13, 6): the mean, then the mean plus and minus each scaled root column.

    The root comes from an eigendecomposition clipped at zero, which tolerates a covariance
    that rounding left barely indefinite.
    """
    w, v = np.linalg.eigh(0.5 * (P + P.transpose(0, 2, 1)))
    root = v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]
    cols = _SPREAD * root.transpose(0, 2, 1)
    return np.concatenate([x[:, None, :], x[:, None, :] + cols, x[:, None, :] - cols], axis=1)


def _ground_point(r: Array, times: Array, sigma: float) -> GroundPoint:
    """Mean point, 2x2 east-north ellipse and time spread of one track's sigma crossings."""
    lat0, lon0, _ = earth.ecef_to_geodetic(r[0])
    basis = earth.enu_basis(lat0, lon0)
    en = (r[1:] - r[0]) @ basis[:2].T
    mean = en.mean(axis=0)
    dev = en - mean
    cov = dev.T @ dev / dev.shape[0]
    w, v = np.linalg.eigh(cov)
    major = v[:, 1]
    centre = r[0] + basis[:2].T @ mean
    lat, lon, _ = earth.ecef_to_geodetic(centre)
    t_mean = float(times[1:].mean())
    t_sigma = float(np.sqrt(np.mean((times[1:] - t_mean) ** 2)))
    ellipse = Ellipse(sigma * math.sqrt(max(float(w[1]), 0.0)) / 1000.0,
                      sigma * math.sqrt(max(float(w[0]), 0.0)) / 1000.0,
                      math.degrees(math.atan2(major[0], major[1])) % 180.0, sigma)
    return GroundPoint(math.degrees(float(lat)), math.degrees(float(lon)), t_mean, t_sigma,
                       ellipse)


@dataclass(frozen=True, slots=True)
class ImpactPredictor:
    """Impact and launch points with ``sigma``-scaled ellipses (2 = two-sigma)."""

    sigma: float = 2.0
    step_s: float = 20.0
    max_time_s: float = 7200.0

    def predict(self, x: Array, P: Array, t: Array, *, launch: bool = True,
                inv_beta: float = 0.0
                ) -> tuple[list[GroundPoint | None], list[GroundPoint | None]]:
        """Impact points and (if ``launch``) launch points of tracks x (N, 6), P, at t (N,).

        ``inv_beta`` is the predictor's drag term (1 / ballistic coefficient); backwards, drag
        would add energy and the launch point is the ballistic one either way.

        A track gets None where some sigma point never reaches the ground in ``max_time_s``
        (an upward-leaving or orbital estimate) or starts and stays below it.
        """
        impacts, launches, _ = self.predict_and_cross(x, P, t, np.zeros((0, N_STATE)),
                                                      np.zeros(0), launch=launch,
                                                      inv_beta=inv_beta)
        return impacts, launches

    def predict_and_cross(self, x: Array, P: Array, t: Array, extra: Array, extra_t: Array,
                          *, launch: bool = True, inv_beta: float = 0.0
                          ) -> tuple[list[GroundPoint | None], list[GroundPoint | None],
                                     tuple[Array, Array, NDArray[np.bool_]]]:
        """:meth:`predict`, and where the states ``extra`` (K, 6) at ``extra_t`` (K,) first
        come down forwards (:func:`ground_crossing` with this predictor's step): one
        integration for both, as the corridors' flight map needs the same of its states
        (:func:`corridors`' ``crossing``). Each row is integrated on its own, so the numbers
        are those of separate calls; the steps of one loop cost about as much for 39 rows
        as for 13."""
        n = x.shape[0]
        if n == 0:
            return [], [], ground_crossing(extra, extra_t, np.ones(extra.shape[0]),
                                           step_s=self.step_s, max_time_s=self.max_time_s,
                                           inv_beta=inv_beta)
        pts = sigma_points(x, P).reshape(-1, N_STATE)
        times = np.repeat(t, N_SIGMA)
        directions = [1.0, -1.0] if launch else [1.0]
        states = np.concatenate([pts] * len(directions) + [extra])
        t0 = np.concatenate([times] * len(directions) + [extra_t])
        sign = np.concatenate([np.full(pts.shape[0], d) for d in directions]
                              + [np.ones(extra.shape[0])])
        # The rows of the sigma points forwards, backwards, then the extra ones (forwards).
        forward = np.concatenate([np.arange(pts.shape[0]),
                                  np.arange(extra.shape[0]) + len(directions) * pts.shape[0]])
        if inv_beta > 0.0 and launch:
            # Drag only forwards: backwards it would pump energy in without bound.
            back = np.arange(pts.shape[0], 2 * pts.shape[0])
            tc, rc, ok = (np.empty(states.shape[0]), np.empty((states.shape[0], 3)),
                          np.empty(states.shape[0], dtype=bool))
            for rows, beta in ((forward, inv_beta), (back, 0.0)):
                tc[rows], rc[rows], ok[rows] = ground_crossing(
                    states[rows], t0[rows], sign[rows], step_s=self.step_s,
                    max_time_s=self.max_time_s, inv_beta=beta)
        else:
            tc, rc, ok = ground_crossing(states, t0, sign, step_s=self.step_s,
                                         max_time_s=self.max_time_s, inv_beta=inv_beta)
        rest = slice(len(directions) * pts.shape[0], None)
        crossed = (tc[rest], rc[rest], ok[rest])
        per = n * N_SIGMA
        results: list[list[GroundPoint | None]] = []
        for j in range(len(directions)):
            block = slice(j * per, (j + 1) * per)
            r3 = rc[block].reshape(n, N_SIGMA, 3)
            t3 = tc[block].reshape(n, N_SIGMA)
            ok3 = np.asarray(ok[block].reshape(n, N_SIGMA).all(axis=1), dtype=bool)
            results.append([_ground_point(r3[i], t3[i], self.sigma) if ok3[i] else None
                            for i in range(n)])
        return results[0], (results[1] if launch else [None] * n), crossed


# --- corridors: the possible ground paths ---------------------------------------------------

CORRIDOR_STEP_S = 30.0
# Finite-difference steps of the flight map's Jacobian: fixed (not scaled by the covariance),
# so that the corridor grows monotonically with the covariance; small against the kilometres
# and tens of metres per second where a ballistic flight stops being linear in its state.
_JACOBIAN_STEP = np.array([200.0, 200.0, 200.0, 2.0, 2.0, 2.0])


def chi2_6_quantile(probability: float) -> float:
    """The ``probability`` quantile of the chi-square law with 6 degrees of freedom.

    Its distribution function has a closed form, ``1 - exp(-x/2) (1 + x/2 + x^2/8)``, which
    bisection inverts to machine precision in 60 halvings.
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability {probability} is not in (0, 1)")
    lo, hi = 0.0, 200.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        h = 0.5 * mid
        if 1.0 - math.exp(-h) * (1.0 + h + 0.5 * h * h) < probability:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True, slots=True, eq=False)
class Corridor:
    """The ground paths a track's missile may still fly, at ``probability``, from ``time`` on.

    Cross-section ``k`` is the point under the mean path at ``times[k]`` (the last one is the
    mean impact point, at the mean impact time) with a 2x2 east-north matrix ``spread[k]``
    (m^2): the missile's ground point lies in ``{y : y' spread^-1 y <= 1}`` around it. The
    corridor is the sweep of those ellipses, each widened by ``buffer_m`` (drag, lift and
    thrust the ballistic model ignores); its last ellipse is where the missile may come down.

    Every state of the track's ``probability`` ellipsoid (chi-square, 6 degrees of freedom) is
    mapped, to first order, inside every cross-section, so the whole path of the missile lies in
    the corridor with at least that probability; ``spread`` is linear in the covariance, so a
    wider covariance never gives a narrower corridor.
    """

    probability: float
    time: float
    times: Array            # (K,)
    lat_deg: Array          # (K,)
    lon_deg: Array          # (K,)
    spread: Array           # (K, 2, 2) m^2
    buffer_m: float
    # Kept once computed: a corridor is laid over the map for its regions of several kinds,
    # and each pass asked for its densified form and, three times, for its axes (an eigh over
    # every section: a tenth of a scenario's CPU).
    _axes: tuple[Array, Array] | None = field(default=None, init=False, repr=False)
    _dense: Corridor | None = field(default=None, init=False, repr=False)

    @property
    def impact_time(self) -> float:
        return float(self.times[-1])

    def semi_axes_m(self) -> tuple[Array, Array]:
        """Buffered semi-axes (K, 2), and the unit east-north axes (K, 2, 2) as columns
        (shared between calls: not to be written to)."""
        axes = self._axes
        if axes is None:
            w, v = np.linalg.eigh(self.spread)
            axes = (np.sqrt(np.clip(w, 0.0, None)) + self.buffer_m, v)
            object.__setattr__(self, "_axes", axes)
        return axes

    def contains(self, lat_deg: Array | float, lon_deg: Array | float) -> NDArray[np.bool_]:
        """Whether ground points lie in the corridor (in some cross-section ellipse or between
        two neighbours, which :meth:`densified` fills in)."""
        la = np.atleast_1d(np.asarray(lat_deg, dtype=float))
        lo = np.atleast_1d(np.asarray(lon_deg, dtype=float))
        return np.asarray(self.densified().sections_hit(la, lo).any(axis=1))

    def densified(self, spacing_m: float | None = None) -> Corridor:
        """The same corridor with cross-sections at most ``spacing_m`` apart (default: the
        buffer), interpolated linearly, so that the union of the ellipses has no gaps."""
        if spacing_m is None and self._dense is not None:
            return self._dense
        step = spacing_m if spacing_m is not None else max(self.buffer_m, 1_000.0)
        if self.times.size < 2:
            return self
        d = great_circle_m(np.radians(self.lat_deg[:-1]), np.radians(self.lon_deg[:-1]),
                           np.radians(self.lat_deg[1:]), np.radians(self.lon_deg[1:]))
        k = np.maximum(np.ceil(d / step).astype(int), 1)
        f = np.concatenate([np.arange(n) / n for n in k])
        i = np.repeat(np.arange(self.times.size - 1), k)
        g = f[:, None]
        dlon = (self.lon_deg[i + 1] - self.lon_deg[i] + 180.0) % 360.0 - 180.0

        def mix(a: Array) -> Array:
            out: Array = np.append(a[i] + f * (a[i + 1] - a[i]), a[-1])
            return out

        spread = np.concatenate([self.spread[i] + g[:, :, None] * (self.spread[i + 1]
                                                                   - self.spread[i]),
                                 self.spread[-1:]])
        dense = Corridor(self.probability, self.time, mix(self.times), mix(self.lat_deg),
                         np.append(self.lon_deg[i] + f * dlon, self.lon_deg[-1]), spread,
                         self.buffer_m)
        if spacing_m is None:
            object.__setattr__(self, "_dense", dense)
        return dense

    def sections_hit(self, lat_deg: Array, lon_deg: Array) -> NDArray[np.bool_]:
        """(points, sections): which cross-section ellipses contain each point (local
        east-north offsets from each centre; fine at the corridor's widths)."""
        axes, v = self.semi_axes_m()
        # A point lies in an ellipse only within its longer semi-axis of the centre, so each
        # section is tested only against the points in the band of latitudes it can reach,
        # not every point of the map near the corridor (compiled: kernels.sections_hit). The
        # slack keeps rounding from dropping a boundary point.
        from gsomia.core.tracking import kernels  # numba: only in processes that track

        reach = np.degrees(axes.max(axis=1) / R_EARTH) * (1.0 + 1e-9) + 1e-12
        n, k = lat_deg.shape[0], self.lat_deg.shape[0]
        return kernels.sections_hit(
            kernels.rows(lat_deg, (n,)), kernels.rows(lon_deg, (n,)),
            kernels.rows(self.lat_deg, (k,)), kernels.rows(self.lon_deg, (k,)),
            np.cos(np.radians(self.lat_deg)), kernels.rows(axes, (k, 2)),
            kernels.rows(v, (k, 2, 2)), kernels.rows(reach, (k,)))

    def outline(self, n: int = 16) -> tuple[Array, Array]:
        """Points on the boundary of every cross-section ellipse, and their centres (degrees):
        enough to find a region that the corridor enters without enclosing any of its vertices
        (a coarse polygon's long edge)."""
        axes, v = self.semi_axes_m()
        th = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
        a = axes[:, 0:1] * np.cos(th)[None, :]
        b = axes[:, 1:2] * np.sin(th)[None, :]
        east = a * v[:, 0, 0:1] + b * v[:, 0, 1:2]
        north = a * v[:, 1, 0:1] + b * v[:, 1, 1:2]
        lat = self.lat_deg[:, None] + np.degrees(north / R_EARTH)
        coslat = np.maximum(np.cos(np.radians(self.lat_deg)), 1e-6)[:, None]
        lon = self.lon_deg[:, None] + np.degrees(east / (R_EARTH * coslat))
        return (np.concatenate([lat.ravel(), self.lat_deg]),
                np.concatenate([lon.ravel(), self.lon_deg]))


def _ground_points(r: Array) -> tuple[Array, Array, Array]:
    """Latitude, longitude (rad) and the ECEF point on the ellipsoid under ECEF points."""
    lat, lon, _ = earth.ecef_to_geodetic(r)
    return lat, lon, earth.geodetic_to_ecef(lat, lon, np.zeros_like(lat))


CORRIDOR_CROSSING_STEP_S = 20.0


def corridor_rows(x: Array, t: Array) -> tuple[Array, Array]:
    """The states whose flights make the corridors of tracks x (N, 6) at t (N,): each
    track's, then it plus and minus each finite-difference step (N*13, 6), and their times."""
    steps = np.diag(_JACOBIAN_STEP)
    rows = np.concatenate([x[:, None, :], x[:, None, :] + steps[None], x[:, None, :] - steps[None]],
                          axis=1).reshape(-1, N_STATE)            # (N*13, 6)
    return rows, np.repeat(t, N_SIGMA)


def corridors(x: Array, P: Array, t: Array, *, probability: float = 0.99,
              buffer_m: float = 20_000.0, step_s: float = CORRIDOR_STEP_S,
              max_time_s: float = 7200.0, inv_beta: float = 0.0,
              crossing: tuple[Array, Array, NDArray[np.bool_]] | None = None
              ) -> list[Corridor | None]:
    """Corridors of tracks x (N, 6), P (N, 6, 6) at t (N,); None where the mean path or one
    of its perturbed paths never comes down in ``max_time_s``.

    The flight map (state → point under the missile at each later time, and → impact point)
    is linearised by central differences; ``J P J'`` scaled by the chi-square quantile gives
    each cross-section. Paths are integrated without drag (it only matters in the last
    minute, where the impact ellipse, which has it, closes the corridor). ``crossing``: where
    :func:`corridor_rows` come down, if already integrated (with a step of
    :data:`CORRIDOR_CROSSING_STEP_S`, ``max_time_s`` and ``inv_beta``).
    """
    n = x.shape[0]
    if n == 0:
        return []
    scale = chi2_6_quantile(probability)
    rows, t_rows = corridor_rows(x, t)
    tc, rc, ok = crossing if crossing is not None else ground_crossing(
        rows, t_rows, np.ones(rows.shape[0]), step_s=CORRIDOR_CROSSING_STEP_S,
        max_time_s=max_time_s, inv_beta=inv_beta)
    ok_track: NDArray[np.bool_] = np.asarray(ok.reshape(n, N_SIGMA).all(axis=1), dtype=bool)
    # Sections at the mean path's times: step_s apart until the mean comes down.
    t_imp = tc.reshape(n, N_SIGMA)[:, 0]
    horizon = np.where(ok_track, t_imp - t, 0.0)
    k_max = int(np.ceil(np.max(horizon) / step_s)) if ok_track.any() else 0
    s = rows.copy()
    samples = [s[:, :3].copy()]
    h = np.full(rows.shape[0], step_s)
    for _ in range(k_max):
        s = rk4_step(s, h)
        samples.append(s[:, :3].copy())
    path = np.stack(samples, axis=1)                 # (N*13, K+1, 3)
    out: list[Corridor | None] = []
    for i in range(n):
        if not ok_track[i]:
            out.append(None)
            continue
        block = slice(i * N_SIGMA, (i + 1) * N_SIGMA)
        k = int(np.ceil(horizon[i] / step_s))        # sections before the impact one
        k = max(min(k, path.shape[1]), 1)
        pts = np.concatenate([path[block, :k], rc[block][:, None, :]], axis=1)  # (13, k+1, 3)
        times = np.append(t[i] + step_s * np.arange(k), t_imp[i])
        lat, lon, ground = _ground_points(pts)
        basis = earth.enu_basis(lat[0], lon[0])[:, :2]            # (k+1, 2, 3)
        en = np.einsum("ksj,mkj->mks", basis, ground - ground[0][None])   # (13, k+1, 2)
        jac = (en[1:7] - en[7:13]) / (2.0 * _JACOBIAN_STEP[:, None, None])  # (6, k+1, 2)
        jac = jac.transpose(1, 2, 0)                                     # (k+1, 2, 6)
        spread = scale * jac @ P[i][None] @ jac.transpose(0, 2, 1)
        out.append(Corridor(probability, float(t[i]), times, np.degrees(lat[0]),
                            np.degrees(lon[0]), spread, buffer_m))
    return out
