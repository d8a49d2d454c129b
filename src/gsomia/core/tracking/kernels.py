"""Compiled inner loops of the ballistic model (numba): RK4 steps and ground crossings.

The NumPy forms in :mod:`predictor` and :mod:`impact` spend ~20 us of call overhead per
acceleration on arrays of a few dozen rows; an evaluation asks for tens of thousands a launch.
These loops do the same arithmetic row by row, in the same order (same results up to the last
bits of the transcendental functions, whose libm differs from NumPy's), compiled once and
cached beside this file (``cache=True``: a later process loads the machine code in ~0.1 s).
Each releases the GIL while it runs (``nogil=True``: they take and make arrays only): the warning
centre runs beside a node's receive and HTTP threads, which a 20 ms corridor test holding the
GIL stopped outright (the interpreter's switch interval does not reach into compiled code).

Only processes that track import this module (the tracker, the scenario model, ``evaluate``):
``gsomia`` commands, ``node run`` and the web server start without numba.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit as _njit
from numpy.typing import NDArray

from gsomia.core.tracking import earth, predictor, trajectory
from gsomia.core.tracking.types import Array, IntArray

_F = TypeVar("_F", bound=Callable[..., Any])


def njit(**options: Any) -> Callable[[_F], _F]:
    """numba's ``njit`` with its options, typed for mypy: the compiled function keeps the
    signature of the Python one.

    ``cache=True`` writes beside this file, else in ``NUMBA_CACHE_DIR`` or the user's cache
    folder (``~/.cache/numba``), whichever numba finds writable first. Where none is (a
    package installed read-only, run by a user without a home), numba refuses to decorate:
    importing this module raised, so a node's warning centre took every report as unusable
    and never warned. There the kernels are compiled in memory instead, at their first call
    in each process (the node's centre gets ready at its start, off the reports' path)."""
    def decorate(f: _F) -> _F:
        try:
            return cast(_F, _njit(**options)(f))
        except RuntimeError:
            if not options.get("cache"):
                raise
            return cast(_F, _njit(**{**options, "cache": False})(f))

    return decorate


def rows(a: Any, shape: tuple[int, ...]) -> Array:
    """``a`` as a C-contiguous float64 array of ``shape``, the form the kernels take
    (broadcast only when its shape differs: ``np.broadcast_to`` costs microseconds a call)."""
    out = np.asarray(a, dtype=np.float64)
    if out.shape != shape:
        out = np.broadcast_to(out, shape)
    return np.ascontiguousarray(out)


# The constants as the NumPy forms combine them (Python folds a chain of floats before it
# meets an array), so that the compiled arithmetic is the same operation for operation.
_GM = earth.GM
_NEG_GM = -earth.GM
_R_MEAN = earth.R_MEAN
_J = 1.5 * earth.J2 * (earth.A * earth.A)
_J2AA = earth.J2 * earth.A * earth.A
_W2 = earth.OMEGA * earth.OMEGA
_2W = 2.0 * earth.OMEGA
_A = earth.A
_B = earth.B
_E2 = earth.E2
_F1 = 1.0 - earth.F
_EP2B = earth.EP2 * earth.B
_E2A = earth.E2 * earth.A
_N1 = 1.0 - earth.E2
_RHO0 = predictor.RHO0
_SCALE_HEIGHT = predictor.SCALE_HEIGHT


@njit(cache=True, inline="always")
def _acceleration(x: float, y: float, z: float, vx: float, vy: float, vz: float,
                  inv_beta: float) -> tuple[float, float, float]:
    rr2 = x * x + y * y + z * z
    inv_r2 = 1.0 / rr2
    k = _NEG_GM * inv_r2 * math.sqrt(inv_r2)
    j = _J * inv_r2
    t = j * (1.0 - 5.0 * z * z * inv_r2)
    kxy = k * (1.0 + t)
    ax = kxy * x + _W2 * x + _2W * vy
    ay = kxy * y + _W2 * y - _2W * vx
    az = k * z * (1.0 + t + 2.0 * j)
    if inv_beta > 0.0:
        speed = math.sqrt(vx * vx + vy * vy + vz * vz)
        height = math.sqrt(rr2) - _B / math.sqrt(1.0 - _E2 * (x * x + y * y) / rr2)
        rho = _RHO0 * math.exp(-max(height, -1_000.0) / _SCALE_HEIGHT)
        d = 0.5 * inv_beta * rho * speed
        ax = ax - d * vx
        ay = ay - d * vy
        az = az - d * vz
    return ax, ay, az


@njit(cache=True, inline="always")
def _rk4(s: Array, h: float, inv_beta: float, out: Array) -> None:
    """One RK4 step of one state s (6,) into out (6,)."""
    x, y, z, vx, vy, vz = s[0], s[1], s[2], s[3], s[4], s[5]
    a1x, a1y, a1z = _acceleration(x, y, z, vx, vy, vz, inv_beta)
    hh = 0.5 * h
    x2, y2, z2 = x + hh * vx, y + hh * vy, z + hh * vz
    u2, v2, w2 = vx + hh * a1x, vy + hh * a1y, vz + hh * a1z
    a2x, a2y, a2z = _acceleration(x2, y2, z2, u2, v2, w2, inv_beta)
    x3, y3, z3 = x + hh * u2, y + hh * v2, z + hh * w2
    u3, v3, w3 = vx + hh * a2x, vy + hh * a2y, vz + hh * a2z
    a3x, a3y, a3z = _acceleration(x3, y3, z3, u3, v3, w3, inv_beta)
    x4, y4, z4 = x + h * u3, y + h * v3, z + h * w3
    u4, v4, w4 = vx + h * a3x, vy + h * a3y, vz + h * a3z
    a4x, a4y, a4z = _acceleration(x4, y4, z4, u4, v4, w4, inv_beta)
    h6 = h / 6.0
    out[0] = x + h6 * (vx + 2.0 * (u2 + u3) + u4)
    out[1] = y + h6 * (vy + 2.0 * (v2 + v3) + v4)
    out[2] = z + h6 * (vz + 2.0 * (w2 + w3) + w4)
    out[3] = vx + h6 * (a1x + 2.0 * (a2x + a3x) + a4x)
    out[4] = vy + h6 * (a1y + 2.0 * (a2y + a3y) + a4y)
    out[5] = vz + h6 * (a1z + 2.0 * (a2z + a3z) + a4z)


@njit(cache=True, nogil=True)
def rk4_step(s: Array, h: Array, inv_beta: float) -> Array:
    """:func:`predictor.rk4_step`: states (K, 6), per-row steps h (K,)."""
    out = np.empty_like(s)
    for i in range(s.shape[0]):
        _rk4(s[i], h[i], inv_beta, out[i])
    return out


@njit(cache=True, inline="always")
def _geodetic_height(x: float, y: float, z: float) -> float:
    """:func:`earth.ecef_to_geodetic`'s height (Bowring, two iterations)."""
    p = math.hypot(x, y)
    beta = math.atan2(z * _A, p * _B)
    lat = 0.0
    for _ in range(2):
        sb, cb = math.sin(beta), math.cos(beta)
        lat = math.atan2(z + _EP2B * sb**3, p - _E2A * cb**3)
        beta = math.atan2(_F1 * math.sin(lat), math.cos(lat))
    sl, cl = math.sin(lat), math.cos(lat)
    n = _A / math.sqrt(1.0 - _E2 * sl * sl)
    if abs(cl) > 1e-3:
        return p / cl - n
    return z / sl - n * _N1


