"""Warnings: when a party tells its people that a missile threatens them.

A party alerts when a credible impact prediction (its uncertainty ellipse no wider than
``max_semi_major_km``) touches its territory or exclusive economic zone, or when the predicted
path from the launch point to the impact point overflies its territory. It gives a notice
(as Japan's Ministry of Defense and the ROK Joint Chiefs of Staff announce launches that fall
into the sea) when the predicted impact is within ``notice_km`` of its territory. It updates
the warning when the regions change, and retracts it when the track is lost before the
predicted impact (as Japan did for Hokkaido on 2023-04-13) or a later prediction no longer
threatens.

The USA watches the territory of the allies that host its forces (JPN and KOR).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from gsomia.core.tracking.earth import great_circle_m
from gsomia.core.tracking.geography import (
    Atlas,
    Region,
    regions_in_ellipse,
    regions_overflown,
)
from gsomia.core.tracking.types import GroundPoint
from gsomia.core.types import Party

AREA_OF_CONCERN: Mapping[Party, tuple[Party, ...]] = {
    "JPN": ("JPN",), "KOR": ("KOR",), "USA": ("JPN", "KOR"),
}

Action = Literal["issued", "updated", "retracted"]
Level = Literal["alert", "notice"]


@dataclass(frozen=True, slots=True)
class Warning:
    party: Party
    action: Action
    at_s: float
    track: str
    regions: tuple[str, ...]
    level: Level = "alert"
    impact_lat: float | None = None
    impact_lon: float | None = None
    semi_major_km: float | None = None
    time_to_impact_s: float | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"party": self.party, "action": self.action, "at_s": round(self.at_s, 1),
                "track": self.track, "level": self.level, "regions": list(self.regions),
                "impact_lat": None if self.impact_lat is None else round(self.impact_lat, 3),
                "impact_lon": None if self.impact_lon is None else round(self.impact_lon, 3),
                "semi_major_km": None if self.semi_major_km is None
                else round(self.semi_major_km, 1),
                "time_to_impact_s": None if self.time_to_impact_s is None
                else round(self.time_to_impact_s, 1),
                "reason": self.reason}


def threatened(atlas: Atlas, party: Party, impact: GroundPoint,
               launch: GroundPoint | None) -> tuple[tuple[Region, ...], str]:
    """The regions of ``party``'s concern that an impact prediction threatens, and why."""
    concern = AREA_OF_CONCERN.get(party, (party,))
    e = impact.ellipse
    hit = regions_in_ellipse(atlas, impact.lat_deg, impact.lon_deg, e.semi_major_km * 1e3,
                             e.semi_minor_km * 1e3, e.orientation_deg, parties=concern)
    over: list[Region] = []
    if launch is not None:
        lats, lons = great_circle_path(launch.lat_deg, launch.lon_deg, impact.lat_deg,
                                       impact.lon_deg)
        over = [r for r in regions_overflown(atlas, lats, lons, parties=concern)
                if r not in hit]
    reason = " and ".join(w for w, got in (("impact", hit), ("overflight", over)) if got)
    return tuple(hit + over), reason


