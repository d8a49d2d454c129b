"""Warnings: when a party tells its people that a missile threatens them, and where.

An alert area is drawn as a corridor (:class:`gsomia.core.tracking.impact.Corridor`): the
ground paths the missile may still fly, at a stated probability, from a track's state and
covariance. Every region of the party's concern that the corridor touches is named, with
the reason, at a level set by what the region is:

- ``alert``: a prefecture or province whose territory (its land or its territorial sea, 12
  nmi of sea off its coast: UNCLOS arts. 2-3) the corridor touches, at a time still ahead of
  the message: ``overflight possible`` or ``impact possible``;
- ``notice``: the party's exclusive economic zone, where the impact ellipse (the corridor's
  last cross-section) touches it (as Japan's Ministry of Defense and the ROK Joint Chiefs of
  Staff announce launches that fall into their zones);
- ``information``: ``high seas``, an impact outside both within ``notice_km`` of the land.

A warning starts only from a credible prediction (an impact ellipse no wider than
``max_semi_major_km`` that agrees with the track's previous one: thrust, which a ballistic
filter cannot see, moves each prediction downrange). Predictions of several tracks of one
missile (its own, fused and partners' tracks) all count: a region stays named while any
track's latest corridor touches it. Each change is one message per level: ``issued`` names
the regions added, ``updated`` those whose reason changed, ``passed`` those the missile has
flown past (the corridor touched them only before the track's present time), and
``retracted`` those no longer possible, with why: the corridor narrowed away from them, or
the tracks sustaining them were lost before the predicted impact (as Japan retracted
Hokkaido on 2023-04-13). ``active`` lists every region named at that level after the change.

The USA watches the territory of the allies that host its forces (JPN and KOR).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gsomia.core.tracking.earth import R_MEAN, great_circle_m
from gsomia.core.tracking.geography import (
    TERRITORY_KINDS,
    Atlas,
    Region,
    regions_in_ellipse,
    regions_overflown,
)
from gsomia.core.tracking.impact import Corridor
from gsomia.core.tracking.stages import DROP_ZONE_ACROSS_M, DROP_ZONE_ALONG_M, StageDrop
from gsomia.core.tracking.types import GroundPoint
from gsomia.core.types import Party

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

__all__ = [
    "AREA_OF_CONCERN",
    "BOOST",
    "CORRIDOR_BUFFER_M",
    "DROP_ZONES",
    "HELD",
    "HIGH_SEAS",
    "IMPACT",
    "LEVEL_OF_KIND",
    "OVERFLIGHT",
    "PREDICTED_PASSING",
    "SPENT_STAGE",
    "Action",
    "Area",
    "Level",
    "Warning",
    "WarningCentre",
    "great_circle_path",
    "regions_in_corridor",
]

AREA_OF_CONCERN: Mapping[Party, tuple[Party, ...]] = {
    "JPN": ("JPN",), "KOR": ("KOR",), "USA": ("JPN", "KOR"),
}

# every party some centre watches: what one corridor test over all of them serves
_WATCHED = tuple(sorted({q for ps in AREA_OF_CONCERN.values() for q in ps}))

Action = Literal["issued", "updated", "retracted", "passed"]
Level = Literal["alert", "notice", "information"]
LEVEL_OF_KIND: Mapping[str, Level] = {"prefecture": "alert", "province": "alert",
                                      "territorial-sea": "alert", "eez": "notice"}
HIGH_SEAS = "high seas"
OVERFLIGHT = "overflight possible"
IMPACT = "impact possible"
BOOST = "/boost"            # a track's key while it burns
DROP_ZONES = "/drop-zones"  # the announced zones of a launcher's spent stages
SPENT_STAGE = "spent stage"   # what a part's fall names the sea it falls in after
HELD = "/held"              # a lost track's alerts, standing until the missile may have passed
PREDICTED_PASSING = "the missile's predicted passing time is over (track lost)"
# The corridor's widening beyond its covariance (drag and lift the ballistic corridor ignores,
# the atlas's ~200 m outlines). It was 20 km, which alerted flights that passed 2-20 km from
# a coast; with the territorial sea in the territory (12 nmi of sea beyond the coast), 3 km
# keeps every crossing of the data set alerted (docs/warning-measures) and no other.
CORRIDOR_BUFFER_M = 3_000.0


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
    active: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"party": self.party, "action": self.action, "at_s": round(self.at_s, 1),
                "track": self.track, "level": self.level, "regions": list(self.regions),
                "impact_lat": None if self.impact_lat is None else round(self.impact_lat, 3),
                "impact_lon": None if self.impact_lon is None else round(self.impact_lon, 3),
                "semi_major_km": None if self.semi_major_km is None
                else round(self.semi_major_km, 1),
                "time_to_impact_s": None if self.time_to_impact_s is None
                else round(self.time_to_impact_s, 1),
                "reason": self.reason, "active": list(self.active)}


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


def _units(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors of points given in degrees."""
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _unit(lat: float, lon: float) -> np.ndarray:
    la, lo = math.radians(lat), math.radians(lon)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])