@njit(cache=True, inline="always")
def _height(s: Array, exact: bool) -> float:
    """Geodetic height if ``exact``, else :func:`impact._height_sign`'s: the radial height,
    geodetic within a kilometre of the ground."""
    x, y, z = s[0], s[1], s[2]
    if not exact:
        r2 = x * x + y * y + z * z
        fast = math.sqrt(r2) - _B / math.sqrt(1.0 - _E2 * (x * x + y * y) / r2)
        if abs(fast) >= 1_000.0:
            return fast
    return _geodetic_height(x, y, z)


@njit(cache=True, inline="always")
def _hermite(p0: Array, v0: Array, p1: Array, v1: Array, h: float, s: float,
             out: Array) -> None:
    s2, s3 = s * s, s * s * s
    a = 2 * s3 - 3 * s2 + 1
    b = (s3 - 2 * s2 + s) * h
    c = -2 * s3 + 3 * s2
    d = (s3 - s2) * h
    for j in range(3):
        out[j] = a * p0[j] + b * v0[j] + c * p1[j] + d * v1[j]


@njit(cache=True, nogil=True)
def ground_crossing(x: Array, t0: Array, direction: Array, step_s: float, steps: int,
                    inv_beta: float) -> tuple[Array, Array, NDArray[np.bool_]]:
    """:func:`impact.ground_crossing`, one row after the other."""
    k = x.shape[0]
    t_cross = np.full(k, np.nan)
    r_cross = np.full((k, 3), np.nan)
    found = np.zeros(k, dtype=np.bool_)
    exact = inv_beta > 0.0
    s = np.empty(6)
    s_next = np.empty(6)
    mid = np.empty(3)
    for i in range(k):
        s[:] = x[i]
        t = t0[i]
        h = direction[i] * step_s
        z = _height(s, exact)
        armed = z > 0.0
        for _ in range(steps):
            if exact:
                sign = 1.0 if h > 0.0 else (-1.0 if h < 0.0 else 0.0)
                h = sign * min(step_s, 2.0) if z < 60_000.0 else sign * step_s
            _rk4(s, h, inv_beta, s_next)
            z_next = _height(s_next, exact)
            if armed and z_next <= 0.0:
                p0, v0, p1, v1 = s[:3], s[3:], s_next[:3], s_next[3:]
                lo, hi = 0.0, 1.0
                f_lo, f_hi = _geodetic_height(p0[0], p0[1], p0[2]), _geodetic_height(
                    p1[0], p1[1], p1[2])
                for _ in range(6):
                    frac = min(max(lo + f_lo / (f_lo - f_hi) * (hi - lo), 0.0), 1.0)
                    _hermite(p0, v0, p1, v1, h, frac, mid)
                    f_mid = _geodetic_height(mid[0], mid[1], mid[2])
                    if f_mid > 0.0:
                        lo, f_lo = frac, f_mid
                    else:
                        hi, f_hi = frac, f_mid
                frac = min(max(lo + f_lo / (f_lo - f_hi) * (hi - lo), 0.0), 1.0)
                t_cross[i] = t + frac * h
                _hermite(p0, v0, p1, v1, h, frac, mid)
                r_cross[i] = mid
                found[i] = True
                break
            armed = armed or z_next > 0.0
            s[:] = s_next
            t = t + h
            z = z_next
    return t_cross, r_cross, found