def great_circle_path(lat1: float, lon1: float, lat2: float, lon2: float,
                      n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Points (degrees) along the great circle between two points: a ballistic ground track
    is close to it, and a straight line in latitude and longitude is not (it misses Hokkaido
    for a Pyongyang–Pacific flight)."""
    a = _unit(lat1, lon1)
    b = _unit(lat2, lon2)
    omega = math.acos(max(-1.0, min(1.0, float(a @ b))))
    f = np.linspace(0.0, 1.0, n)[:, None]
    if omega < 1e-9:
        pts = np.repeat(a[None, :], n, axis=0)
    else:
        pts = (np.sin((1 - f) * omega) * a + np.sin(f * omega) * b) / math.sin(omega)
    return np.degrees(np.arcsin(pts[:, 2])), np.degrees(np.arctan2(pts[:, 1], pts[:, 0]))


def _unit(lat: float, lon: float) -> np.ndarray:
    la, lo = math.radians(lat), math.radians(lon)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])


@dataclass(slots=True)
class WarningCentre:
    """One party's warning state; feed it predictions and losses in the order they arrive.

    Predictions of several tracks of one missile (the party's own track, its fused track, a
    partner's track) sustain one warning: it is issued once, updated when the regions change,
    and retracted only when no track sustains it any more before the predicted impact.
    """

    party: Party
    atlas: Atlas
    max_semi_major_km: float = 300.0
    max_shift_km: float = 50.0
    notice_km: float = 1000.0
    regions: tuple[str, ...] | None = None
    level: Level = "alert"
    _coast: np.ndarray | None = None
    sustained_by: set[str] = field(default_factory=set)
    impact_s: float | None = None
    log: list[Warning] = field(default_factory=list)
    last: dict[str, GroundPoint] = field(default_factory=dict)

    def credible(self, track: str, impact: GroundPoint) -> bool:
        """Small ellipse, and close to the track's previous prediction.

        A ballistic filter cannot see thrust: while the engine burns, each prediction falls
        further downrange than the last and the ellipse is overconfident. Two consecutive
        predictions that agree mark a coasting missile.
        """
        previous = self.last.get(track)
        self.last[track] = impact
        if impact.ellipse.semi_major_km > self.max_semi_major_km or previous is None:
            return False
        shift = float(great_circle_m(math.radians(previous.lat_deg),
                                     math.radians(previous.lon_deg),
                                     math.radians(impact.lat_deg),
                                     math.radians(impact.lon_deg))) / 1e3
        return shift <= max(self.max_shift_km, impact.ellipse.semi_major_km)

    def assess(self, at_s: float, track: str, impact: GroundPoint,
               launch: GroundPoint | None) -> Warning | None:
        if not self.credible(track, impact):
            return None
        found, reason = threatened(self.atlas, self.party, impact, launch)
        names = tuple(sorted(r.name for r in found))
        level: Level = "alert"
        if not names:
            nearest, km = self.nearest_land(impact.lat_deg, impact.lon_deg)
            if km <= self.notice_km:
                names, level = (nearest,), "notice"
                reason = f"impact at sea {km:.0f} km from {nearest}"
        if names:
            self.sustained_by.add(track)
            self.impact_s = impact.time
        else:
            self.sustained_by.discard(track)
        if names and self.regions is None:
            action: Action = "issued"
        elif names and (set(names) != set(self.regions or ()) or level != self.level):
            action = "updated"
        elif not names and self.regions is not None and not self.sustained_by:
            action = "retracted"
            reason = "prediction no longer threatens"
        else:
            return None
        self.regions = names or None
        self.level = level
        w = Warning(self.party, action, at_s, track, names or (), level, impact.lat_deg,
                    impact.lon_deg, impact.ellipse.semi_major_km, impact.time - at_s, reason)
        self.log.append(w)
        return w

    def lost(self, at_s: float, track: str) -> Warning | None:
        """A track is lost: retract the warning if nothing else sustains it before impact."""
        if track not in self.sustained_by:
            return None
        self.sustained_by.discard(track)
        if self.sustained_by or self.regions is None:
            return None
        if self.impact_s is not None and at_s >= self.impact_s - 30.0:
            return None         # lost at the end of its flight: it came down as predicted
        w = Warning(self.party, "retracted", at_s, track, self.regions, self.level,
                    reason="track lost")
        self.regions = None
        self.log.append(w)
        return w

    def nearest_land(self, lat: float, lon: float) -> tuple[str, float]:
        """The party's nearest land region of concern and its distance (km) from a point."""
        if self._coast is None:
            rows = [(i, ring) for i, r in enumerate(self.atlas.regions)
                    if r.land and r.party in AREA_OF_CONCERN.get(self.party, (self.party,))
                    for ring in r.rings]
            self._coast = np.concatenate([
                np.column_stack([ring[:, 1], ring[:, 0], np.full(len(ring), i)])
                for i, ring in rows]) if rows else np.zeros((0, 3))
        if self._coast.shape[0] == 0:
            return "", math.inf
        d = great_circle_m(math.radians(lat), math.radians(lon),
                           np.radians(self._coast[:, 0]), np.radians(self._coast[:, 1]))
        k = int(np.argmin(d))
        return self.atlas.regions[int(self._coast[k, 2])].name, float(d[k]) / 1e3

    @property
    def first_issued_s(self) -> float | None:
        return next((w.at_s for w in self.log if w.action == "issued"), None)
