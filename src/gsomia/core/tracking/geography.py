"""Which prefectures, provinces and sea zones a point, an impact ellipse or a flight path touch.

Regions come from the GeoJSON shipped in ``gsomia/data/geography`` (see its README: GSHHG
coasts at ~200 m, not legal boundaries), decoded by :func:`atlas`. Point-in-polygon is the even-odd
rule over every ring of a region, compiled (numba) over points and edges; coordinates are
degrees (latitude, longitude in the function arguments; GeoJSON keeps longitude first).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.earth import R_MEAN, Array
from gsomia.core.tracking.trajectory import Mask

FILES = ("japan-prefectures.geojson", "korea-provinces.geojson", "eez.geojson",
         "territorial-seas.geojson")
LAND_KINDS = ("prefecture", "province")
# A state's territory is its land and its territorial sea (UNCLOS arts. 2-3): a region's
# territorial sea (its land and the sea within 12 nmi of its coast) bears the region's name.
TERRITORY_KINDS = (*LAND_KINDS, "territorial-sea")


class _Edges(NamedTuple):
    """A ring's edges (from a, to b) and an index of them by latitude band."""

    xa: Array
    ya: Array
    yb: Array
    dx: Array
    dy: Array
    y0: float
    band_h: float
    order: NDArray[np.int64]     # edge indices, band by band
    starts: NDArray[np.int64]    # band b's edges: order[starts[b]:starts[b + 1]]