# --- the filter: prediction, gating and update of a few tracks per scan ----------------------

_I6 = np.eye(6)


@njit(cache=True, nogil=True)
def predict(x: Array, P: Array, h: Array, substeps: int, q: float, q_boost: float,
            boost_ceiling_m: float, q_extra: Array, inv_beta: float) -> tuple[Array, Array]:
    """:meth:`predictor.BallisticPredictor.predict`, one track after the other: ``substeps``
    RK4 steps of h (K,) each, the covariance through the transition matrix at each step's
    midpoint, plus white acceleration noise (``q``, or ``q_boost`` for a low climbing track,
    plus ``q_extra`` (K,))."""
    k = x.shape[0]
    x_out = np.empty_like(x)
    P_out = np.empty_like(P)
    s = np.empty(6)
    s_next = np.empty(6)
    phi = np.empty((6, 6))
    g = np.empty((3, 3))
    c = np.empty((3, 3))
    cg = np.empty((3, 3))
    cc = np.empty((3, 3))
    a6 = np.empty((6, 6))
    p6 = np.empty((6, 6))
    for i in range(k):
        s[:] = x[i]
        p6[:, :] = P[i]
        hi = h[i]
        for _ in range(substeps):
            _rk4(s, hi, inv_beta, s_next)
            rx = 0.5 * (s[0] + s_next[0])
            ry = 0.5 * (s[1] + s_next[1])
            rz = 0.5 * (s[2] + s_next[2])
            vx = 0.5 * (s[3] + s_next[3])
            vy = 0.5 * (s[4] + s_next[4])
            vz = 0.5 * (s[5] + s_next[5])
            # gravity gradient (point mass) plus centrifugal
            rr2 = rx * rx + ry * ry + rz * rz
            rr = math.sqrt(rr2)
            mu_r3 = _GM / (rr2 * rr)
            u0, u1, u2 = rx / rr, ry / rr, rz / rr
            u = (u0, u1, u2)
            for a in range(3):
                for b in range(3):
                    g[a, b] = 3.0 * mu_r3 * (u[a] * u[b]) - (mu_r3 if a == b else 0.0)
                    c[a, b] = 0.0
            g[0, 0] += _W2
            g[1, 1] += _W2
            c[0, 1] = _2W
            c[1, 0] = -_2W
            if inv_beta > 0.0:
                height = rr - _B / math.sqrt(1.0 - _E2 * (rx * rx + ry * ry) / rr2)
                rho = _RHO0 * math.exp(-max(height, -1_000.0) / _SCALE_HEIGHT)
                speed = math.sqrt(vx * vx + vy * vy + vz * vz)
                kd = 0.5 * inv_beta * rho
                v = (vx, vy, vz)
                sp = max(speed, 1e-9)
                gk = kd * speed / _SCALE_HEIGHT
                for a in range(3):
                    for b in range(3):
                        c[a, b] -= kd * ((speed if a == b else 0.0) + v[a] * v[b] / sp)
                        g[a, b] += gk * (v[a] * u[b])
            for a in range(3):
                for b in range(3):
                    cg_ab = 0.0
                    cc_ab = 0.0
                    for m in range(3):
                        cg_ab += c[a, m] * g[m, b]
                        cc_ab += c[a, m] * c[m, b]
                    cg[a, b] = cg_ab
                    cc[a, b] = cc_ab
            h2 = hi * hi * 0.5
            for a in range(3):
                for b in range(3):
                    eye = 1.0 if a == b else 0.0
                    phi[a, b] = eye + g[a, b] * h2
                    phi[a, b + 3] = eye * hi + c[a, b] * h2
                    phi[a + 3, b] = g[a, b] * hi + cg[a, b] * h2
                    phi[a + 3, b + 3] = eye + c[a, b] * hi + (g[a, b] + cc[a, b]) * h2
            # P = phi P phi'
            for a in range(6):
                for b in range(6):
                    acc = 0.0
                    for m in range(6):
                        acc += phi[a, m] * p6[m, b]
                    a6[a, b] = acc
            for a in range(6):
                for b in range(6):
                    acc = 0.0
                    for m in range(6):
                        acc += a6[a, m] * phi[b, m]
                    p6[a, b] = acc
            qi = q
            if boost_ceiling_m > 0.0:
                radial = s[0] * s[3] + s[1] * s[4] + s[2] * s[5]
                up = math.sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2]) - _R_MEAN
                if up < boost_ceiling_m and radial > 0.0:
                    qi = q_boost
            qi = qi + q_extra[i]
            ah = abs(hi)
            na = qi * ah**3 / 3.0
            nb = qi * ah**2 / 2.0
            nc = qi * ah
            for a in range(3):
                p6[a, a] += na
                p6[a, a + 3] += nb
                p6[a + 3, a] += nb
                p6[a + 3, a + 3] += nc
            s[:] = s_next
        x_out[i] = s
        for a in range(6):
            for b in range(6):
                P_out[i, a, b] = 0.5 * (p6[a, b] + p6[b, a])
    return x_out, P_out


