"""Start tracks from detections no track claimed.

A radar detection fixes a position; its velocity is unknown, so the new track carries a wide
zero-mean velocity prior (``velocity_sigma_m_s`` per axis, wider than any missile's speed).
The next detection then effectively makes a two-point start, and the prior's pull on the
estimate is below a percent of the velocity uncertainty. Line-of-sight detections carry no
range and start nothing: they only update tracks a radar started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.types import Array, Detection


def rae_to_ecef(z: Array, R: Array, site: Array, basis: Array) -> tuple[Array, Array]:
    """Positions (K, 3) and their covariances (K, 3, 3) from radar measurements (K, 3).

    ``site`` (K, 3) and ``basis`` (K, 3, 3) describe each measurement's sensor.
    """
    rng, az, el = z[:, 0], z[:, 1], z[:, 2]
    ce, se, ca, sa = np.cos(el), np.sin(el), np.cos(az), np.sin(az)
    enu = np.stack([rng * ce * sa, rng * ce * ca, rng * se], axis=-1)
    j = np.empty((z.shape[0], 3, 3))
    j[:, :, 0] = np.stack([ce * sa, ce * ca, se], axis=-1)
    j[:, :, 1] = np.stack([rng * ce * ca, -rng * ce * sa, np.zeros_like(rng)], axis=-1)
    j[:, :, 2] = np.stack([-rng * se * sa, -rng * se * ca, rng * ce], axis=-1)
    to_ecef = basis.transpose(0, 2, 1)
    pos = site + np.einsum("kij,kj->ki", to_ecef, enu)
    jj = np.matmul(to_ecef, j)
    cov = np.matmul(np.matmul(jj, R), jj.transpose(0, 2, 1))
    return pos, cov


@dataclass(frozen=True, slots=True)
class SinglePointInitiator:
    """One radar detection per new track, with a wide velocity prior."""

    velocity_sigma_m_s: float = 3000.0

    def __post_init__(self) -> None:
        if not self.velocity_sigma_m_s > 0.0:
            raise MalformedInput("velocity prior must be positive", where="SinglePointInitiator")

    def initiate(self, detections: Sequence[Detection]) -> tuple[Array, Array, Array]:
        """Times (K,), states (K, 6), covariances (K, 6, 6) of tracks from the radar detections.

        Line-of-sight detections are skipped, so K may be less than ``len(detections)``.
        """
        radar = [d for d in detections if d.kind == "rae"]
        k = len(radar)
        if k == 0:
            return np.zeros(0), np.zeros((0, 6)), np.zeros((0, 6, 6))
        z = np.stack([d.z for d in radar])
        R = np.stack([d.R for d in radar])
        site = np.stack([d.sensor.ecef for d in radar])
        basis = np.stack([d.sensor.basis for d in radar])
        pos, cov = rae_to_ecef(z, R, site, basis)
        x = np.zeros((k, 6))
        x[:, :3] = pos
        P = np.zeros((k, 6, 6))
        P[:, :3, :3] = cov
        P[:, 3:, 3:] = np.eye(3) * self.velocity_sigma_m_s**2
        return np.array([d.time for d in radar]), x, P
