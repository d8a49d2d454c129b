"""Track-to-track fusion by covariance intersection, for partners that share tracks.

When JPN and KOR exchange tracks rather than measurements, the two estimates share
unknown common information (the same prior, the same process noise, perhaps the same US
data), so the Kalman combination ``(Pa^-1 + Pb^-1)^-1`` would be overconfident. Covariance
intersection,

    P^-1 = w Pa^-1 + (1 - w) Pb^-1,    x = P (w Pa^-1 xa + (1 - w) Pb^-1 xb),

is consistent for every cross-correlation. ``w`` minimises the trace or the determinant of
P; both objectives are convex in ``w``, so a golden-section search, run for all pairs at once,
finds the optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.associator import gate_threshold
from gsomia.core.tracking.predictor import BallisticPredictor
from gsomia.core.tracking.types import Array, TrackSet

Criterion = Literal["trace", "det"]
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _objective(w: Array, ia: Array, ib: Array, criterion: Criterion) -> Array:
    info = w[:, None, None] * ia + (1.0 - w)[:, None, None] * ib
    if criterion == "trace":
        out: Array = np.trace(np.linalg.inv(info), axis1=1, axis2=2)
        return out
    return np.asarray(-np.linalg.slogdet(info)[1], dtype=np.float64)


def covariance_intersection(xa: Array, Pa: Array, xb: Array, Pb: Array, *,
                            criterion: Criterion = "trace",
                            iterations: int = 40) -> tuple[Array, Array, Array]:
    """Fuse pairs of estimates (N, n) with covariances (N, n, n); returns x, P and w (N,)."""
    if criterion not in ("trace", "det"):
        raise MalformedInput(f"unknown criterion {criterion!r}", where="criterion",
                             expected="'trace' or 'det'")
    ia: Array = np.asarray(np.linalg.inv(Pa), dtype=np.float64)
    ib: Array = np.asarray(np.linalg.inv(Pb), dtype=np.float64)
    n = xa.shape[0]
    lo, hi = np.zeros(n), np.ones(n)
    c = hi - _GOLDEN * (hi - lo)
    d = lo + _GOLDEN * (hi - lo)
    fc, fd = _objective(c, ia, ib, criterion), _objective(d, ia, ib, criterion)
    for _ in range(iterations):
        left = fc < fd
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        c_new = hi - _GOLDEN * (hi - lo)
        d_new = lo + _GOLDEN * (hi - lo)
        c_old, d_old, fc_old, fd_old = c, d, fc, fd
        # The surviving interior point is reused; only the other is evaluated.
        c = np.where(left, c_new, d_old)
        d = np.where(left, c_old, d_new)
        f_new = _objective(np.where(left, c_new, d_new), ia, ib, criterion)
        fc = np.where(left, f_new, fd_old)
        fd = np.where(left, fc_old, f_new)
    w = 0.5 * (lo + hi)
    # The ends are candidates too: one estimate may simply dominate.
    cands = np.stack([np.zeros(n), w, np.ones(n)], axis=1)
    scores = np.stack([_objective(cands[:, j], ia, ib, criterion) for j in range(3)], axis=1)
    w = cands[np.arange(n), np.argmin(scores, axis=1)]
    info = w[:, None, None] * ia + (1.0 - w)[:, None, None] * ib
    P = np.linalg.inv(info)
    P = 0.5 * (P + P.transpose(0, 2, 1))
    y = w[:, None] * np.einsum("nij,nj->ni", ia, xa) + (1.0 - w)[:, None] * np.einsum(
        "nij,nj->ni", ib, xb)
    x = np.einsum("nij,nj->ni", P, y)
    return x, P, w


@dataclass(frozen=True, slots=True)
class TrackFuser:
    """Fuses a partner's track set into ours: predict both to ``now``, pair tracks by a gated
    optimal assignment on the state difference, intersect paired covariances, and keep
    unpaired tracks from both sides (the partner's under fresh ids of ours)."""

    predictor: BallisticPredictor = field(default_factory=BallisticPredictor)
    q_manoeuvre: float = 3000.0
    gate_probability: float = 0.9999
    criterion: Criterion = "trace"

    def fuse(self, ours: TrackSet, theirs: TrackSet, now: float) -> TrackSet:
        a = self._at(ours, now)
        b = self._at(theirs, now)
        if len(a) == 0 or len(b) == 0:
            return _append(a, b)
        d = a.x[:, None, :] - b.x[None, :, :]
        S = a.P[:, None] + b.P[None, :]
        d2 = np.einsum("abi,abi->ab", d, np.linalg.solve(S, d[..., None])[..., 0])
        inside = d2 <= gate_threshold(self.gate_probability, 6)
        # imported here: scipy.optimize takes half a second to import, and the CLI starts often
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(np.where(inside, d2, 1e12))
        keep = inside[rows, cols]
        rows, cols = rows[keep], cols[keep]
        if rows.size:
            x, P, _ = covariance_intersection(a.x[rows], a.P[rows], b.x[cols], b.P[cols],
                                              criterion=self.criterion)
            a = a.with_states(rows, a.time[rows], x, P)
            first, last, n = a.first_time.copy(), a.last_update.copy(), a.updates.copy()
            calm = a.calm.copy()
            first[rows] = np.minimum(first[rows], b.first_time[cols])
            last[rows] = np.maximum(last[rows], b.last_update[cols])
            n[rows] = np.maximum(n[rows], b.updates[cols])
            calm[rows] = np.maximum(calm[rows], b.calm[cols])
            a = replace(a, first_time=first, last_update=last, updates=n, calm=calm)
        rest = np.ones(len(b), dtype=bool)
        rest[cols] = False
        return _append(a, b.select(rest))

    def _at(self, tracks: TrackSet, now: float) -> TrackSet:
        if len(tracks) == 0:
            return tracks
        n = len(tracks)
        both_x = np.concatenate([tracks.x, tracks.xm])
        both_P = np.concatenate([tracks.P, tracks.Pm])
        dt = np.tile(now - tracks.time, 2)
        extra = np.concatenate([np.zeros(n), np.full(n, self.q_manoeuvre)])
        x, P = self.predictor.predict(both_x, both_P, dt, extra)
        return tracks.with_states(np.arange(n), np.full(n, now), x[:n], P[:n], x[n:], P[n:])


def _append(a: TrackSet, b: TrackSet) -> TrackSet:
    if len(b) == 0:
        return a
    return a.extended(b.time, b.x, b.P, first_time=b.first_time, last_update=b.last_update,
                      updates=b.updates, calm=b.calm)