@njit(cache=True, inline="always")
def _measure(x: Array, site: Array, basis: Array, rae: bool, z: Array, H: Array) -> None:
    """:func:`updater.measure` of one state into z (m,) and H (m, 6)."""
    d0, d1, d2 = x[0] - site[0], x[1] - site[1], x[2] - site[2]
    e = basis[0, 0] * d0 + basis[0, 1] * d1 + basis[0, 2] * d2
    n = basis[1, 0] * d0 + basis[1, 1] * d1 + basis[1, 2] * d2
    u = basis[2, 0] * d0 + basis[2, 1] * d1 + basis[2, 2] * d2
    rh2 = e * e + n * n
    rh = math.sqrt(rh2)
    r2 = rh2 + u * u
    rng = math.sqrt(r2)
    az = math.atan2(e, n) % (2.0 * math.pi)
    el = math.atan2(u, rh)
    row = 0
    H[:, :] = 0.0
    j = np.zeros((3, 3))
    if rae:
        z[0] = rng
        j[0, 0], j[0, 1], j[0, 2] = e / rng, n / rng, u / rng
        row = 1
    z[row] = az
    z[row + 1] = el
    j[row, 0] = n / rh2
    j[row, 1] = -e / rh2
    j[row + 1, 0] = -e * u / (r2 * rh)
    j[row + 1, 1] = -n * u / (r2 * rh)
    j[row + 1, 2] = rh / r2
    for a in range(row + 2):
        for b in range(3):
            H[a, b] = j[a, 0] * basis[0, b] + j[a, 1] * basis[1, b] + j[a, 2] * basis[2, b]


@njit(cache=True, inline="always")
def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


@njit(cache=True, inline="always")
def _lu(S: Array, piv: IntArray) -> float:
    """LU factors of S (m, m) in place, partial pivoting; returns log |det S|."""
    m = S.shape[0]
    logdet = 0.0
    for col in range(m):
        best = col
        for r in range(col + 1, m):
            if abs(S[r, col]) > abs(S[best, col]):
                best = r
        piv[col] = best
        if best != col:
            for b in range(m):
                S[col, b], S[best, b] = S[best, b], S[col, b]
        logdet += math.log(abs(S[col, col]))
        for r in range(col + 1, m):
            f = S[r, col] / S[col, col]
            S[r, col] = f
            for b in range(col + 1, m):
                S[r, b] -= f * S[col, b]
    return logdet


@njit(cache=True, inline="always")
def _lu_solve(LU: Array, piv: IntArray, y: Array) -> None:
    """Solve in place for the columns of y (m, c) with :func:`_lu`'s factors."""
    m = LU.shape[0]
    for col in range(m):
        p = piv[col]
        if p != col:
            for b in range(y.shape[1]):
                y[col, b], y[p, b] = y[p, b], y[col, b]
    for b in range(y.shape[1]):
        for r in range(1, m):
            acc = y[r, b]
            for q in range(r):
                acc -= LU[r, q] * y[q, b]
            y[r, b] = acc
        for r in range(m - 1, -1, -1):
            acc = y[r, b]
            for q in range(r + 1, m):
                acc -= LU[r, q] * y[q, b]
            y[r, b] = acc / LU[r, r]


@njit(cache=True, inline="always")
def _projected(x: Array, P: Array, site: Array, basis: Array, rae: bool, z: Array, H: Array,
               HP: Array, HPH: Array) -> None:
    """One state's predicted measurement z, its Jacobian H, H P and H P H' (m, m)."""
    _measure(x, site, basis, rae, z, H)
    m = z.shape[0]
    for r in range(m):
        for b in range(6):
            acc = 0.0
            for q in range(6):
                acc += H[r, q] * P[q, b]
            HP[r, b] = acc
    for r in range(m):
        for b in range(m):
            acc = 0.0
            for q in range(6):
                acc += HP[r, q] * H[b, q]
            HPH[r, b] = acc


@njit(cache=True, inline="always")
def _normalised_square(z: Array, z_pred: Array, a: int, LU: Array, piv: IntArray,
                       nu: Array) -> float:
    """The innovation z - z_pred (azimuth ``a`` wrapped) into nu (m, 1), and nu' S^-1 nu
    with S's :func:`_lu` factors."""
    m = z.shape[0]
    for r in range(m):
        nu[r, 0] = z[r] - z_pred[r]
    nu[a, 0] = _wrap(nu[a, 0])
    w = nu.copy()
    _lu_solve(LU, piv, w)
    acc: float = 0.0
    for r in range(m):
        acc += nu[r, 0] * w[r, 0]
    return acc


@njit(cache=True, nogil=True)
def mahalanobis(x: Array, P: Array, z: Array, R: Array, site: Array, basis: Array,
                rae: bool) -> tuple[Array, Array]:
    """:func:`associator.mahalanobis`: squared distances and log-determinants (N, M)."""
    k, mm = x.shape[0], z.shape[0]
    m = z.shape[1]
    a = 1 if rae else 0
    d2 = np.empty((k, mm))
    logdet = np.empty((k, mm))
    zp = np.empty(m)
    H = np.empty((m, 6))
    HP = np.empty((m, 6))
    S0 = np.empty((m, m))
    S = np.empty((m, m))
    nu = np.empty((m, 1))
    piv = np.empty(m, dtype=np.int64)
    for i in range(k):
        _projected(x[i], P[i], site, basis, rae, zp, H, HP, S0)
        for j in range(mm):
            S[:, :] = S0 + R[j]
            logdet[i, j] = _lu(S, piv)
            d2[i, j] = _normalised_square(z[j], zp, a, S, piv, nu)
    return d2, logdet