def _bands(ya: Array, yb: Array) -> tuple[float, float, NDArray[np.int64], NDArray[np.int64]]:
    """Latitude bands of a ring, each with the edges whose latitude span meets it. An edge
    straddles a point's latitude only if that latitude is in its span, so a point need only
    be tested against the edges of its own band."""
    lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
    y0 = float(lo.min())
    span = float(hi.max()) - y0
    n = max(1, min(512, ya.size // 8))
    h = span / n if span > 0.0 else 1.0
    b0 = np.clip(((lo - y0) / h).astype(np.int64), 0, n - 1)
    b1 = np.clip(((hi - y0) / h).astype(np.int64), 0, n - 1)
    counts = b1 - b0 + 1
    first = np.cumsum(counts) - counts
    band = np.repeat(b0, counts) + (np.arange(int(counts.sum())) - np.repeat(first, counts))
    edge = np.repeat(np.arange(ya.size), counts)
    order = np.argsort(band, kind="stable")
    starts = np.searchsorted(band[order], np.arange(n + 1)).astype(np.int64)
    return y0, h, edge[order].astype(np.int64), starts


@dataclass(frozen=True, slots=True, eq=False)
class Region:
    """A prefecture, a province or an EEZ: rings of (lon, lat) vertices, in degrees.

    Built once per process and asked thousands of times per flight, so each ring's bounding
    box and edges are kept ready (``ring_boxes``, ``vertices``): a point outside a ring's box
    crosses that ring an even number of times, and only the rings whose box holds a point are
    tested edge by edge.
    """

    id: str
    name: str
    name_local: str
    party: str
    kind: str                   # prefecture | province | territorial-sea | eez
    rings: tuple[Array, ...]    # each (k, 2), closed or not
    bbox: tuple[float, float, float, float]     # lon_min, lat_min, lon_max, lat_max
    ring_boxes: Array = field(init=False, repr=False)    # (rings, 4) like bbox
    vertices: Array = field(init=False, repr=False)      # (all vertices, 2) lon, lat
    _edges: dict[int, _Edges] = field(init=False, repr=False)  # filled as rings are tested

    def __post_init__(self) -> None:
        allv = (np.concatenate(self.rings)[:, :2] if self.rings else np.zeros((0, 2)))
        starts = np.cumsum([0] + [len(r) for r in self.rings[:-1]])
        boxes = (np.column_stack([np.minimum.reduceat(allv[:, 0], starts),
                                  np.minimum.reduceat(allv[:, 1], starts),
                                  np.maximum.reduceat(allv[:, 0], starts),
                                  np.maximum.reduceat(allv[:, 1], starts)])
                 if self.rings else np.zeros((0, 4)))
        object.__setattr__(self, "ring_boxes", boxes)
        object.__setattr__(self, "vertices", allv)
        object.__setattr__(self, "_edges", {})

    def _ring_edges(self, j: int) -> _Edges:
        got = self._edges.get(j)
        if got is None:
            ring = self.rings[j]
            xa, ya = np.ascontiguousarray(ring[:, 0]), np.ascontiguousarray(ring[:, 1])
            xb, yb = np.roll(xa, -1), np.roll(ya, -1)
            got = self._edges[j] = _Edges(xa, ya, yb, xb - xa, yb - ya, *_bands(ya, yb))
        return got

    @property
    def land(self) -> bool:
        return self.kind in LAND_KINDS

    def contains(self, lat: Array | float, lon: Array | float) -> Mask:
        """Even-odd point-in-polygon for points (any shape); a boolean array of that shape."""
        la = np.asarray(lat, dtype=float)
        lo = np.asarray(lon, dtype=float)
        shape = np.broadcast(la, lo).shape
        la, lo = np.broadcast_to(la, shape).ravel(), np.broadcast_to(lo, shape).ravel()
        inside = np.zeros(la.shape, dtype=bool)
        x0, y0, x1, y1 = self.bbox
        cand = np.flatnonzero((lo >= x0) & (lo <= x1) & (la >= y0) & (la <= y1))
        if cand.size == 0:
            return inside.reshape(shape)
        px, py = lo[cand], la[cand]
        b = self.ring_boxes
        near = ((px[:, None] >= b[:, 0]) & (px[:, None] <= b[:, 2])
                & (py[:, None] >= b[:, 1]) & (py[:, None] <= b[:, 3]))
        # compiled (numba: only in processes that track, as Corridor.sections_hit): a loop
        # over the latitude bands spent most of this in NumPy's overhead per call
        from gsomia.core.tracking import kernels

        odd = np.zeros(cand.size, dtype=bool)
        for j in np.flatnonzero(near.any(axis=0)):
            pts = np.flatnonzero(near[:, j])
            e = self._ring_edges(int(j))
            # only the edges whose latitudes reach a point's band can straddle it
            odd[pts] ^= kernels.ring_crossings_odd(px[pts], py[pts], e.xa, e.ya, e.yb, e.dx,
                                                   e.dy, e.y0, e.band_h, e.order, e.starts)
        inside[cand] = odd
        return inside.reshape(shape)

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "name_local": self.name_local,
                "party": self.party, "kind": self.kind}


@dataclass(frozen=True, slots=True, eq=False)
class Atlas:
    regions: tuple[Region, ...]
    _coasts: dict[tuple[str, ...], tuple[Array, Array, NDArray[np.int64]]] = field(
        default_factory=dict, init=False, repr=False)

    def coast(self, parties: Iterable[str]) -> tuple[Array, Array, NDArray[np.int64]]:
        """Every vertex of the land regions of ``parties``: as a unit vector on the sphere
        (n, 3), as (lon, lat) degrees (n, 2), and the index of its region. Built once per
        atlas, then asked on every notice, where a dot product finds the nearest vertex (the
        largest cosine is the shortest great circle)."""
        key = tuple(sorted(set(parties)))
        got = self._coasts.get(key)
        if got is None:
            rows = [i for i, r in enumerate(self.regions) if r.land and r.party in key]
            verts = (np.concatenate([self.regions[i].vertices for i in rows]) if rows
                     else np.zeros((0, 2)))
            which = (np.concatenate([np.full(self.regions[i].vertices.shape[0], i)
                                     for i in rows]) if rows else np.zeros(0)).astype(np.int64)
            lat, lon = np.radians(verts[:, 1]), np.radians(verts[:, 0])
            units = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                                     np.sin(lat)])
            got = self._coasts[key] = (units, verts, which)
        return got

    def by_id(self, region_id: str) -> Region:
        for r in self.regions:
            if r.id == region_id:
                return r
        raise MalformedInput(f"no region {region_id!r}", where="region",
                             expected="an id such as JP-01 or KR-42")

    def of(self, party: str, kinds: Iterable[str] | None = None) -> tuple[Region, ...]:
        ks = set(kinds) if kinds is not None else None
        return tuple(r for r in self.regions
                     if r.party == party and (ks is None or r.kind in ks))


