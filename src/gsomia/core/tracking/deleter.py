"""Drop tracks that stopped being fed, and say whether the missile landed or the track was lost.

A confirmed track last seen close to its predicted impact coasts until that impact (radars
lose a descending missile under their horizon well before it lands) and ends as ``impacted``:
its warnings stand. A track that falls silent earlier, or whose extrapolated position
uncertainty explodes, ends as lost, and warnings built on it are retracted (as J-Alert's
Hokkaido warning was on 2023-04-13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gsomia.core.tracking.types import LostReason, TrackLost, TrackSet


@dataclass(frozen=True, slots=True)
class UpdateTimeDeleter:
    """Deletes by time since the last update and by extrapolated position uncertainty."""

    confirmed_timeout_s: float = 60.0
    tentative_timeout_s: float = 20.0
    coast_to_impact_s: float = 300.0
    max_position_sigma_m: float = 100_000.0

    def check_for_deletion(self, tracks: TrackSet, now: float,
                           confirm_after: int) -> tuple[NDArray[np.bool_], list[TrackLost]]:
        """Which tracks to delete at ``now`` (mask over rows) and the events saying why."""
        if len(tracks) == 0:
            return np.zeros(0, dtype=bool), []
        confirmed = tracks.confirmed(confirm_after)
        silent = now - tracks.last_update
        timeout = np.where(confirmed, self.confirmed_timeout_s, self.tentative_timeout_s)
        impact = tracks.impact_time
        known = np.isfinite(impact)
        near_impact = confirmed & known & (impact - tracks.last_update <= self.coast_to_impact_s)
        impacted = known & (impact <= now)
        timed_out = np.where(near_impact, impacted, silent > timeout)
        # Uncertainty grows by the velocity spread times the coasting time.
        dt = np.maximum(now - tracks.time, 0.0)
        var_p = np.trace(tracks.P[:, :3, :3], axis1=1, axis2=2) / 3.0
        var_v = np.trace(tracks.P[:, 3:, 3:], axis1=1, axis2=2) / 3.0
        exploded = confirmed & (var_p + var_v * dt * dt > self.max_position_sigma_m**2)
        delete = timed_out | exploded
        events: list[TrackLost] = []
        for i in np.flatnonzero(delete):
            reason: LostReason
            if exploded[i] and not impacted[i]:
                reason = "covariance"
            elif impacted[i]:
                reason = "impacted"
            else:
                reason = "not-updated"
            events.append(TrackLost(int(tracks.ids[i]), float(now), reason, bool(confirmed[i])))
        return delete, events