@njit(cache=True, nogil=True)
def update_nis(x: Array, P: Array, z: Array, R: Array, site: Array, basis: Array,
               rae: bool) -> tuple[Array, Array, Array]:
    """:meth:`updater.ExtendedKalmanUpdater.update_nis`, one track after the other."""
    k, m = x.shape[0], z.shape[1]
    a = 1 if rae else 0
    x_out = np.empty_like(x)
    P_out = np.empty_like(P)
    nis = np.empty(k)
    zp = np.empty(m)
    H = np.empty((m, 6))
    HP = np.empty((m, 6))
    S = np.empty((m, m))
    nu = np.empty((m, 1))
    piv = np.empty(m, dtype=np.int64)
    A = np.empty((6, 6))
    AP = np.empty((6, 6))
    KR = np.empty((6, m))
    for i in range(k):
        _projected(x[i], P[i], site, basis, rae, zp, H, HP, S)
        S += R[i]
        _lu(S, piv)
        Kt = HP.copy()              # S K' = H P (S and P symmetric)
        _lu_solve(S, piv, Kt)
        nis[i] = _normalised_square(z[i], zp, a, S, piv, nu)
        for b in range(6):
            acc = 0.0
            for r in range(m):
                acc += Kt[r, b] * nu[r, 0]
            x_out[i, b] = x[i, b] + acc
        for r6 in range(6):
            for b in range(6):
                acc = 0.0
                for q in range(m):
                    acc += Kt[q, r6] * H[q, b]
                A[r6, b] = _I6[r6, b] - acc
            for b in range(m):
                acc = 0.0
                for q in range(m):
                    acc += Kt[q, r6] * R[i, q, b]
                KR[r6, b] = acc
        for r6 in range(6):
            for b in range(6):
                acc = 0.0
                for q in range(6):
                    acc += A[r6, q] * P[i, q, b]
                AP[r6, b] = acc
        for r6 in range(6):
            for b in range(r6, 6):
                acc = 0.0
                for q in range(6):
                    acc += AP[r6, q] * A[b, q]
                acc2 = 0.0
                for q in range(m):
                    acc2 += KR[r6, q] * Kt[q, b]
                acc3 = 0.0
                for q in range(6):
                    acc3 += AP[b, q] * A[r6, q]
                acc4 = 0.0
                for q in range(m):
                    acc4 += KR[b, q] * Kt[q, r6]
                val = 0.5 * ((acc + acc2) + (acc3 + acc4))
                P_out[i, r6, b] = val
                P_out[i, b, r6] = val
    return x_out, P_out, nis


@njit(cache=True, inline="always")
def _jacobi(x: Array) -> float:
    """:func:`predictor.jacobi_integral` of one state (6,)."""
    rr2 = x[0] * x[0] + x[1] * x[1] + x[2] * x[2]
    rr = math.sqrt(rr2)
    p2 = 1.5 * x[2] ** 2 / rr2 - 0.5
    potential = _NEG_GM / rr * (1.0 - _J2AA / rr2 * p2)
    rho2 = x[0] ** 2 + x[1] ** 2
    energy: float = (0.5 * (x[3] * x[3] + x[4] * x[4] + x[5] * x[5]) + potential
                     - 0.5 * _W2 * rho2)
    return energy


@njit(cache=True, inline="always")
def _jacobi_gradient(x: Array, grad: Array) -> None:
    """:func:`predictor.jacobi_energy`'s gradient of one state (6,) into grad (6,)."""
    rx, ry, rz = x[0], x[1], x[2]
    rr2 = rx * rx + ry * ry + rz * rz
    rr = math.sqrt(rr2)
    k = _NEG_GM / (rr2 * rr)
    zr2 = rz * rz / rr2
    j = _J / rr2
    grad[0] = -(k * rx * (1.0 + j * (1.0 - 5.0 * zr2)) + _W2 * rx)
    grad[1] = -(k * ry * (1.0 + j * (1.0 - 5.0 * zr2)) + _W2 * ry)
    grad[2] = -(k * rz * (1.0 + j * (3.0 - 5.0 * zr2)) + _W2 * 0.0)
    grad[3], grad[4], grad[5] = x[3], x[4], x[5]


@njit(cache=True, nogil=True)
def jacobi_energy(x: Array) -> tuple[Array, Array]:
    """:func:`predictor.jacobi_energy`: Jacobi integrals (K,) and gradients (K, 6)."""
    k = x.shape[0]
    energy = np.empty(k)
    grad = np.empty((k, 6))
    for i in range(k):
        energy[i] = _jacobi(x[i])
        _jacobi_gradient(x[i], grad[i])
    return energy, grad


