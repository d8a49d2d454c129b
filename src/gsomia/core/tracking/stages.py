"""Where a multi-stage rocket's spent parts come down: stage drops and their announced zones.

A space launcher does not come down at one point. Each stage, once burnt out, separates and
falls ballistically (with drag) from the state the vehicle had at separation; the payload
fairing is shed once the air no longer matters (above ~100 km), during the second stage's
burn. North Korea has announced such zones before its satellite launches (to the IMO and Japan
Coast Guard: 2012-12, 2016-02, 2023-05/08/11: a first-stage zone in the Yellow Sea west of
the Korean peninsula, a fairing zone south-west of Korea, a second-stage zone east of the
Philippines), and the warnings name them as real systems do: a ``notice`` where a zone
touches the party's EEZ, ``information`` on the high seas, never a land alert (a zone is
announced where no land lies).

The falls are computed from the fitted flight: the vehicle's state at each separation
(:meth:`Trajectory.state_at`) integrated to the ground with the spent part's ballistic
coefficient (:func:`impact.ground_crossing`), so a zone lies where the model's own rocket
drops its parts: ~430-450 km downrange for a space launcher's first stage (the Yellow Sea
west of Korea, where DPRK's zones were and its 2012 and 2023 first stages were raised), the
fairing ~770-900 km (south-west of Jeju), and the fitted flight itself ends at the recorded
range, where the second-stage zone east of Luzon was announced; the orbit-bound third stage
is not modelled. Radars see each spent stage fall (:func:`fall`, :func:`spent_stages`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gsomia.core.tracking.earth import ecef_to_geodetic, great_circle_m
from gsomia.core.tracking.impact import ground_crossing
from gsomia.core.tracking.predictor import acceleration, height_fast, rk4_step
from gsomia.core.tracking.trajectory import Trajectory, profile_for

__all__ = [
    "DROP_ZONE_ACROSS_M",
    "DROP_ZONE_ALONG_M",
    "FAIRING_ALTITUDE_M",
    "StageDrop",
    "fall",
    "spent_stages",
    "stage_drops",
]

# Ballistic coefficients (kg/m^2) of what falls: an empty stage tumbles, light for its size;
# a fairing half is a light shell.
_SPENT_BETA = 600.0
_FAIRING_BETA = 60.0
_FALL_STEP_S = 2.0      # a falling part's path, as radars sample it
FAIRING_ALTITUDE_M = 110_000.0      # fairings are shed once the air no longer heats payloads
# An announced zone is a box of tens of km (the 2023 notices: ~25 x 90 km for a first stage);
# drawn as an ellipse that long along the flight and that wide across it.
DROP_ZONE_ALONG_M = 50_000.0
DROP_ZONE_ACROSS_M = 15_000.0


@dataclass(frozen=True, slots=True)
class StageDrop:
    """One spent part: what, when it separated and came down, where (degrees), and how far
    downrange of the launch point (m)."""

    part: str
    separated_s: float
    impact_s: float
    lat_deg: float
    lon_deg: float
    downrange_m: float
    bearing_deg: float      # the flight's bearing at the fall: the zone's long axis


def stage_drops(trajectory: Trajectory) -> tuple[StageDrop, ...]:
    """The parts a multi-stage flight sheds before its last stage burns out: every stage but
    the last, and for a space launcher its fairing; in the order they separate. A single-stage
    missile (or a flight cut off in its first stage) sheds none."""
    prof = profile_for(trajectory.missile_class, trajectory.maneuver)
    if len(prof.stages) < 2:
        return ()
    t_end = np.cumsum([s.burn_s for s in prof.stages])
    parts: list[tuple[str, float, float]] = []
    ordinal = ("first", "second", "third")
    for k, t in enumerate(t_end[:-1]):
        if t < trajectory.burnout_s:
            parts.append((f"{ordinal[k]} stage", float(t), _SPENT_BETA))
    if prof.missile_class == "SLV":
        t = np.linspace(0.0, min(trajectory.burnout_s, trajectory.flight_time_s), 400)
        high = np.flatnonzero(trajectory.altitude_at(t) >= FAIRING_ALTITUDE_M)
        if high.size:
            parts.append(("fairing", float(t[high[0]]), _FAIRING_BETA))
    parts.sort(key=lambda p: p[1])
    out = []
    lat0 = math.radians(trajectory.launch_lat_deg)
    lon0 = math.radians(trajectory.launch_lon_deg)
    for part, t_sep, beta in parts:
        r, v = trajectory.state_at(t_sep)
        x = np.concatenate([r, v])[None, :]
        t_hit, r_hit, ok = ground_crossing(x, np.array([t_sep]), np.ones(1),
                                           step_s=10.0, inv_beta=1.0 / beta)
        if not ok[0]:
            continue        # one that reached orbit does not fall here
        lat, lon, _ = ecef_to_geodetic(r_hit[0])
        lat_f, lon_f = float(lat), float(lon)
        # the flight's bearing at the fall: the reverse of the bearing from there to the launch
        y = math.sin(lon0 - lon_f) * math.cos(lat0)
        xx = (math.cos(lat_f) * math.sin(lat0)
              - math.sin(lat_f) * math.cos(lat0) * math.cos(lon0 - lon_f))
        back = math.atan2(y, xx)
        out.append(StageDrop(part, t_sep, float(t_hit[0]), math.degrees(lat_f),
                             math.degrees(lon_f),
                             float(great_circle_m(lat0, lon0, lat_f, lon_f)),
                             (math.degrees(back) + 180.0) % 360.0))
    return tuple(out)


def fall(trajectory: Trajectory, drop: StageDrop) -> Trajectory:
    """The path of one spent part from its separation to the ground, as a flight of its own
    (what radars see of it): the vehicle's state at separation integrated with the part's
    drag. It never burns (``burnout_s`` before its start: infrared sensors do not see it)."""
    beta = _FAIRING_BETA if drop.part == "fairing" else _SPENT_BETA
    r, v = trajectory.state_at(drop.separated_s)
    states = [np.concatenate([r, v])[None, :]]
    times = [drop.separated_s]
    h = np.full(1, _FALL_STEP_S)
    while height_fast(states[-1][:, :3])[0] > 0.0 and times[-1] < drop.impact_s + 60.0:
        states.append(rk4_step(states[-1], h, 1.0 / beta))
        times.append(times[-1] + _FALL_STEP_S)
    x = np.concatenate(states)
    t = np.array(times)
    if x.shape[0] > 1:
        # end on the ground: the last step cut where its height crosses zero
        h0, h1 = height_fast(x[-2:, :3])
        w = float(np.clip(h0 / (h0 - h1), 0.0, 1.0)) if h0 > h1 else 1.0
        x[-1] = x[-2] + w * (x[-1] - x[-2])
        t[-1] = t[-2] + w * (t[-1] - t[-2])
    acc = acceleration(x[:, :3], x[:, 3:], 1.0 / beta)
    lat, lon, _ = ecef_to_geodetic(x[-1, :3])
    return Trajectory(
        times=t, positions=np.ascontiguousarray(x[:, :3]),
        velocities=np.ascontiguousarray(x[:, 3:]), accelerations=np.ascontiguousarray(acc),
        missile_class=trajectory.missile_class, maneuver=None,
        launch_lat_deg=trajectory.launch_lat_deg, launch_lon_deg=trajectory.launch_lon_deg,
        bearing_deg=drop.bearing_deg, azimuth_deg=trajectory.azimuth_deg, energy=0.0,
        burnout_pitch_deg=0.0, burnout_s=-1.0, apogee_m=float(np.max(height_fast(x[:, :3]))),
        apogee_s=float(t[int(np.argmax(height_fast(x[:, :3])))]), range_m=drop.downrange_m,
        impact_lat_deg=math.degrees(float(lat)), impact_lon_deg=math.degrees(float(lon)))


def spent_stages(trajectory: Trajectory) -> tuple[tuple[StageDrop, Trajectory], ...]:
    """The spent stages of a multi-stage flight with their paths: the objects, besides the
    missile, that radars see after each separation (fairing halves, light shells that
    tumble and slow in the air, are left out)."""
    return tuple((d, fall(trajectory, d)) for d in stage_drops(trajectory)
                 if d.part != "fairing")