def regions_in_corridor(atlas: Atlas, corridor: Corridor, parties: Iterable[str],
                        kinds: Iterable[str], *, impact_only: bool = False,
                        only: Iterable[str] | None = None
                        ) -> list[tuple[Region, float, float, bool]]:
    """Regions the corridor touches: (region, first and last time it may be over them,
    whether the impact ellipse touches them). ``impact_only``: only the impact ellipse;
    ``only``: only the regions of these names.

    A region is touched when one of its vertices lies in a cross-section ellipse (an island
    smaller than the corridor), or a point of an ellipse's outline or centre line lies in it
    (a corridor that enters a coarse polygon between two vertices).
    """
    ps, ks = set(parties), set(kinds)
    names = None if only is None else set(only)
    c = corridor.densified()
    if impact_only:
        c = Corridor(c.probability, c.time, c.times[-1:], c.lat_deg[-1:], c.lon_deg[-1:],
                     c.spread[-1:], c.buffer_m)
    n_outline = 12
    olat, olon = c.outline(n_outline)
    k = c.times.size
    section_of = np.concatenate([np.repeat(np.arange(k), n_outline), np.arange(k)])
    box = (float(olon.min()), float(olat.min()), float(olon.max()), float(olat.max()))
    # chord on the unit sphere of the widest semi-axis, with room for the sections' local
    # flat-Earth offsets
    reach = (1.1 * float(c.semi_axes_m()[0].max()) + 1_000.0) / R_MEAN
    tree: cKDTree | None = None
    out: list[tuple[Region, float, float, bool]] = []
    for r in atlas.regions:
        if r.party not in ps or r.kind not in ks or (names is not None and r.name not in names):
            continue
        x0, y0, x1, y1 = r.bbox
        if x0 > box[2] or x1 < box[0] or y0 > box[3] or y1 < box[1]:
            continue
        hit = np.zeros(k, dtype=bool)
        inside = r.contains(olat, olon)
        hit[section_of[inside]] = True
        verts = r.vertices
        near = ((verts[:, 0] >= box[0]) & (verts[:, 0] <= box[2])
                & (verts[:, 1] >= box[1]) & (verts[:, 1] <= box[3]))
        if near.any():
            v = verts[near]
            # Only a vertex within the widest semi-axis of some section's centre can lie in
            # that section: the box of a long corridor holds whole coasts, its sweep does not.
            if tree is None:
                # imported here: scipy.spatial costs about 0.4 s of CPU to import, and every
                # node process imports this module to serve its warnings
                from scipy.spatial import cKDTree
                tree = cKDTree(_units(c.lat_deg, c.lon_deg))
            d, _ = tree.query(_units(v[:, 1], v[:, 0]), distance_upper_bound=reach)
            v = v[np.isfinite(d)]
            for lo in range(0, v.shape[0], 2048):
                chunk = v[lo:lo + 2048]
                hit |= c.sections_hit(chunk[:, 1], chunk[:, 0]).any(axis=0)
        if hit.any():
            when = c.times[hit]
            out.append((r, float(when.min()), float(when.max()), bool(hit[-1])))
    return out