def _region(feature: Mapping[str, Any], where: str) -> Region:
    props = feature.get("properties")
    geom = feature.get("geometry")
    if not isinstance(props, Mapping) or not isinstance(geom, Mapping):
        raise MalformedInput("feature without properties or geometry", where=where,
                             expected="a GeoJSON Feature")
    for key in ("id", "name", "party", "kind"):
        if not isinstance(props.get(key), str):
            raise MalformedInput(f"missing {key}", where=where, expected="id, name, party, kind")
    kind = geom.get("type")
    coords = geom.get("coordinates")
    polys = coords if kind == "MultiPolygon" else [coords] if kind == "Polygon" else None
    if not isinstance(polys, list):
        raise MalformedInput(f"geometry {kind!r}", where=where,
                             expected="a Polygon or MultiPolygon")
    rings: list[Array] = []
    try:
        for poly in polys:
            for ring in poly:
                arr = np.asarray(ring, dtype=float)
                if arr.ndim != 2 or arr.shape[0] < 3 or arr.shape[1] < 2:
                    raise ValueError
                rings.append(arr[:, :2])
    except (TypeError, ValueError):
        raise MalformedInput("bad coordinates", where=where,
                             expected="rings of [lon, lat] with at least 3 vertices") from None
    if not rings:
        raise MalformedInput("empty geometry", where=where, expected="at least one ring")
    allv = np.concatenate(rings)
    bbox = (float(allv[:, 0].min()), float(allv[:, 1].min()),
            float(allv[:, 0].max()), float(allv[:, 1].max()))
    return Region(props["id"], props["name"], str(props.get("name_local", props["name"])),
                  props["party"], props["kind"], tuple(rings), bbox)


def atlas(documents: Sequence[Mapping[str, Any]]) -> Atlas:
    """Decoded GeoJSON FeatureCollections → an :class:`Atlas` (ids must be unique)."""
    regions: list[Region] = []
    for n, doc in enumerate(documents):
        feats = doc.get("features") if isinstance(doc, Mapping) else None
        if not isinstance(feats, list):
            raise MalformedInput("not a FeatureCollection", where=f"geography[{n}]",
                                 expected='{"type": "FeatureCollection", "features": [...]}')
        regions.extend(_region(f, f"geography[{n}].features[{i}]") for i, f in enumerate(feats))
    ids = [r.id for r in regions]
    if len(set(ids)) != len(ids):
        raise MalformedInput("duplicate region ids", where="geography", expected="unique ids")
    return Atlas(tuple(regions))


# --- questions ------------------------------------------------------------------------------


def regions_at(atl: Atlas, lat: float, lon: float,
               kinds: Iterable[str] | None = None) -> list[Region]:
    """Regions containing the point (a land region and an EEZ may both contain a coast)."""
    ks = set(kinds) if kinds is not None else None
    return [r for r in atl.regions if (ks is None or r.kind in ks) and bool(r.contains(lat, lon))]


def in_territory(atl: Atlas, party: str, lat: Array | float, lon: Array | float) -> Mask:
    """Whether points are in the party's territory: its land (prefectures or provinces) or
    its territorial sea."""
    out = np.zeros(np.broadcast(np.asarray(lat), np.asarray(lon)).shape, dtype=bool)
    for r in atl.of(party, TERRITORY_KINDS):
        out |= r.contains(lat, lon)
    return out


def in_eez(atl: Atlas, party: str, lat: Array | float, lon: Array | float) -> Mask:
    """Whether points are in the party's (approximate) exclusive economic zone."""
    out = np.zeros(np.broadcast(np.asarray(lat), np.asarray(lon)).shape, dtype=bool)
    for r in atl.of(party, ("eez",)):
        out |= r.contains(lat, lon)
    return out


def zone_of(atl: Atlas, party: str, lat: float, lon: float) -> str | None:
    """``"territory"``, ``"eez"`` or None for one point and one party."""
    if bool(in_territory(atl, party, lat, lon)):
        return "territory"
    if bool(in_eez(atl, party, lat, lon)):
        return "eez"
    return None


def ellipse_points(lat: float, lon: float, semi_major_m: float, semi_minor_m: float,
                   orientation_deg: float, n: int = 72, rings: int = 3) -> tuple[Array, Array]:
    """Points on and inside an ellipse on the ground: its centre, ``rings`` concentric copies
    (the outer one its boundary) of ``n`` points each. ``orientation_deg``: the major axis's
    bearing, clockwise from north. Local flat-Earth offsets (fine to ~1,000 km)."""
    th = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    scale = np.linspace(1.0, 0.0, rings, endpoint=False)[:, None]
    a = semi_major_m * np.cos(th) * scale
    b = semi_minor_m * np.sin(th) * scale
    o = math.radians(orientation_deg)
    north = a * math.cos(o) - b * math.sin(o)
    east = a * math.sin(o) + b * math.cos(o)
    lats = lat + np.degrees(north / R_MEAN)
    lons = lon + np.degrees(east / (R_MEAN * max(math.cos(math.radians(lat)), 1e-6)))
    return np.append(lats.ravel(), lat), np.append(lons.ravel(), lon)


