"""Global nearest-neighbour association of one sensor scan to all tracks.

Each track-detection pair gets the negative log-likelihood of the innovation (Mahalanobis
distance plus log-determinant, so a vague track does not win every detection); pairs outside
the chi-square gate are forbidden; the optimal assignment (Hungarian, via
``scipy.optimize.linear_sum_assignment``) picks at most one detection per track and one track
per detection, which keeps a dense salvo of up to 50 missiles apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.special import chdtri

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.types import MEASUREMENT_DIM, Array, IntArray, Kind
from gsomia.core.tracking.updater import innovation, measure

_FORBIDDEN = 1e12


@lru_cache(maxsize=64)
def gate_threshold(probability: float, dof: int) -> float:
    """Squared Mahalanobis distance that holds ``probability`` of true detections."""
    return float(chdtri(dof, 1.0 - probability))  # the chi-square quantile


def mahalanobis(x: Array, P: Array, z: Array, R: Array, site: Array, basis: Array,
                kind: Kind) -> tuple[Array, Array]:
    """Squared distances (N, M) and log-determinants (N, M) of every track-detection pair.

    ``z`` (M, m) and ``R`` (M, m, m) are the detections of one sensor. When they share one
    noise covariance (the usual scan) a single m x m inverse per track serves all M.

    One sensor (``site`` (3,)) runs compiled (:mod:`kernels`); per-track sites in NumPy.
    """
    if site.ndim == 1 and basis.ndim == 2 and kind in MEASUREMENT_DIM:
        from gsomia.core.tracking import kernels  # numba: only in processes that track

        m = MEASUREMENT_DIM[kind]
        return kernels.mahalanobis(
            kernels.rows(x, x.shape), kernels.rows(P, P.shape), kernels.rows(z, z.shape),
            kernels.rows(R, (z.shape[0], m, m)), kernels.rows(site, (3,)),
            kernels.rows(basis, (3, 3)), kind == "rae")
    z_pred, H = measure(x, site, basis, kind)
    S0 = np.matmul(np.matmul(H, P), H.transpose(0, 2, 1))
    nu = innovation(z[None, :, :], z_pred[:, None, :], kind)
    if np.all(R[0] == R):
        S = S0 + R[0]
        Sinv = np.linalg.inv(S)
        d2 = np.einsum("nmi,nij,nmj->nm", nu, Sinv, nu)
        logdet = np.broadcast_to(np.linalg.slogdet(S)[1][:, None], d2.shape)
    else:
        S_all = S0[:, None] + R[None]
        Sinv_all = np.linalg.inv(S_all)
        d2 = np.einsum("nmi,nmij,nmj->nm", nu, Sinv_all, nu)
        logdet = np.linalg.slogdet(S_all)[1]
    return d2, np.asarray(logdet)


@dataclass(frozen=True, slots=True)
class GNNAssociator:
    """Gated optimal assignment; ``gate_probability`` sets the chi-square gate."""

    gate_probability: float = 0.9999

    def __post_init__(self) -> None:
        if not 0.0 < self.gate_probability < 1.0:
            raise MalformedInput("gate probability must be in (0, 1)", where="GNNAssociator")

    def associate(self, x: Array, P: Array, z: Array, R: Array, site: Array, basis: Array,
                  kind: Kind) -> tuple[IntArray, IntArray]:
        """Pairs (track rows, detection indices) of one scan; unpaired means unassociated."""
        none = np.zeros(0, dtype=np.int64)
        if x.shape[0] == 0 or z.shape[0] == 0:
            return none, none
        d2, logdet = mahalanobis(x, P, z, R, site, basis, kind)
        inside: NDArray[np.bool_] = d2 <= gate_threshold(self.gate_probability,
                                                         MEASUREMENT_DIM[kind])
        if not inside.any():
            return none, none
        if inside.shape == (1, 1):
            # One track, one detection inside the gate: the assignment is that pair (the
            # usual scan of one missile), without the solver's setup.
            return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
        cost = np.where(inside, d2 + logdet, _FORBIDDEN)
        # imported here: scipy.optimize takes half a second to import, and the CLI starts often
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        keep = inside[rows, cols]
        return rows[keep].astype(np.int64), cols[keep].astype(np.int64)