@dataclass(frozen=True, slots=True)
class Area:
    """One region named by one track's latest prediction: at which level, why, and until when
    the missile may be over it."""

    level: Level
    reason: str
    until_s: float


@dataclass(slots=True)
class WarningCentre:
    """One party's warning state; feed it predictions and losses in the order they arrive."""

    party: Party
    atlas: Atlas
    max_semi_major_km: float = 300.0
    max_shift_km: float = 50.0
    max_drift_s: float = 15.0
    long_flight_s: float = 1200.0
    notice_km: float = 1000.0
    steady: dict[str, int] = field(default_factory=dict)
    named: dict[str, Area] = field(default_factory=dict)
    by_track: dict[str, dict[str, Area]] = field(default_factory=dict)
    impact_s: float | None = None
    log: list[Warning] = field(default_factory=list)
    last: dict[str, GroundPoint] = field(default_factory=dict)
    first_impact: GroundPoint | None = None
    coasting: set[str] = field(default_factory=set)
    drops: tuple[StageDrop, ...] = ()       # the announced falls of a launcher's parts
    # What a corridor touches depends only on the corridor, the atlas and the regions of
    # concern. The centres of one launch and seed under several regimes replay the same
    # tracker runs, hence the same corridor objects: they may share this dict of answers
    # (keyed by corridor identity), and each corridor is laid over the map once.
    touched: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @property
    def concern(self) -> tuple[Party, ...]:
        return AREA_OF_CONCERN.get(self.party, (self.party,))

    @property
    def regions(self) -> tuple[str, ...] | None:
        """Every region named now (None: no warning stands)."""
        return tuple(sorted(self.named)) or None

    def credible(self, at_s: float, track: str, impact: GroundPoint) -> bool:
        """Small ellipse, and steady against the track's previous prediction.

        A ballistic filter cannot see thrust: while the engine burns, each prediction falls
        further downrange and later than the last, with an overconfident ellipse (a lofted
        ICBM's second stage moves the predicted impact time by a minute every ten seconds).
        A prediction is steady when it moved less than its ellipse (or ``max_shift_km``) and
        its impact time less than twice the spread of the two times (or ``max_drift_s``).
        One steady pair marks a coasting missile; two in a row when more than
        ``long_flight_s`` remain, where waiting costs little and the filter still carries the
        lag of a long burn.
        """
        previous = self.last.get(track)
        self.last[track] = impact
        if impact.ellipse.semi_major_km > self.max_semi_major_km or previous is None:
            self.steady[track] = 0
            return False
        shift = float(great_circle_m(math.radians(previous.lat_deg),
                                     math.radians(previous.lon_deg),
                                     math.radians(impact.lat_deg),
                                     math.radians(impact.lon_deg))) / 1e3
        drift = abs(impact.time - previous.time)
        steady = (shift <= max(self.max_shift_km, impact.ellipse.semi_major_km)
                  and drift <= max(self.max_drift_s,
                                   2.0 * math.hypot(impact.time_sigma_s, previous.time_sigma_s)))
        self.steady[track] = self.steady.get(track, 0) + 1 if steady else 0
        need = 2 if impact.time - at_s > self.long_flight_s else 1
        return self.steady[track] >= need

    def _in_corridor(self, corridor: Corridor, kinds: Iterable[str], *,
                     impact_only: bool = False) -> list[tuple[Region, float, float, bool]]:
        """regions_in_corridor over this party's concern. Each region is tested on its own,
        so the test runs once over every party's concern and each centre sharing
        ``touched`` (the parties of one launch and seed, under every regime) filters it."""
        kinds = tuple(kinds)
        watched = tuple(sorted({*_WATCHED, *self.concern}))
        key = ("in corridor", corridor, watched, kinds, impact_only)
        if key not in self.touched:
            self.touched[key] = regions_in_corridor(self.atlas, corridor, watched, kinds,
                                                    impact_only=impact_only)
        mine = set(self.concern)
        return [hit for hit in self.touched[key] if hit[0].party in mine]

    def areas(self, impact: GroundPoint, launch: GroundPoint | None,
              corridor: Corridor | None) -> dict[str, Area]:
        """What one prediction names: land under its corridor, the EEZ under its impact
        ellipse, else the high seas near the land."""
        key = ("areas", corridor, impact, self.concern)
        if corridor is not None and key in self.touched:
            return dict(self.touched[key])
        found: dict[str, Area] = {}
        if corridor is not None:
            for r, _, last, at_impact in self._in_corridor(corridor, TERRITORY_KINDS):
                found[r.name] = Area("alert", IMPACT if at_impact else OVERFLIGHT, last)
            for r, _, last, _ in self._in_corridor(corridor, ("eez",), impact_only=True):
                found[r.name] = Area("notice", IMPACT, last)
        else:
            # A prediction without a corridor (an impact point alone): its ellipse, and the
            # great circle from the launch point.
            e = impact.ellipse
            for r in regions_in_ellipse(self.atlas, impact.lat_deg, impact.lon_deg,
                                        e.semi_major_km * 1e3, e.semi_minor_km * 1e3,
                                        e.orientation_deg, parties=self.concern):
                found[r.name] = Area(LEVEL_OF_KIND.get(r.kind, "alert"), IMPACT, impact.time)
            if launch is not None:
                lats, lons = great_circle_path(launch.lat_deg, launch.lon_deg,
                                               impact.lat_deg, impact.lon_deg)
                for r in regions_overflown(self.atlas, lats, lons, TERRITORY_KINDS,
                                           parties=self.concern):
                    found.setdefault(r.name, Area("alert", OVERFLIGHT, impact.time))
        if not found:
            nearest, km = self.nearest_land(impact.lat_deg, impact.lon_deg)
            if km <= self.notice_km:
                found[HIGH_SEAS] = Area("information",
                                        f"impact on the high seas {km:.0f} km from {nearest}",
                                        impact.time)
        if corridor is not None:
            self.touched[key] = dict(found)
        return found

    def assess(self, at_s: float, track: str, impact: GroundPoint,
               launch: GroundPoint | None, corridor: Corridor | None = None
               ) -> Warning | None:
        """Take one prediction; returns the first message it caused (all are in ``log``)."""
        if not self.credible(at_s, track, impact):
            return None
        zone = self._zone_of(impact)
        if zone is not None:
            # a spent stage the tracker did not see separate (first seen apart from the
            # missile): its fall is announced, and it is not the missile
            self._seen_falling(at_s, track, zone)
            return None
        found = self.areas(impact, launch, corridor)
        before = {**self.by_track.get(f"{track}{BOOST}", {}), **self.by_track.get(track, {})}
        gone = [n for n, a in before.items() if n not in found and a.level == "alert"]
        if gone and corridor is not None:
            # Hysteresis: a region at the corridor's edge stays named until a corridor of
            # twice the buffer misses it too, so that noise does not retract and reissue it.
            key = ("wide", corridor, self.concern, tuple(sorted(gone)))
            if key not in self.touched:
                wide = replace(corridor, buffer_m=2.0 * corridor.buffer_m)
                self.touched[key] = [(r.name, last) for r, _, last, _ in regions_in_corridor(
                    self.atlas, wide, self.concern, TERRITORY_KINDS, only=gone)]
            for name, last in self.touched[key]:
                found[name] = replace(before[name], until_s=last)
        self.by_track[track] = found
        # A coasting track's own corridor replaces the one it drew while it burned.
        self.by_track.pop(f"{track}{BOOST}", None)
        self.coasting.add(track)
        self.impact_s = impact.time
        if self.first_impact is None and self.by_track[track]:
            self.first_impact = impact
        # What the missile may only have flown over before the prediction was known is
        # behind it: never alerted, at most said to be passed.
        now = max(corridor.time, at_s) if corridor is not None else at_s
        if corridor is not None and launch is not None:
            self._behind(launch, corridor, [n for n in before if n not in found], now)
        return self._publish(at_s, track, impact, now, "no longer under the possible path")

    def _behind(self, launch: GroundPoint, corridor: Corridor, dropped: Iterable[str],
                now: float) -> None:
        """Regions a corridor no longer touches that lie wholly nearer the launch point than
        the missile now is have been flown past, not ruled out: their end is moved to ``now``
        so that they are said to have passed (a burning track's alert held a region until
        its slower cut-off path would pass it)."""
        la, lo = math.radians(launch.lat_deg), math.radians(launch.lon_deg)
        here = float(great_circle_m(la, lo, math.radians(float(corridor.lat_deg[0])),
                                    math.radians(float(corridor.lon_deg[0]))))
        for name in dropped:
            old = self.named.get(name)
            if old is None or old.level != "alert" or old.until_s <= now:
                continue
            verts = np.concatenate([r.vertices for r in self.atlas.regions
                                    if r.name == name and r.party in self.concern])
            far = float(np.max(great_circle_m(la, lo, np.radians(verts[:, 1]),
                                              np.radians(verts[:, 0]))))
            if far < here:
                self.named[name] = replace(old, until_s=now)

    def boost(self, at_s: float, track: str, corridor: Corridor) -> Warning | None:
        """Take a burning track's cut-off corridor (the least it will fly along its heading):
        the land under it is alerted now, minutes before a ballistic prediction settles.

        Thrust only carries the missile further along its launch plane, so land under the
        shortest path it can still fly lies under its true path: a flight that stays over the
        sea never crosses land here.
        """
        if track in self.coasting:
            return None     # its ballistic corridors, drawn from a settled filter, rule
        asked = ("boost", corridor, self.concern)
        if asked not in self.touched:
            self.touched[asked] = self._certain(corridor)
        certain: dict[str, Area] | None = self.touched[asked]
        if certain is None:
            return None
        found = dict(certain)
        key = f"{track}{BOOST}"
        # Each cut-off path is a lower bound, so what an earlier one named stays possible.
        for name, a in self.by_track.get(key, {}).items():
            if name not in found or found[name].until_s < a.until_s:
                found[name] = a
        self.by_track[key] = found
        return self._publish(at_s, key, None, max(corridor.time, at_s),
                             "no longer under the possible path")

    def _certain(self, corridor: Corridor) -> dict[str, Area] | None:
        """The land a cut-off corridor certainly crosses (None: none)."""
        land = TERRITORY_KINDS
        k = corridor.times.size - 1
        under = regions_overflown(self.atlas, corridor.lat_deg, corridor.lon_deg, land,
                                  parties=self.concern)
        short = {r.name for r, *_ in self._in_corridor(corridor, land, impact_only=True)}
        # Only land the missile will certainly cross: under the cut-off path and beyond the
        # reach of its shortest impact. The manoeuvre filter's corridor is too wide to name
        # neighbours; the ballistic corridors that follow add what is possible.
        certain = {r.name for r in under if r.name not in short}
        if k < 1 or not certain:
            return None
        return {r.name: Area("alert", OVERFLIGHT, last)
                for r, _, last, _ in regions_in_corridor(
                    self.atlas, corridor, self.concern, land, only=certain)}

    def drop_zones(self, at_s: float, drops: Iterable[StageDrop]) -> Warning | None:
        """Name the zones where a launcher's spent stages and fairing will fall, as announced
        before a space launch: a ``notice`` where a zone touches the party's EEZ, else an
        ``information`` when it lies within ``notice_km`` of its land; each stands until its
        part has come down. Never an alert: the rocket itself is warned of by its tracks."""
        found: dict[str, Area] = {}
        self.drops = tuple(drops)
        for d in self.drops:
            name = f"{d.part} drop zone"
            eez = regions_in_ellipse(self.atlas, d.lat_deg, d.lon_deg, DROP_ZONE_ALONG_M,
                                     DROP_ZONE_ACROSS_M, d.bearing_deg, kinds=("eez",),
                                     parties=self.concern)
            if eez:
                found[name] = Area("notice", f"{d.part} falls in {eez[0].name}", d.impact_s)
                continue
            nearest, km = self.nearest_land(d.lat_deg, d.lon_deg)
            if km <= self.notice_km:
                found[name] = Area("information", f"{d.part} falls on the high seas "
                                   f"{km:.0f} km from {nearest}", d.impact_s)
        if not found:
            return None
        self.by_track[DROP_ZONES] = found
        return self._publish(at_s, DROP_ZONES, None, at_s, "")

    def spent(self, at_s: float, track: str, impact: GroundPoint,
              corridor: Corridor | None) -> Warning | None:
        """Take a prediction of a part a burning track shed (a spent stage, falling).

        A falling stage is a hazard only where it may come down: its corridor over land is
        not alerted (it flies there on its way down, as the missile did), land under its
        impact ellipse is (``impact possible``). Where its impact lies in an announced drop
        zone, it is that zone's part, seen falling: the zone stands as announced, and nothing
        else is named. It is not the missile: its prediction states no missile impact."""
        if not self.credible(at_s, track, impact):
            return None
        zone = self._zone_of(impact)
        if zone is not None:
            return self._seen_falling(at_s, track, zone)
        # Land it may hit bears the land's name; the sea it falls in is the stage's own, so
        # that the missile's notice or information for the same sea is still issued.
        self.by_track[track] = {
            n if a.level == "alert" else f"{n} ({SPENT_STAGE})": a
            for n, a in self.areas(impact, None, corridor).items()
            if a.level != "alert" or a.reason == IMPACT}
        return self._publish(at_s, track, None, at_s, "no longer under the possible path")

    def _zone_of(self, impact: GroundPoint) -> str | None:
        """The announced drop zone a predicted fall lies in (its ellipse reaching the zone's),
        if any."""
        for d in self.drops:
            off = float(great_circle_m(math.radians(d.lat_deg), math.radians(d.lon_deg),
                                       math.radians(impact.lat_deg),
                                       math.radians(impact.lon_deg)))
            if off <= DROP_ZONE_ALONG_M + 1e3 * impact.ellipse.semi_major_km:
                return f"{d.part} drop zone"
        return None

    def _seen_falling(self, at_s: float, track: str, zone: str) -> Warning | None:
        """A track falls into an announced zone: it is that part, and sustains the zone as
        announced (nothing else: what it flies over on its way down is no hazard)."""
        announced = self.by_track.get(DROP_ZONES, {}).get(zone)
        self.by_track[track] = {} if announced is None else {zone: announced}
        self.by_track.pop(f"{track}{BOOST}", None)
        return self._publish(at_s, track, None, at_s, "no longer under the possible path")

    def lost(self, at_s: float, track: str) -> Warning | None:
        """A track is lost: what only it sustained is retracted, unless the missile has passed
        those regions or came down as predicted, or may still fly over them.

        Losing a track does not make a region safe: radars lose a missile under their horizon
        while it flies on. So land it may still be over stays alerted until the latest time
        its corridors had the missile there, and is then said to have passed, as predicted
        (:meth:`tick`); saying "passed" or retracting it at the loss would stand people down
        minutes before the missile flies over (the USA alone lost space launches over the
        Yellow Sea ~300 s before they passed Okinawa). Notices and information go."""
        burnt = self.by_track.pop(f"{track}{BOOST}", None)
        own = self.by_track.pop(track, None)
        if own is None and burnt is None:
            return None
        if self.impact_s is not None and at_s >= self.impact_s - 30.0:
            # Lost at the end of its flight: it came down as predicted.
            return self._publish(at_s, track, None, math.inf, "")
        held: dict[str, Area] = {}
        for areas in (burnt or {}, own or {}):
            for name, a in areas.items():
                if a.level == "alert" and a.until_s > at_s and (
                        name not in held or held[name].until_s < a.until_s):
                    held[name] = a
        if held:
            self.by_track[f"{track}{HELD}"] = held
        return self._publish(at_s, track, None, at_s, "track lost")

    def tick(self, now: float) -> Warning | None:
        """Time has come to ``now``: the alerts a lost track left standing whose predicted
        passing time is over are said to have passed, each at that time."""
        first: Warning | None = None
        while True:
            due = [(a.until_s, key) for key, areas in self.by_track.items()
                   if key.endswith(HELD) for a in areas.values() if a.until_s < now]
            if not due:
                return first
            t, key = min(due)
            expired: set[str] = set()
            for k in [k for k in self.by_track if k.endswith(HELD)]:
                expired |= {n for n, a in self.by_track[k].items() if a.until_s <= t}
                left = {n: a for n, a in self.by_track[k].items() if a.until_s > t}
                if left:
                    self.by_track[k] = left
                else:
                    del self.by_track[k]
            w = self._publish(t, key[:-len(HELD)], None, t, "no longer under the possible "
                              "path", expired)
            first = first or w

    def _publish(self, at_s: float, track: str, impact: GroundPoint | None, now: float,
                 why_dropped: str, predicted: Collection[str] = ()) -> Warning | None:
        """Name what changed; ``predicted``: regions passed by the predicted time alone."""
        merged: dict[str, Area] = {}
        for areas in self.by_track.values():
            for name, a in areas.items():
                if a.until_s < now:
                    continue        # behind the missile by that track's latest corridor
                old = merged.get(name)
                if old is None:
                    merged[name] = a
                else:
                    merged[name] = Area(a.level, IMPACT if IMPACT in (a.reason, old.reason)
                                        else a.reason, max(a.until_s, old.until_s))
        changes: dict[tuple[Action, Level, str], list[str]] = {}
        for name, a in merged.items():
            old = self.named.get(name)
            if old is None:
                changes.setdefault(("issued", a.level, a.reason), []).append(name)
            elif old.reason != a.reason and a.level != "information":
                changes.setdefault(("updated", a.level, a.reason), []).append(name)
        for name, old in self.named.items():
            if name in merged:
                continue
            if now == math.inf:
                changes.setdefault(("passed", old.level, "the missile has come down"),
                                   []).append(name)
            elif old.until_s <= now:
                why = PREDICTED_PASSING if name in predicted else "the missile has passed"
                changes.setdefault(("passed", old.level, why), []).append(name)
            else:
                changes.setdefault(("retracted", old.level, why_dropped), []).append(name)
        self.named = merged
        first: Warning | None = None
        order = {"issued": 0, "updated": 1, "retracted": 2, "passed": 3}
        for (action, level, reason), names in sorted(changes.items(),
                                                     key=lambda kv: order[kv[0][0]]):
            active = tuple(sorted(n for n, a in merged.items() if a.level == level))
            w = Warning(self.party, action, at_s, track, tuple(sorted(names)), level,
                        None if impact is None else impact.lat_deg,
                        None if impact is None else impact.lon_deg,
                        None if impact is None else impact.ellipse.semi_major_km,
                        None if impact is None else impact.time - at_s, reason, active)
            self.log.append(w)
            first = first or w
        return first

    def nearest_land(self, lat: float, lon: float) -> tuple[str, float]:
        """The party's nearest land region of concern and its distance (km) from a point."""
        units, verts, which = self.atlas.coast(self.concern)
        if units.shape[0] == 0:
            return "", math.inf
        la, lo = math.radians(lat), math.radians(lon)
        k = int(np.argmax(units @ np.array([math.cos(la) * math.cos(lo),
                                            math.cos(la) * math.sin(lo), math.sin(la)])))
        d = great_circle_m(la, lo, math.radians(verts[k, 1]), math.radians(verts[k, 0]))
        return self.atlas.regions[int(which[k])].name, float(d) / 1e3

    @property
    def first_issued_s(self) -> float | None:
        return next((w.at_s for w in self.log if w.action == "issued"), None)