@njit(cache=True, nogil=True)
def update_both(xb: Array, Pb: Array, xm: Array, Pm: Array, z: Array, R: Array, site: Array,
                basis: Array, rae: bool, gate: float, drift: float, alarm: float,
                strikes: IntArray, cusum: Array, calm: IntArray
                ) -> tuple[Array, Array, Array, Array, IntArray, Array, IntArray]:
    """The tracker's update of the ballistic and manoeuvre filters of K tracks with their
    detections z (K, m): see :meth:`tracker.Tracker.scan`. Returns the ballistic filter
    (restarted from the manoeuvre one where surprised), the manoeuvre filter, and the
    tracks' calm, CUSUM and strike counts."""
    k = xb.shape[0]
    xb_new, Pb_new, nis = update_nis(xb, Pb, z, R, site, basis, rae)
    xm_new, Pm_new, _ = update_nis(xm, Pm, z, R, site, basis, rae)
    strikes_out = np.empty_like(strikes)
    cusum_out = np.empty_like(cusum)
    calm_out = np.empty_like(calm)
    grad = np.empty(6)
    for i in range(k):
        e_pred = _jacobi(xb[i])
        _jacobi_gradient(xb[i], grad)
        n_strikes = strikes[i] + 1 if nis[i] > gate else 0
        surprised = n_strikes >= 2
        e_upd = _jacobi(xb_new[i])
        kick_var = 0.0
        for a in range(6):
            row = 0.0
            for b in range(6):
                row += (Pb[i, a, b] - Pb_new[i, a, b]) * grad[b]
            kick_var += grad[a] * row
        kick = (e_upd - e_pred) / math.sqrt(max(kick_var, 1e-9))
        c = max(0.0, cusum[i] + kick - drift)
        surprised = surprised or c > alarm
        if surprised:
            c = 0.0
            n_strikes = 0
            xb_new[i] = xm_new[i]
            Pb_new[i] = Pm_new[i]
            calm_out[i] = 0
        else:
            calm_out[i] = calm[i] + 1
        cusum_out[i] = c
        strikes_out[i] = n_strikes
    return xb_new, Pb_new, xm_new, Pm_new, calm_out, cusum_out, strikes_out


_DEG = np.pi / 180.0    # NumPy's radians()