def _in_ellipse(lat: float, lon: float, a: float, b: float, orientation_deg: float,
                plat: Array, plon: Array) -> Mask:
    north = np.radians(plat - lat) * R_MEAN
    east = np.radians(plon - lon) * R_MEAN * math.cos(math.radians(lat))
    o = math.radians(orientation_deg)
    along = north * math.cos(o) + east * math.sin(o)
    across = -north * math.sin(o) + east * math.cos(o)
    return np.asarray((along / max(a, 1e-9)) ** 2 + (across / max(b, 1e-9)) ** 2 <= 1.0)


def _box(lats: Array, lons: Array) -> tuple[float, float, float, float]:
    return float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max())


def _overlaps(r: Region, box: tuple[float, float, float, float]) -> bool:
    """Whether the bounding boxes of a region and of some points meet (a cheap first cut)."""
    x0, y0, x1, y1 = r.bbox
    return box[0] <= x1 and box[2] >= x0 and box[1] <= y1 and box[3] >= y0


def regions_in_ellipse(atl: Atlas, lat: float, lon: float, semi_major_m: float,
                       semi_minor_m: float, orientation_deg: float = 0.0,
                       kinds: Iterable[str] | None = None, n: int = 72,
                       parties: Iterable[str] | None = None) -> list[Region]:
    """Regions an impact ellipse touches: a sampled point of the ellipse lies in the region,
    or a vertex of the region lies in the ellipse (a small island inside a large ellipse)."""
    ks = set(kinds) if kinds is not None else None
    ps = set(parties) if parties is not None else None
    plat, plon = ellipse_points(lat, lon, semi_major_m, semi_minor_m, orientation_deg, n)
    box = _box(plat, plon)
    out = []
    for r in atl.regions:
        if (ks is not None and r.kind not in ks) or (ps is not None and r.party not in ps):
            continue
        if not _overlaps(r, box):
            continue
        if r.contains(plat, plon).any() or _in_ellipse(
                lat, lon, semi_major_m, semi_minor_m, orientation_deg,
                r.vertices[:, 1], r.vertices[:, 0]).any():
            out.append(r)
    return out


def densify_track(lats: Array, lons: Array, step_km: float = 5.0) -> tuple[Array, Array]:
    """A ground track with points at most ``step_km`` apart (linear in degrees per leg)."""
    la = np.asarray(lats, dtype=float)
    lo = np.asarray(lons, dtype=float)
    if la.size < 2:
        return la, lo
    seg = np.hypot(np.diff(la), np.diff(lo) * np.cos(np.radians(la[:-1]))) * 111.2
    k = np.maximum(np.ceil(seg / step_km).astype(int), 1)
    i = np.repeat(np.arange(la.size - 1), k)
    starts = np.cumsum(k) - k
    f = (np.arange(int(k.sum())) - starts[i]) / k[i]
    out_la = np.append(la[i] + f * (la[i + 1] - la[i]), la[-1])
    out_lo = np.append(lo[i] + f * (lo[i + 1] - lo[i]), lo[-1])
    return out_la, out_lo


def regions_overflown(atl: Atlas, lats: Array, lons: Array,
                      kinds: Iterable[str] | None = LAND_KINDS,
                      step_km: float = 5.0, parties: Iterable[str] | None = None) -> list[Region]:
    """Regions under a ground track, in the order the track first enters them."""
    ks = set(kinds) if kinds is not None else None
    ps = set(parties) if parties is not None else None
    la, lo = densify_track(lats, lons, step_km)
    if la.size == 0:
        return []
    box = _box(la, lo)
    firsts: list[tuple[int, Region]] = []
    for r in atl.regions:
        if (ks is not None and r.kind not in ks) or (ps is not None and r.party not in ps):
            continue
        if not _overlaps(r, box):
            continue
        hit = np.flatnonzero(r.contains(la, lo))
        if hit.size:
            firsts.append((int(hit[0]), r))
    return [r for _, r in sorted(firsts, key=lambda x: x[0])]
