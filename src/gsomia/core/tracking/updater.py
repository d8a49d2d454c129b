"""Extended Kalman update of N tracks with radar (range, azimuth, elevation) or line-of-sight
(azimuth, elevation) measurements, vectorised over tracks.

The covariance update uses the Joseph form and is then symmetrised, so a covariance stays
positive semi-definite even when the gain is far from optimal (large initial priors, angle-only
updates); Stone Soup's plain ``(I - KH)P`` form loses that on long ballistic tracks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.types import MEASUREMENT_DIM, Array, Kind

TWO_PI = 2.0 * np.pi


def wrap(angle: Array) -> Array:
    """Angles folded into [-pi, pi)."""
    out: Array = np.mod(angle + np.pi, TWO_PI) - np.pi
    return out


def azimuth_index(kind: Kind) -> int:
    """Where azimuth sits in a measurement vector of this kind."""
    return 1 if kind == "rae" else 0


def measure(x: Array, site: Array, basis: Array, kind: Kind) -> tuple[Array, Array]:
    """Predicted measurements (N, m) and their Jacobians (N, m, 6) of states x (N, 6).

    ``site`` is the sensor ECEF position (3,) or (N, 3); ``basis`` its ENU rows (3, 3) or
    (N, 3, 3).
    """
    if kind not in MEASUREMENT_DIM:
        raise MalformedInput(f"unknown measurement kind {kind!r}", where="kind",
                             expected="'rae' or 'los'")
    d = x[:, :3] - site
    enu = np.einsum("...ij,...j->...i", basis, d)
    e, n, u = enu[:, 0], enu[:, 1], enu[:, 2]
    rh2 = e * e + n * n
    rh = np.sqrt(rh2)
    r2 = rh2 + u * u
    rng = np.sqrt(r2)
    az = np.mod(np.arctan2(e, n), TWO_PI)
    el = np.arctan2(u, rh)
    k = x.shape[0]
    m = MEASUREMENT_DIM[kind]
    j = np.zeros((k, m, 3))
    row = 0
    if kind == "rae":
        j[:, 0, :] = enu / rng[:, None]
        row = 1
    j[:, row, 0] = n / rh2
    j[:, row, 1] = -e / rh2
    j[:, row + 1, 0] = -e * u / (r2 * rh)
    j[:, row + 1, 1] = -n * u / (r2 * rh)
    j[:, row + 1, 2] = rh / r2
    H = np.zeros((k, m, 6))
    H[:, :, :3] = np.matmul(j, basis)
    z = np.stack([rng, az, el], axis=-1) if kind == "rae" else np.stack([az, el], axis=-1)
    return z, H


def innovation(z: Array, z_pred: Array, kind: Kind) -> Array:
    """Measurement minus prediction with the azimuth difference wrapped."""
    nu = z - z_pred
    a = azimuth_index(kind)
    nu[..., a] = wrap(nu[..., a])
    return nu


@dataclass(frozen=True, slots=True)
class ExtendedKalmanUpdater:
    """Joseph-form EKF update; one call updates every track that took a measurement."""

    def update(self, x: Array, P: Array, z: Array, R: Array, site: Array, basis: Array,
               kind: Kind) -> tuple[Array, Array]:
        """States (N, 6), covariances (N, 6, 6) after measurements z (N, m) with noise R
        (N, m, m) or (m, m) from sensors at ``site`` with ENU ``basis`` (see :func:`measure`).
        """
        x_new, P_new, _ = self.update_nis(x, P, z, R, site, basis, kind)
        return x_new, P_new

    def update_nis(self, x: Array, P: Array, z: Array, R: Array, site: Array, basis: Array,
                   kind: Kind) -> tuple[Array, Array, Array]:
        """:meth:`update`, plus each innovation's normalised square (N,), the statistic the
        tracker watches to tell thrust from free flight.

        One sensor (``site`` (3,)) runs compiled (:mod:`kernels`); per-track sites in NumPy.
        """
        if site.ndim == 1 and basis.ndim == 2 and kind in MEASUREMENT_DIM:
            from gsomia.core.tracking import kernels  # numba: only in processes that track

            m = MEASUREMENT_DIM[kind]
            return kernels.update_nis(
                kernels.rows(x, x.shape), kernels.rows(P, P.shape), kernels.rows(z, z.shape),
                kernels.rows(R, (x.shape[0], m, m)), kernels.rows(site, (3,)),
                kernels.rows(basis, (3, 3)), kind == "rae")
        z_pred, H = measure(x, site, basis, kind)
        nu = innovation(z, z_pred, kind)
        HP = np.matmul(H, P)
        S = np.matmul(HP, H.transpose(0, 2, 1)) + R
        # K = P H^T S^-1, obtained as the solution of S K^T = H P (S and P symmetric).
        K = np.linalg.solve(S, HP).transpose(0, 2, 1)
        nis = np.einsum("ni,ni->n", nu, np.linalg.solve(S, nu[..., None])[..., 0])
        x_new = x + np.einsum("nij,nj->ni", K, nu)
        A = np.eye(6) - np.matmul(K, H)
        KR = np.matmul(K, R)
        P_new = np.matmul(np.matmul(A, P), A.transpose(0, 2, 1)) + np.matmul(
            KR, K.transpose(0, 2, 1))
        P_new = 0.5 * (P_new + P_new.transpose(0, 2, 1))
        return x_new, P_new, nis