@njit(cache=True, nogil=True)
def sections_hit(lat_deg: Array, lon_deg: Array, centre_lat: Array, centre_lon: Array,
                 cos_lat: Array, axes: Array, v: Array, reach: Array) -> NDArray[np.bool_]:
    """:meth:`impact.Corridor.sections_hit`: each section against the points within
    ``reach`` (degrees) of its latitude, by the same arithmetic.

    The points are put once in columns of longitude, each sorted by latitude, and a section
    visits only the points of its band of latitudes (two binary searches a column) in the
    columns its window of longitudes reaches: a wide corridor over a coast of thousands of
    vertices made the pairs of every section with every point most of a warning centre's
    CPU per report. A point with a NaN coordinate is in no ellipse: left out.

    The window: a point further east or west of the centre than the longer semi-axis (with
    1e-6 of slack, far above rounding) is outside, as ``axes`` are the semi-axes along the
    orthonormal columns of ``v``, so q0^2 + q1^2 >= |offset|^2 / longer^2 > 1 there. Only
    where the window lies strictly within (-180, 180) and every point's longitude within
    [-180, 180]: a longitude that wraps is compared the long way round otherwise (the
    ellipse test wraps it), and the section visits every column."""
    n, k = lat_deg.shape[0], centre_lat.shape[0]
    out = np.zeros((n, k), dtype=np.bool_)
    # the points with both coordinates, and the span of their longitudes
    keep = np.empty(n, dtype=np.int64)
    m = 0
    plain = True
    west_most, east_most = np.inf, -np.inf
    for p in range(n):
        la, lo = lat_deg[p], lon_deg[p]
        if math.isnan(la) or math.isnan(lo):
            continue
        keep[m] = p
        m += 1
        if lo < -180.0 or lo > 180.0:
            plain = False
        west_most, east_most = min(west_most, lo), max(east_most, lo)
    if m == 0:
        return out
    # columns of longitude (monotone in longitude: a window's columns hold all its points)
    columns = max(1, min(64, m // 32))
    width = (east_most - west_most) / columns
    if not width > 0.0 or not math.isfinite(width):
        columns, width = 1, 1.0
    column = np.empty(m, dtype=np.int64)
    starts = np.zeros(columns + 1, dtype=np.int64)
    for i in range(m):
        c = min(max(int((lon_deg[keep[i]] - west_most) / width), 0), columns - 1)
        column[i] = c
        starts[c + 1] += 1
    for c in range(columns):
        starts[c + 1] += starts[c]
    order = np.empty(m, dtype=np.int64)
    filled = starts[:-1].copy()
    for i in range(m):
        order[filled[column[i]]] = keep[i]
        filled[column[i]] += 1
    for c in range(columns):
        a, b = starts[c], starts[c + 1]
        part = order[a:b]
        order[a:b] = part[np.argsort(lat_deg[part])]
    by_lat = lat_deg[order]
    lon_by = lon_deg[order]
    for s in range(k):
        lo, hi = centre_lat[s] - reach[s], centre_lat[s] + reach[s]
        west, east_edge = -np.inf, np.inf
        first, last = 0, columns - 1
        if plain and cos_lat[s] > 1e-6:
            wide = max(axes[s, 0], axes[s, 1]) * (1.0 + 1e-6) / (_DEG * _R_MEAN * cos_lat[s]) \
                + 1e-9
            if centre_lon[s] - wide > -180.0 and centre_lon[s] + wide < 180.0:
                west, east_edge = centre_lon[s] - wide, centre_lon[s] + wide
                if east_edge < west_most or west > east_most:
                    continue
                first = min(max(int((west - west_most) / width), 0), columns - 1)
                last = min(max(int((east_edge - west_most) / width), 0), columns - 1)
        for c in range(first, last + 1):
            a, b = starts[c], starts[c + 1]
            for j in range(a + np.searchsorted(by_lat[a:b], lo, side="left"),
                           a + np.searchsorted(by_lat[a:b], hi, side="right")):
                if lon_by[j] < west or lon_by[j] > east_edge:
                    continue
                p = order[j]
                la = lat_deg[p]
                north = (la - centre_lat[s]) * _DEG * _R_MEAN
                dlon = (lon_deg[p] - centre_lon[s] + 180.0) % 360.0 - 180.0
                east = dlon * _DEG * _R_MEAN * cos_lat[s]
                q0 = (east * v[s, 0, 0] + north * v[s, 1, 0]) / axes[s, 0]
                q1 = (east * v[s, 0, 1] + north * v[s, 1, 1]) / axes[s, 1]
                out[p, s] = q0 * q0 + q1 * q1 <= 1.0
    return out


@njit(cache=True, nogil=True)
def ring_crossings_odd(px: Array, py: Array, xa: Array, ya: Array, yb: Array, dx: Array,
                       dy: Array, y0: float, band_h: float, order: IntArray,
                       starts: IntArray) -> NDArray[np.bool_]:
    """:meth:`geography.Region.contains` for one ring: whether a ray east from each point
    crosses the ring's edges an odd number of times, each point tested against the edges of
    its latitude band only, by the same arithmetic."""
    n, last = px.shape[0], starts.shape[0] - 2
    out = np.zeros(n, dtype=np.bool_)
    for p in range(n):
        qx, qy = px[p], py[p]
        b = min(max(int((qy - y0) / band_h), 0), last)
        odd = False
        for i in range(starts[b], starts[b + 1]):
            e = order[i]
            if (ya[e] > qy) != (yb[e] > qy) and qx < xa[e] + (qy - ya[e]) * dx[e] / dy[e]:
                odd = not odd
        out[p] = odd
    return out


# --- the flight model: trajectory.py's batch integrator --------------------------------------

_J_FLIGHT = 1.5 * earth.J2 * earth.A * earth.A     # as trajectory._derivative folds it
_OMEGA2 = earth.OMEGA * earth.OMEGA
_LIFT_FULL_DIVE = trajectory._LIFT_FULL_DIVE
_DIVE_BAND = trajectory._DIVE_BAND
_MAX_COAST_STEP = trajectory._MAX_COAST_STEP
_MIN_STEP = trajectory._MIN_STEP


@njit(cache=True, inline="always")
def _flight_derivative(t: float, phase: float, s: Array, c: int, start: Array, burn: Array,
                       a0: Array, frac: Array, cutoff: Array, scale: Array, vertical: Array,
                       pitch_bo: Array, normal: Array, beta: Array, lift: Array, dive: Array,
                       safe_burn: Array, span: Array, sharp: Array, out: Array) -> None:
    """trajectory._derivative of column ``c``'s state s (6,) into out (6,)."""
    x, y, z, vx, vy, vz = s[0], s[1], s[2], s[3], s[4], s[5]
    r2 = x * x + y * y + z * z
    r = math.sqrt(r2)
    k = _NEG_GM / (r2 * r)
    zr2 = z * z / r2
    j = _J_FLIGHT / r2
    kxy = k * (1.0 + j * (1.0 - 5.0 * zr2))
    ax = kxy * x + _OMEGA2 * x + _2W * vy
    ay = kxy * y + _OMEGA2 * y - _2W * vx
    az = k * z * (1.0 + j * (3.0 - 5.0 * zr2))
    ux, uy, uz = x / r, y / r, z / r
    if phase < cutoff[c]:
        thrust = 0.0
        for st in range(start.shape[0]):
            tau = phase - start[st, c]
            f = min(max((t - start[st, c]) / safe_burn[st, c], 0.0), 1.0)
            term = a0[st, c] / (1.0 - frac[st, c] * f) if 0.0 <= tau < burn[st, c] else 0.0
            thrust = term if st == 0 else thrust + term
        thrust = thrust * scale[c]
        q = min(max((t - vertical[c]) / span[c], 0.0), 1.0)
        pitch = pitch_bo[c] + (0.5 * np.pi - pitch_bo[c]) * (1.0 - q) ** sharp[c]
        nx, ny, nz = normal[0, c], normal[1, c], normal[2, c]
        dx, dy, dz = ny * uz - nz * uy, nz * ux - nx * uz, nx * uy - ny * ux
        dn = math.sqrt(dx * dx + dy * dy + dz * dz)
        sp, cp = math.sin(pitch) * thrust, math.cos(pitch) * thrust / dn
        ax = ax + sp * ux + cp * dx
        ay = ay + sp * uy + cp * dy
        az = az + sp * uz + cp * dz
    else:
        h = r - _B / math.sqrt(1.0 - _E2 * (x * x + y * y) / r2)
        speed = math.sqrt(vx * vx + vy * vy + vz * vz)
        rho = _RHO0 * math.exp(-max(h, -1_000.0) / _SCALE_HEIGHT)
        drag = 0.5 * rho * speed / beta[c]
        ax = ax - drag * vx
        ay = ay - drag * vy
        az = az - drag * vz
        if lift[c] > 0.0:
            vs = max(speed, 1e-9)
            sin_gamma = (ux * vx + uy * vy + uz * vz) / vs
            gate = (min(max(-sin_gamma / _LIFT_FULL_DIVE, 0.0), 1.0)
                    * min(max((h - dive[c]) / _DIVE_BAND, 0.0), 1.0))
            lx = ux - sin_gamma * vx / vs
            ly = uy - sin_gamma * vy / vs
            lz = uz - sin_gamma * vz / vs
            ln = max(math.sqrt(lx * lx + ly * ly + lz * lz), 1e-12)
            up = lift[c] * drag * speed * gate / ln
            ax = ax + up * lx
            ay = ay + up * ly
            az = az + up * lz
    out[0], out[1], out[2], out[3], out[4], out[5] = vx, vy, vz, ax, ay, az


@njit(cache=True, inline="always")
def _radial_height(s: Array) -> float:
    r2 = s[0] * s[0] + s[1] * s[1] + s[2] * s[2]
    h: float = math.sqrt(r2) - _B / math.sqrt(1.0 - _E2 * (s[0] * s[0] + s[1] * s[1]) / r2)
    return h


@njit(cache=True, nogil=True)
def fly(start: Array, burn: Array, a0: Array, frac: Array, cutoff: Array, scale: Array,
        vertical: Array, pitch_bo: Array, normal: Array, beta: Array, lift: Array,
        dive: Array, safe_burn: Array, span: Array, sharp: Array, r0: Array,
        max_time: Array, events: Array, boost_step: Array, keep: bool,
        count: IntArray, times: Array, states: Array, impact: IntArray) -> None:
    """trajectory._integrate, one flight (column) after the other: RK4 with the step chosen
    by phase and height, stopped at the ground. With ``keep`` false, counts each column's
    steps into ``count``; with ``keep``, stores its samples in times (S + 1, N) and states
    (S + 1, 6, N), the last one repeated after it stops, and its impact step."""
    n = r0.shape[1]
    s = np.empty(6)
    k1, k2, k3, k4, w = np.empty(6), np.empty(6), np.empty(6), np.empty(6), np.empty(6)
    for c in range(n):
        s[0], s[1], s[2] = r0[0, c], r0[1, c], r0[2, c]
        s[3] = s[4] = s[5] = 0.0
        t = 0.0
        step = 0
        if keep:
            times[0, c] = t
            states[0, :, c] = s
        while True:
            h = _radial_height(s)
            climb = abs(s[0] * s[3] + s[1] * s[4] + s[2] * s[5]) / math.sqrt(
                s[0] * s[0] + s[1] * s[1] + s[2] * s[2])
            coast = min(h / 8_000.0, 1_500.0 / (climb + 1.0) if h < 120e3 else np.inf)
            dt = (boost_step[c] if t < cutoff[c]
                  else min(max(coast, _MIN_STEP), _MAX_COAST_STEP))
            ahead = np.inf
            for e in range(events.shape[0]):
                if events[e, c] > t + 1e-9 and events[e, c] < ahead:
                    ahead = events[e, c]
            dt = min(dt, ahead - t)
            phase = t + 0.5 * dt
            half = 0.5 * dt
            _flight_derivative(t, phase, s, c, start, burn, a0, frac, cutoff, scale, vertical,
                               pitch_bo, normal, beta, lift, dive, safe_burn, span, sharp, k1)
            for i in range(6):
                w[i] = s[i] + half * k1[i]
            _flight_derivative(t + half, phase, w, c, start, burn, a0, frac, cutoff, scale,
                               vertical, pitch_bo, normal, beta, lift, dive, safe_burn, span,
                               sharp, k2)
            for i in range(6):
                w[i] = s[i] + half * k2[i]
            _flight_derivative(t + half, phase, w, c, start, burn, a0, frac, cutoff, scale,
                               vertical, pitch_bo, normal, beta, lift, dive, safe_burn, span,
                               sharp, k3)
            for i in range(6):
                w[i] = s[i] + dt * k3[i]
            _flight_derivative(t + dt, phase, w, c, start, burn, a0, frac, cutoff, scale,
                               vertical, pitch_bo, normal, beta, lift, dive, safe_burn, span,
                               sharp, k4)
            sixth = dt / 6.0
            finite = True
            for i in range(6):
                s[i] = s[i] + sixth * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
                finite = finite and math.isfinite(s[i])
            t = t + dt
            step += 1
            if keep:
                times[step, c] = t
                states[step, :, c] = s
            hit = _radial_height(s) < 0.0 and t > 1.0
            if hit:
                impact[c] = step
            if hit or t > max_time[c] or not finite:
                break
        count[c] = step
        if keep:
            for later in range(step + 1, times.shape[0]):
                times[later, c] = t
                states[later, :, c] = s
