"""The tracker: declared parts plus one pure step.

``step(tracks, detections, now) -> (tracks, events)`` takes the track set and every detection
that arrived since the last step, processes them scan by scan (one sensor at one instant),
and returns the new track set and what happened:

1. predict every track not already past the scan's time to that time (one vectorised call);
2. gate and assign the scan's detections to tracks (:class:`GNNAssociator`);
3. update the assigned tracks (one vectorised EKF call);
4. start tracks from the radar detections no track took;
then, once per step: confirm tracks with ``confirm_after`` updates (``track-initiated``),
report the confirmed tracks that were updated (``track-updated``), predict their impact and
launch points (``impact-predicted``), and delete tracks (``track-lost``).

Nothing here reads a clock or draws random numbers; ``now`` is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby

import numpy as np
from numpy.typing import NDArray

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import earth
from gsomia.core.tracking.associator import GNNAssociator, gate_threshold
from gsomia.core.tracking.deleter import UpdateTimeDeleter
from gsomia.core.tracking.impact import (
    CORRIDOR_CROSSING_STEP_S,
    N_SIGMA,
    Corridor,
    ImpactPredictor,
    corridor_rows,
    corridors,
)
from gsomia.core.tracking.initiator import SinglePointInitiator
from gsomia.core.tracking.predictor import BallisticPredictor
from gsomia.core.tracking.types import (
    BoostCorridor,
    Detection,
    Event,
    ImpactPredicted,
    IntArray,
    TrackInitiated,
    TrackSet,
    TrackUpdated,
)


@dataclass(frozen=True, slots=True)
class Tracker:
    """A ballistic-missile tracker assembled from its roles.

    ``confirm_after``: updates before a track is reported. ``ipp_interval_s``: least time
    between two impact predictions of one track (0: at every update).

    Thrust is not in the ballistic model, so every track also runs a manoeuvre filter with
    ``q_manoeuvre`` extra process noise (white acceleration, m^2/s^3), which holds a missile
    under boost and does the gating. The ballistic filter is restarted from it when it is
    surprised:

    - two detections in a row beyond the ``surprise_probability`` quantile of the normalised
      innovation square (one alone is an outlier; the lag that thrust causes persists), or
    - its updates keep adding energy: free flight conserves the Jacobi integral, so the change
      each update makes to it, divided by its standard deviation, is zero-mean in free flight
      and positive under thrust, well before thrust shows in single innovations. A one-sided
      CUSUM of those changes (slack ``energy_drift``) past ``energy_alarm`` is a surprise.

    A track counts as ballistic, and gets impact predictions, after ``calm_after`` unsurprising
    updates, with a velocity known to ``ballistic_velocity_sigma_m_s`` (1 sigma, worst axis; a
    vaguer filter absorbs thrust without surprise) and a CUSUM under ``energy_calm``. Before
    burnout the impact point is not determined yet, so none is predicted.

    With each impact prediction comes the track's corridor (:func:`impact.corridors`) at
    ``corridor_probability``, widened by ``corridor_buffer_m``; None draws none. While a
    confirmed track still burns, its manoeuvre filter's state gives a :class:`BoostCorridor`
    (at most every ``ipp_interval_s``, once that filter knows the velocity to
    ``boost_velocity_sigma_m_s``; ``boost_probability`` None draws none): where the missile
    would fly if the engine stopped now, the least it will fly.

    A multi-stage missile sheds its spent stages, which radars see falling beside it. A
    burning track keeps the object that flies on (:meth:`_staging`, ``behind_sigma``); the
    stage gets a track of its own whose ``parent`` is the missile's, and whose predictions
    say so (``ImpactPredicted.shed_from``); a part and its parent exchange filters when the
    part proves the faster (:meth:`_missile_leads`), and a free-flying track behind a burning
    one on its line is its part though no split was seen (:meth:`_link_parts`,
    ``part_reach_m``, ``part_across_m``). While a part is within ``part_near_m`` of its
    parent, the parent predicts no impact (:meth:`_staging_now`). ``behind_sigma`` None turns
    all of it off.
    """

    predictor: BallisticPredictor = field(default_factory=BallisticPredictor)
    associator: GNNAssociator = field(default_factory=GNNAssociator)
    initiator: SinglePointInitiator = field(default_factory=SinglePointInitiator)
    deleter: UpdateTimeDeleter = field(default_factory=UpdateTimeDeleter)
    impact: ImpactPredictor = field(default_factory=ImpactPredictor)
    confirm_after: int = 3
    ipp_interval_s: float = 0.0
    predict_impacts: bool = True
    q_manoeuvre: float = 3000.0
    surprise_probability: float = 0.999
    calm_after: int = 15
    ballistic_velocity_sigma_m_s: float = 30.0
    energy_drift: float = 0.5
    energy_alarm: float = 8.0
    energy_calm: float = 2.0
    corridor_probability: float | None = 0.99
    corridor_buffer_m: float = 20_000.0
    boost_probability: float | None = 0.99
    boost_velocity_sigma_m_s: float = 150.0
    behind_sigma: float | None = 4.0
    part_reach_m: float = 400_000.0
    part_across_m: float = 30_000.0
    part_speed_gap_m_s: float = 500.0
    part_near_m: float = 50_000.0

    def ballistic(self, tracks: TrackSet) -> NDArray[np.bool_]:
        """Which tracks are in free flight (see the class notes)."""
        out: NDArray[np.bool_] = (tracks.ballistic(self.calm_after)
                                  & (tracks.cusum <= self.energy_calm))
        # the eigenvalues, row by row, only where the cheap tests leave the answer open
        rows = np.flatnonzero(out)
        if rows.size:
            worst = np.linalg.eigvalsh(tracks.P[rows, 3:, 3:])[:, -1]
            out[rows] = worst <= self.ballistic_velocity_sigma_m_s**2
        return out

    def scan(self, tracks: TrackSet, scan: Sequence[Detection]
             ) -> tuple[TrackSet, dict[int, int]]:
        """Process the detections of one sensor at one instant (same time, sensor and kind).

        Returns the tracks and, for each track this scan updated, the index in ``scan`` of the
        detection it took.
        """
        first = scan[0]
        t = first.time
        kind = first.kind
        rows = np.flatnonzero(tracks.time <= t)
        n = rows.size
        if n:
            # Both filters of every track in one call: ballistic rows, then manoeuvre rows.
            x, P = self.predictor.predict(
                np.concatenate([tracks.x[rows], tracks.xm[rows]]),
                np.concatenate([tracks.P[rows], tracks.Pm[rows]]),
                np.concatenate([t - tracks.time[rows]] * 2),
                np.concatenate([np.zeros(n), np.full(n, self.q_manoeuvre)]))
            tracks = tracks.with_states(rows, np.full(n, t), x[:n], P[:n], x[n:], P[n:])
        z = np.array([d.z for d in scan])
        R = np.array([d.R for d in scan])
        site, basis = first.sensor.ecef, first.sensor.basis
        which, det = self.associator.associate(tracks.xm[rows], tracks.Pm[rows], z, R, site,
                                               basis, kind)
        shed: dict[int, int] = {}
        staged: set[int] = set()
        if which.size and kind == "rae" and self.behind_sigma is not None:
            which, det, shed, staged = self._staging(tracks, rows, which, det, z, R, site,
                                                     basis)
        updated: dict[int, int] = {}
        if which.size:
            chosen = rows[which]
            k = chosen.size
            # Compiled (kernels.update_both): both filters' EKF updates, the surprise test
            # and the energy CUSUM of a few tracks, without NumPy's overhead per call.
            from gsomia.core.tracking import kernels

            m = z.shape[1]
            xb, Pb, xm, Pm, calm, cusum, strikes = kernels.update_both(
                tracks.x[chosen], tracks.P[chosen], tracks.xm[chosen], tracks.Pm[chosen],
                kernels.rows(z[det], (k, m)), kernels.rows(R[det], (k, m, m)),
                kernels.rows(site, (3,)), kernels.rows(basis, (3, 3)), kind == "rae",
                gate_threshold(self.surprise_probability, m), self.energy_drift,
                self.energy_alarm, tracks.strikes[chosen], tracks.cusum[chosen],
                tracks.calm[chosen])
            if staged:
                # A track shedding a stage burns on, in a new stage: its free-flight filter
                # restarts from the manoeuvre filter, as on a surprise (it may have taken the
                # stage's detections before the two came apart).
                hit = np.isin(tracks.ids[chosen], list(staged))
                xb[hit], Pb[hit] = xm[hit], Pm[hit]
                calm[hit], cusum[hit] = 0, 0.0
            tracks = tracks.with_updates(chosen, np.full(k, t), xb, Pb, xm, Pm, calm, cusum,
                                         strikes)
            updated = dict(zip(tracks.ids[chosen].tolist(), det.tolist(), strict=True))
        taken = np.zeros(len(scan), dtype=bool)
        taken[det] = True
        spare = [i for i, used in enumerate(taken) if not used]
        if spare:
            t_new, x_new, P_new = self.initiator.initiate([scan[i] for i in spare])
            if t_new.size:
                parent = np.array([shed.get(i, 0) for i in spare if scan[i].kind == "rae"],
                                  dtype=np.int64)
                tracks = tracks.extended(t_new, x_new, P_new, parent=parent)
        return tracks, updated

    def _staging(self, tracks: TrackSet, rows: IntArray, which: IntArray, det: IntArray,
                 z: NDArray[np.float64], R: NDArray[np.float64], site: NDArray[np.float64],
                 basis: NDArray[np.float64]
                 ) -> tuple[IntArray, IntArray, dict[int, int], set[int]]:
        """At a staging, a burning track keeps the object that flies on.

        Once a stage separates, radars see two objects where the track expected one: the
        missile, still thrusting, and the spent stage, falling behind it. Free flight predicts
        the stage better than the thrusting missile, so nearest-neighbour association would
        hand the missile's track to the stage. So a burning track takes, of the detections
        inside its gate, the one furthest along its velocity; and it never takes one more than
        ``behind_sigma`` standard deviations behind its prediction along its velocity
        (thrust only ever carries the missile ahead of a prediction). What it leaves is its
        spent part: given to the track that part already has, else a new track's start.
        Returns the pairs; for the detections shed, the id of the track that shed them; and
        the tracks that had a part of theirs in their gate.
        """
        from gsomia.core.tracking.associator import gate_threshold, mahalanobis
        from gsomia.core.tracking.initiator import rae_to_ecef

        chosen = rows[which]
        # confirmed, burning tracks that know their heading (a young track's velocity is
        # too vague to tell ahead from behind)
        # Each test is row by row, so the costly ones run only on the rows the cheap ones
        # leave: most scans hold no candidate at all.
        cand = np.flatnonzero((tracks.parent[chosen] == 0)
                              & (tracks.updates[chosen] >= self.confirm_after))
        if cand.size:
            worst = np.linalg.eigvalsh(tracks.Pm[chosen[cand], 3:, 3:])[:, -1]
            cand = cand[worst <= self.boost_velocity_sigma_m_s**2]
        if cand.size:
            cand = cand[~self.ballistic(tracks.select(chosen[cand]))]
        burning = np.zeros(chosen.size, dtype=bool)
        burning[cand] = True
        if not burning.any():
            return which, det, {}, set()
        m = z.shape[0]
        pos, cov = rae_to_ecef(z, R, np.broadcast_to(site, (m, 3)),
                               np.broadcast_to(basis, (m, 3, 3)))
        pairs = dict(zip(det.tolist(), which.tolist(), strict=True))    # detection → row
        shed: dict[int, int] = {}
        staged: set[int] = set()
        gate = gate_threshold(self.associator.gate_probability, 3)
        behind = self.behind_sigma if self.behind_sigma is not None else math.inf

        def d2(r: int) -> NDArray[np.float64]:
            got, _ = mahalanobis(tracks.xm[r:r + 1], tracks.Pm[r:r + 1], z, R, site, basis,
                                 "rae")
            return np.asarray(got[0])

        for k in np.flatnonzero(burning):
            r = int(chosen[k])
            tid = int(tracks.ids[r])
            mine = int(det[k])
            v = tracks.xm[r, 3:] / max(float(np.linalg.norm(tracks.xm[r, 3:])), 1e-9)
            ahead = (pos - tracks.xm[r, :3]) @ v
            spread = np.sqrt(np.einsum("i,mij,j->m", v, tracks.Pm[r, :3, :3] + cov, v))
            lead = mine
            if m > 1:
                inside = np.flatnonzero(d2(r) <= gate)
                # free detections, and those held by a part this track shed
                ok = [int(j) for j in inside if int(j) == mine or int(j) not in pairs
                      or int(tracks.parent[rows[pairs[int(j)]]]) == tid]
                lead = max(ok, key=lambda j: float(ahead[j]))
                for j in ok:
                    if j != lead:
                        shed[j] = tid
                        staged.add(tid)
            if lead != mine:
                if lead in pairs:       # the part's track had the missile: they swap
                    pairs[mine] = pairs[lead]
                else:
                    del pairs[mine]
                pairs[lead] = int(which[k])
            if ahead[lead] < -behind * spread[lead]:
                del pairs[lead]         # the stage fell behind; the missile went unseen
                shed[lead] = tid
                staged.add(tid)
        # a shed detection goes to the part's track when it has one in this scan's reach
        for j, parent_id in list(shed.items()):
            if j in pairs:
                shed.pop(j)
                continue
            taken = set(pairs.values())
            for r in np.flatnonzero(tracks.parent[rows] == parent_id).tolist():
                if r not in taken and d2(int(rows[r]))[j] <= gate:
                    pairs[j] = r
                    shed.pop(j)
                    break
        det_out = np.array(sorted(pairs), dtype=np.int64)
        which_out = np.array([pairs[j] for j in det_out.tolist()], dtype=np.int64)
        return which_out, det_out, shed, staged

    def _link_parts(self, tracks: TrackSet) -> TrackSet:
        """A falling stage first seen apart from its missile is its part.

        A radar that comes to see a flight after a staging starts two tracks at once, and sees
        no split. The stage is the one in free flight behind another on its path: within
        ``part_reach_m`` behind it along its velocity and ``part_across_m`` of its line, and
        slower than it, by ``part_speed_gap_m_s`` at least if the filter takes the other for
        coasting too (an upper stage of weak thrust). Missiles of a salvo on one line are not
        a stage's worth of speed apart, and a later one, still burning, is behind the earlier
        ones, never ahead of them.
        """
        confirmed = tracks.confirmed(self.confirm_after)
        own = confirmed & (tracks.parent == 0)
        if own.sum() < 2:
            return tracks
        free = self.ballistic(tracks)
        worst = np.linalg.eigvalsh(tracks.Pm[:, 3:, 3:])[:, -1]
        parents = np.flatnonzero(own & (worst <= self.boost_velocity_sigma_m_s**2))
        parts = np.flatnonzero(own & free)
        if parents.size == 0 or parts.size == 0:
            return tracks
        link = tracks.parent.copy()
        for b in parts.tolist():
            for a in parents.tolist():
                if a == b:
                    continue
                speed = float(np.linalg.norm(tracks.xm[a, 3:]))
                v = tracks.xm[a, 3:] / max(speed, 1e-9)
                d = tracks.x[b, :3] - tracks.xm[a, :3]
                along = float(d @ v)
                across = float(np.linalg.norm(d - along * v))
                # a burning parent need only be faster; one the filter takes for coasting
                # (a weak upper stage) by a stage's worth of speed
                gap = 0.0 if not free[a] else self.part_speed_gap_m_s
                if (-self.part_reach_m < along < 0.0 and across < self.part_across_m
                        and float(np.linalg.norm(tracks.x[b, 3:])) < speed - gap):
                    link[b] = int(tracks.ids[a])
                    break
        return tracks if np.array_equal(link, tracks.parent) else replace(tracks, parent=link)

    def _missile_leads(self, tracks: TrackSet) -> TrackSet:
        """The track that shed a part stays on the missile.

        Just after a separation the two objects lie within the radars' noise of each other,
        and the detections of either may go to either track. Thrust tells them apart within
        seconds: the missile gains speed along its path, the stage loses it. Where a part's
        track is faster along its parent's path than the parent, by more than
        ``behind_sigma`` standard deviations of the difference, the two tracks exchange their
        filters, so that the parent's id (and the warnings drawn from it) follows the missile;
        the parent's free-flight filter restarts, as at a staging.

        Each track is judged by what it knew when last fed. A track no detection has fed for
        a while (the two tracks traded the objects at the separation, and its object went to
        a third) is predicted with the manoeuvre filter's allowance for thrust it may have
        had unseen, ``q_manoeuvre`` per second of velocity variance: left in, it grows
        without end, and a part that carries the missile, ever faster, would never be found
        faster than that vague parent (Korea's radars alone lost the Chollima-1 so). Taken
        out, the question is the one that tells the objects apart: is the part's object
        faster now than the parent's was at its last fix? A spent stage never is (it only
        loses speed after the separation, while the missile gained it), so a missile that
        went unseen keeps its track.
        """
        order = np.arange(len(tracks))
        row_of = {int(t): i for i, t in enumerate(tracks.ids.tolist())}
        k = self.behind_sigma if self.behind_sigma is not None else 4.0
        swapped = []
        for i in np.flatnonzero(tracks.parent > 0):
            j = row_of.get(int(tracks.parent[i]))
            if j is None or order[j] != j or order[i] != i:
                continue
            v = tracks.xm[j, 3:] / max(float(np.linalg.norm(tracks.xm[j, 3:])), 1e-9)
            gain = float((tracks.xm[i, 3:] - tracks.xm[j, 3:]) @ v)
            unseen_s = float(tracks.time[i] - tracks.last_update[i]
                             + tracks.time[j] - tracks.last_update[j])
            var = float(v @ (tracks.Pm[i, 3:, 3:] + tracks.Pm[j, 3:, 3:]) @ v)
            # white acceleration adds q per second to each velocity axis, whatever the heading
            spread = math.sqrt(max(var - self.q_manoeuvre * unseen_s, 0.0))
            if gain > k * spread:
                order[i], order[j] = j, i
                swapped.append(j)
        if not swapped:
            return tracks
        keep = ("ids", "first_time", "parent", "next_id")
        moved = {f: getattr(tracks, f)[order] for f in tracks.__dataclass_fields__
                 if f not in keep}
        out = replace(tracks, **moved)
        rows = np.array(swapped, dtype=np.int64)
        x, P, calm, cusum = out.x.copy(), out.P.copy(), out.calm.copy(), out.cusum.copy()
        x[rows], P[rows], calm[rows], cusum[rows] = out.xm[rows], out.Pm[rows], 0, 0.0
        return replace(out, x=x, P=P, calm=calm, cusum=cusum)

    def step(self, tracks: TrackSet, detections: Sequence[Detection], now: float
             ) -> tuple[TrackSet, list[Event]]:
        """Process ``detections`` (any order, none after ``now``) and delete stale tracks."""
        late = [d for d in detections if d.time > now]
        if late:
            raise MalformedInput(f"a detection at {late[0].time} is after now={now}",
                                 where="detections", expected="detections up to now")
        before = dict(zip(tracks.ids.tolist(), tracks.updates.tolist(), strict=True))
        ordered = sorted(detections, key=lambda d: (d.time, d.sensor.id, d.kind))
        sensors: dict[int, set[str]] = {}
        for _, group in groupby(ordered, key=lambda d: (d.time, d.sensor.id, d.kind)):
            scan = list(group)
            tracks, updated = self.scan(tracks, scan)
            for tid in updated:
                sensors.setdefault(tid, set()).add(scan[0].sensor.id)
        events: list[Event] = []
        if self.behind_sigma is not None and len(tracks) > 1:
            tracks = self._link_parts(tracks)
        if (tracks.parent > 0).any():
            tracks = self._missile_leads(tracks)
        if sensors:
            tracks, events = self._report(tracks, sensors, before)
        delete, lost = self.deleter.check_for_deletion(tracks, now, self.confirm_after)
        if delete.any():
            tracks = tracks.select(~delete)
        events.extend(lost)
        return tracks, events

    def _report(self, tracks: TrackSet, sensors: dict[int, set[str]],
                before: dict[int, int]) -> tuple[TrackSet, list[Event]]:
        events: list[Event] = []
        ids = np.array(sorted(sensors), dtype=np.int64)
        rows = np.flatnonzero(np.isin(tracks.ids, ids))
        rows = rows[tracks.updates[rows] >= self.confirm_after]
        if rows.size == 0:
            return tracks, events
        lat, lon, h = earth.ecef_to_geodetic(tracks.x[rows, :3])
        for j, i in enumerate(rows):
            tid = int(tracks.ids[i])
            P = tracks.P[i]
            common = (tid, float(tracks.time[i]))
            if before.get(tid, 0) < self.confirm_after:
                events.append(TrackInitiated(*common, float(tracks.first_time[i]),
                                             math.degrees(lat[j]), math.degrees(lon[j]),
                                             float(h[j])))
            events.append(TrackUpdated(
                *common, tuple(sorted(sensors[tid])), math.degrees(lat[j]),
                math.degrees(lon[j]), float(h[j]), float(np.linalg.norm(tracks.x[i, 3:])),
                math.sqrt(float(np.trace(P[:3, :3])) / 3.0), int(tracks.updates[i])))
        if not self.predict_impacts:
            return tracks, events
        staging = self._staging_now(tracks)
        tracks, events = self._boost_corridors(tracks, rows, events, staging)
        due = rows[~(tracks.last_update[rows] - tracks.ipp_time[rows] < self.ipp_interval_s)
                   & self.ballistic(tracks.select(rows)) & ~staging[rows]]
        if due.size == 0:
            return tracks, events
        # The corridors' flights come down in the same integration as the impact points'
        # (the costliest part of a step that predicts): one loop of RK4 steps, not two.
        together = self.corridor_probability is not None and \
            self.impact.step_s == CORRIDOR_CROSSING_STEP_S
        extra, extra_t = corridor_rows(tracks.x[due], tracks.time[due]) if together else \
            (np.zeros((0, 6)), np.zeros(0))
        impacts, launches, crossed = self.impact.predict_and_cross(
            tracks.x[due], tracks.P[due], tracks.time[due], extra, extra_t,
            inv_beta=self.predictor.inv_beta)
        paths: list[Corridor | None] = [None] * due.size
        if self.corridor_probability is not None:
            has = np.array([ipp is not None for ipp in impacts], dtype=bool)
            rows = np.repeat(has, N_SIGMA)
            got_paths = corridors(tracks.x[due[has]], tracks.P[due[has]],
                                  tracks.time[due[has]], probability=self.corridor_probability,
                                  buffer_m=self.corridor_buffer_m,
                                  inv_beta=self.predictor.inv_beta,
                                  crossing=(crossed[0][rows], crossed[1][rows],
                                            crossed[2][rows]) if together else None)
            for k, c in zip(np.flatnonzero(has).tolist(), got_paths, strict=True):
                paths[k] = c
        it = np.full(due.size, np.nan)
        for j, i in enumerate(due):
            ipp = impacts[j]
            if ipp is None:
                continue
            it[j] = ipp.time
            events.append(ImpactPredicted(int(tracks.ids[i]), float(tracks.time[i]), ipp,
                                          launches[j], corridor=paths[j],
                                          shed_from=int(tracks.parent[i])))
        got = np.isfinite(it)
        tracks = tracks.with_impacts(due[got], it[got], tracks.time[due[got]])
        return tracks, events

    def _staging_now(self, tracks: TrackSet) -> NDArray[np.bool_]:
        """Tracks with a part of theirs still within ``part_near_m``: the two are within the
        radars' noise of each other, so either track may take the other's detections, and
        the missile's free-flight filter may hold the stage's motion. It is not free flight
        yet (the missile burns its next stage): no impact prediction, as under thrust."""
        out = np.zeros(len(tracks), dtype=bool)
        kids = np.flatnonzero(tracks.parent > 0)
        if kids.size == 0:
            return out
        row_of = {int(t): i for i, t in enumerate(tracks.ids.tolist())}
        for k in kids.tolist():
            j = row_of.get(int(tracks.parent[k]))
            if j is not None and float(np.linalg.norm(
                    tracks.xm[k, :3] - tracks.xm[j, :3])) < self.part_near_m:
                out[j] = True
        return out

    def _boost_corridors(self, tracks: TrackSet, rows: IntArray, events: list[Event],
                         staging: NDArray[np.bool_]) -> tuple[TrackSet, list[Event]]:
        """Corridors of the confirmed tracks that still burn (see :class:`BoostCorridor`)."""
        if self.boost_probability is None:
            return tracks, events
        worst = np.linalg.eigvalsh(tracks.Pm[rows, 3:, 3:])[:, -1]
        # a part a track shed does not burn: it has no cut-off corridor
        burning = rows[(~self.ballistic(tracks.select(rows)) | staging[rows])
                       & (tracks.parent[rows] == 0)
                       & (worst <= self.boost_velocity_sigma_m_s**2)
                       & ~(tracks.last_update[rows] - tracks.boost_time[rows]
                           < self.ipp_interval_s)]
        if burning.size == 0:
            return tracks, events
        got = corridors(tracks.xm[burning], tracks.Pm[burning], tracks.time[burning],
                        probability=self.boost_probability, buffer_m=self.corridor_buffer_m,
                        inv_beta=self.predictor.inv_beta)
        drawn = []
        for i, c in zip(burning.tolist(), got, strict=True):
            if c is not None:
                events.append(BoostCorridor(int(tracks.ids[i]), float(tracks.time[i]), c))
                drawn.append(i)
        rows_drawn = np.asarray(drawn, dtype=np.int64)
        return tracks.with_boost_corridors(rows_drawn, tracks.time[rows_drawn]), events


DEFAULT_TRACKER = Tracker()


def step(tracks: TrackSet, detections: Sequence[Detection], now: float,
         tracker: Tracker = DEFAULT_TRACKER) -> tuple[TrackSet, list[Event]]:
    """One tracker step with the default parts (see :class:`Tracker`)."""
    return tracker.step(tracks, detections, now)
