"""The self-contained HTML report of a demo run: map, warning timeline, custody, agreements.

One file, ``index.html``, with its CSS inline and every figure drawn as inline SVG, so that it
opens offline and can be mailed as it is. The report only draws what the story holds
(``gsomia demo``'s agreement and warning stories); the custody paths are derived here from the
release policy's routes (:func:`gsomia.core.sharing.route`), hop by hop, with the label
re-marked in each holder's national scheme (Art. 4).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsomia.core.agreements import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.sharing import REGIMES, restricted, route
from gsomia.core.tracking.coverage import outline
from gsomia.core.types import PARTIES, SECRET_LEVELS

__all__ = ["COLOURS", "Projection", "base_map", "custody_paths", "map_data", "render",
           "write_report"]

COLOURS = {"JPN": "#c0392b", "KOR": "#1f5fbf", "USA": "#2e8b57"}
# What travels in the story: each party's sensor reports and its impact predictions.
ITEM_KINDS = ("sensor-report", "impact-prediction")
_KM_PER_DEG = 111.195


@dataclass(frozen=True, slots=True)
class Projection:
    """Equirectangular, scaled by the cosine of the middle latitude: good enough for a region
    the size of Northeast Asia, and the same in Python (report) and JavaScript (dashboard)."""

    lon_min: float = 120.0
    lon_max: float = 152.0
    lat_min: float = 30.0
    lat_max: float = 47.0
    px_per_deg: float = 36.0

    @property
    def kx(self) -> float:
        return math.cos(math.radians((self.lat_min + self.lat_max) / 2)) * self.px_per_deg

    @property
    def width(self) -> float:
        return (self.lon_max - self.lon_min) * self.kx

    @property
    def height(self) -> float:
        return (self.lat_max - self.lat_min) * self.px_per_deg

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon_min) * self.kx, (self.lat_max - lat) * self.px_per_deg

    def px_per_km(self) -> float:
        return self.px_per_deg / _KM_PER_DEG

    def to_json(self) -> dict[str, float]:
        return {"lon_min": self.lon_min, "lat_max": self.lat_max, "kx": self.kx,
                "ky": self.px_per_deg, "px_per_km": self.px_per_km(),
                "width": self.width, "height": self.height}

    @classmethod
    def around(cls, lats: Iterable[float], lons: Iterable[float], pad: float = 3.0) -> Projection:
        """A frame holding the points and at least Korea and Japan's main islands."""
        la, lo = list(lats), list(lons)
        return cls(min([124.0, *lo]) - pad, max([146.0, *lo]) + pad,
                   min([32.0, *la]) - pad, max([44.0, *la]) + pad)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _f(v: float) -> str:
    return f"{v:.1f}"


def base_map(proj: Projection) -> str:
    """The geography (prefectures, provinces, EEZs) as SVG paths in the projection."""
    from gsomia.shell import feeds

    out = []
    for region in feeds.load_geography().regions:
        lon0, lat0, lon1, lat1 = region.bbox
        if lon1 < proj.lon_min or lon0 > proj.lon_max or lat1 < proj.lat_min \
                or lat0 > proj.lat_max:
            continue
        d = []
        for ring in region.rings:
            pts = [proj.xy(float(lat), float(lon)) for lon, lat in ring]
            d.append("M" + "L".join(f"{_f(x)},{_f(y)}" for x, y in pts) + "Z")
        cls = "land" if region.land else "eez"
        out.append(f'<path class="{cls}" data-region="{_e(region.name)}" '
                   f'd="{"".join(d)}"><title>{_e(region.name)} '
                   f'({_e(region.party)})</title></path>')
    return "".join(out)


def ellipse_svg(proj: Projection, lat: float, lon: float, ellipse: Mapping[str, Any],
                colour: str, opacity: float, title: str) -> str:
    x, y = proj.xy(lat, lon)
    k = proj.px_per_km()
    rx = max(float(ellipse["semi_major_km"]) * k, 1.5)
    ry = max(float(ellipse["semi_minor_km"]) * k, 1.5)
    # The major axis lies along SVG's x (east, bearing 90°); SVG rotates clockwise.
    rot = float(ellipse["orientation_deg"]) - 90.0
    return (f'<ellipse cx="{_f(x)}" cy="{_f(y)}" rx="{_f(rx)}" ry="{_f(ry)}" '
            f'transform="rotate({_f(rot)} {_f(x)} {_f(y)})" fill="{colour}" '
            f'fill-opacity="{opacity:.2f}" stroke="{colour}" stroke-opacity="0.8">'
            f'<title>{_e(title)}</title></ellipse>')


# ---- data for the map, from a scenario result ----------------------------------------------
def map_data(results: Mapping[str, Any], trajectory: Any, sensors: Sequence[Any],
             per_party: int = 24) -> dict[str, Any]:
    """Ground track, sensors and impact predictions (thinned to ``per_party`` per regime)."""
    lats, lons = trajectory.ground_track(96)
    preds: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name, res in results.items():
        preds[name] = {}
        for p, items in res.predictions.items():
            step = max(1, math.ceil(len(items) / per_party))
            chosen = list(items[::step])
            if items and items[-1] not in chosen:
                chosen.append(items[-1])
            preds[name][p] = [{"t": round(at, 1), "track": track, **g.as_dict()}
                              for at, track, g in chosen]
    return {
        "track": [[round(float(a), 4), round(float(o), 4)] for a, o in zip(lats, lons,
                                                                             strict=True)],
        "impact": [round(trajectory.impact_lat_deg, 4), round(trajectory.impact_lon_deg, 4)],
        "sensors": [{"id": s.id, "name": s.name, "owner": s.owner, "platform": s.platform,
                     "lat": s.lat_deg, "lon": s.lon_deg, "max_range_km": s.max_range_km,
                     "outline": [list(p) for p in outline(s)]}
                    for s in sensors],
        "predictions": preds,
    }


# ---- custody -------------------------------------------------------------------------------
def custody_paths(catalogue: Catalogue) -> list[dict[str, Any]]:
    """Per regime, how each party's items reach each partner: hops with the marking held."""
    out = []
    for name, reg in REGIMES.items():
        cat = restricted(catalogue, reg)
        for origin in PARTIES:
            for kind in ITEM_KINDS:
                label = SecurityLabel(origin, SECRET_LEVELS[origin], frozenset(PARTIES),
                                      "dprk-missile", category=kind)
                item = f"{kind}--{origin.lower()}"
                for recipient in PARTIES:
                    if recipient == origin:
                        continue
                    got = route(item, label, recipient, reg, cat)
                    hops = [{"holder": origin, "marking": label.national_marking(),
                             "agreement": None}]
                    if got is not None:
                        holders = [got.via, recipient] if got.via else [recipient]
                        for holder, decision in zip(holders, got.decisions, strict=True):
                            level = decision.recipient_level or ""
                            held = label.remarked(holder or recipient, level)
                            hops.append({"holder": holder, "marking": held.national_marking(),
                                         "agreement": decision.agreement})
                    out.append({"regime": name, "item": item, "origin": origin,
                                "kind": kind, "recipient": recipient,
                                "delivered": got is not None,
                                "delay_s": None if got is None else got.delay_s,
                                "via": None if got is None else got.via, "hops": hops})
    return out


# ---- rendering -----------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}.num{text-align:right}.deny{color:#b00}.permit{color:#070}
svg{background:#eef4fa;border:1px solid #ccc;max-width:100%;height:auto}
.land{fill:#e8e2d0;stroke:#998;stroke-width:.5}.eez{fill:none;stroke:#89a;stroke-width:.6;
stroke-dasharray:3 2}.cov{fill-opacity:.015;stroke-opacity:.45;
stroke-width:.7;stroke-dasharray:4 3}
.legend span{display:inline-block;margin-right:1em}.sw{display:inline-block;width:.9em;
height:.9em;margin-right:.3em;vertical-align:middle}.hop{white-space:nowrap}
.muted{color:#777}
"""

_JS = """
document.querySelectorAll('select.regime').forEach(function(sel){
  function show(){document.querySelectorAll('g.preds').forEach(function(g){
    g.style.display = g.dataset.regime === sel.value ? '' : 'none';});}
  sel.addEventListener('change', show); show();});
"""


def _legend() -> str:
    return '<p class="legend">' + "".join(
        f'<span><i class="sw" style="background:{c}"></i>{p}</span>'
        for p, c in COLOURS.items()) + "</p>"


def _svg_map(m: Mapping[str, Any], regimes: Sequence[str], proj: Projection, svg_id: str,
             sensors: bool) -> str:
    parts = [f'<svg id="{svg_id}" viewBox="0 0 {_f(proj.width)} {_f(proj.height)}" '
             f'width="{_f(proj.width)}" height="{_f(proj.height)}" '
             f'role="img" aria-label="{svg_id}">', base_map(proj)]
    k = proj.px_per_km()
    for s in m["sensors"] if sensors else ():
        if s["platform"] == "satellite":
            continue
        x, y = proj.xy(s["lat"], s["lon"])
        c = COLOURS.get(s["owner"], "#555")
        # The footprint the dashboard draws too (gsomia.core.tracking.coverage); a story
        # written before outlines existed falls back to a ring.
        ring = s.get("outline") or []
        shape = ('<path class="cov" d="M' + "L".join(
                     f"{_f(px)},{_f(py)}" for px, py in (proj.xy(a, o) for a, o in ring))
                 + f'Z" fill="{c}" stroke="{c}">' if ring else
                 f'<circle class="cov" cx="{_f(x)}" cy="{_f(y)}" '
                 f'r="{_f(s["max_range_km"] * k)}" fill="{c}" stroke="{c}">')
        parts.append(shape + f'<title>{_e(s["name"])}: {s["max_range_km"]:.0f} km</title>'
                     f'{"</path>" if ring else "</circle>"}'
                     f'<path d="M{_f(x)},{_f(y - 4)}l4,7h-8z" fill="{c}">'
                     f'<title>{_e(s["name"])}</title></path>')
    pts = " ".join(f"{_f(x)},{_f(y)}" for x, y in (proj.xy(a, o) for a, o in m["track"]))
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#900" stroke-width="2.5">'
                 f'<title>ground track</title></polyline>')
    for name in regimes:
        group = [f'<g class="preds" data-regime="{_e(name)}">']
        for p, preds in m["predictions"].get(name, {}).items():
            n = max(len(preds), 1)
            for i, g in enumerate(preds):
                group.append(ellipse_svg(
                    proj, g["lat_deg"], g["lon_deg"], g["ellipse"], COLOURS.get(p, "#555"),
                    0.05 + 0.3 * (i + 1) / n,
                    f"{p} at T+{g['t']:.0f} s ({g['track']}): "
                    f"{g['ellipse']['semi_major_km']:.0f}×{g['ellipse']['semi_minor_km']:.0f}"
                    f" km"))
        group.append("</g>")
        parts.append("".join(group))
    ix, iy = proj.xy(*m["impact"])
    parts.append(f'<path d="M{_f(ix - 6)},{_f(iy - 6)}l12,12m0,-12l-12,12" stroke="#000" '
                 f'stroke-width="2.5"><title>true impact point</title></path></svg>')
    return "".join(parts)


def _map_section(m: Mapping[str, Any], regimes: Sequence[str], flight_s: float) -> str:
    lats = [a for a, _ in m["track"]]
    lons = [o for _, o in m["track"]]
    whole = _svg_map(m, regimes, Projection.around(lats, lons), "map", sensors=True)
    lat, lon = m["impact"]
    # The predictions converge within tens of km of the impact point: a closer look there.
    near = Projection(lon - 1.2, lon + 1.2, lat - 0.7, lat + 0.7, px_per_deg=320.0)
    inset = _svg_map(m, regimes, near, "impact-area", sensors=False)
    options = "".join(f'<option value="{_e(r)}"{" selected" if r == regimes[-1] else ""}>'
                      f"{_e(r)}</option>" for r in regimes)
    return ("<h2>Map</h2><p>Ground track (red line), ground and ship sensors with their "
            "maximum range (dashed), the true impact point (×) and each party's impact "
            "predictions with their uncertainty ellipses, fainter when earlier (flight "
            f"{flight_s:.0f} s). Regime: <select class=\"regime\">{options}</select></p>"
            + _legend() + whole + "<h3>Around the impact point</h3>" + inset)


def _timeline_section(w: Mapping[str, Any]) -> str:
    flight = float(w["flight_time_s"])
    rows, bars = [], []
    regimes = list(w["regimes"])
    bar_h, label_w, width = 14, 150, 720
    scale = (width - label_w - 10) / max(flight, 1.0)
    y = 0
    for name, run in w["regimes"].items():
        for p in PARTIES:
            o = run["parties"][p]
            t = o["first_warning_s"]
            issued = [x for x in o["warnings"] if x["action"] == "issued"]
            err = o["ipp_error_km"]
            log = "; ".join(f"{x['action']} T+{x['at_s']:.0f}" for x in o["warnings"])
            regions = ", ".join(issued[0]["regions"]) if issued else ""
            rows.append(
                f"<tr><td>{_e(name)}</td><td>{p}</td>"
                f"<td class=num>{'—' if t is None else f'{t:.0f}'}</td>"
                f"<td class=num>{'' if err is None else f'{err:.0f}'}</td>"
                f"<td>{_e(regions)}</td><td>{_e(log)}</td></tr>")
            c = COLOURS[p]
            bars.append(f'<text x="0" y="{y + 11}" font-size="11">{_e(name)} {p}</text>')
            if t is not None:
                bars.append(f'<rect x="{label_w}" y="{y + 1}" width="{_f(t * scale)}" '
                            f'height="{bar_h - 2}" fill="{c}"><title>{p} warned at T+{t:.0f} s'
                            f'</title></rect><text x="{_f(label_w + t * scale + 4)}" '
                            f'y="{y + 11}" font-size="10">{t:.0f} s</text>')
            else:
                bars.append(f'<text x="{label_w}" y="{y + 11}" font-size="10" fill="#777">'
                            "no warning</text>")
            y += bar_h
        y += 6
    fx = label_w + flight * scale
    bars.append(f'<line x1="{_f(fx)}" y1="0" x2="{_f(fx)}" y2="{y}" stroke="#000" '
                f'stroke-dasharray="4 3"><title>impact at T+{flight:.0f} s</title></line>')
    svg = (f'<svg viewBox="0 0 {width} {y}" width="{width}" height="{y}" '
           f'role="img" aria-label="warning times">'
           + "".join(bars) + "</svg>")
    return ("<h2>Warning timeline</h2><p>First warning of each party under each regime, in "
            f"seconds after lift-off; the dashed line is impact (T+{flight:.0f} s). Regimes: "
            f"{_e(', '.join(regimes))}.</p>" + svg +
            "<table><tr><th>regime</th><th>party</th><th>first warning (s)</th>"
            "<th>error (km)</th><th>regions warned</th><th>warning log</th></tr>"
            + "".join(rows) + "</table>")


def _custody_section(paths: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for c in paths:
        hops = " → ".join(
            f'<span class="hop">{_e(h["holder"])}: {_e(h["marking"])}'
            + (f' <span class="muted">({_e(h["agreement"])})</span>' if h["agreement"] else "")
            + "</span>" for h in c["hops"])
        state = (f'<span class="permit">delivered +{c["delay_s"]:.0f} s</span>'
                 if c["delivered"] else '<span class="deny">not released</span>')
        rows.append(f"<tr><td>{_e(c['regime'])}</td><td>{_e(c['item'])}</td>"
                    f"<td>{_e(c['recipient'])}</td><td>{state}</td><td>{hops}</td></tr>")
    return ("<h2>Custody of items across nodes</h2><p>Each party's sensor reports and impact "
            "predictions, routed by the release policy in each regime: directly, or through "
            "the US hub with the originator's consent; the marking is the label as each "
            "holder keeps it, in its own national scheme (Art. 4).</p>"
            "<table><tr><th>regime</th><th>item</th><th>to</th><th>outcome</th>"
            "<th>custody (holder: marking)</th></tr>" + "".join(rows) + "</table>")


def _federations_section(feds: Mapping[str, Any]) -> str:
    """What ``gsomia demo`` measured on a real federation per regime (see its docstring)."""

    def t(value: float | None) -> str:
        return '<span class="muted">—</span>' if value is None else f"{value:.1f}"

    rows, links, audits = [], [], []
    for name, fed in feds.items():
        for p in PARTIES:
            o = fed["parties"][p]
            issued = next((w for w in o["warnings"] if w["action"] == "issued"), None)
            rows.append(
                f"<tr><td>{_e(name)}</td><td>{p}</td>"
                f"<td class=num>{t(fed['model_first_warning_s'][p])}</td>"
                f"<td class=num>{t(o['first_warning_s'])}</td>"
                f"<td>{'' if issued is None else 'warning issued: '}"
                f"{_e(', '.join(issued['regions'])) if issued else ''}</td>"
                f"<td class=num>{t(o['first_track_s'])}</td>"
                f"<td class=num>{t(o['first_ipp_s'])}</td>"
                f"<td>{_e(', '.join(f'{k} {v}' for k, v in fed['held_from'][p].items()))}</td>"
                "</tr>")
        crossed = [*fed["links"].items(), *fed.get("relays", {}).items()]
        if not crossed:
            links.append(f"<tr><td>{_e(name)}</td><td colspan=3>nothing crossed</td></tr>")
        for path, link in crossed:
            links.append(
                f"<tr><td>{_e(name)}</td><td>{_e(path.replace('->', ' → '))}</td>"
                f"<td class=num>{link['items']}</td>"
                f"<td class=num>{link['p50_ms']:.0f} / {link['p99_ms']:.0f}</td></tr>")
        verdicts = ", ".join(f"{p} {'intact' if a['ok'] else 'TAMPERED'} ({a['events']} events)"
                             for p, a in fed.get("audit", {}).items())
        consents = fed.get("consents") or {}
        audits.append(f"<li>{_e(name)}: audit {_e(verdicts)}"
                      + (f"; relayed under {len(consents['standing'])} standing consents"
                         if "standing" in consents else
                         f"; consents requested {consents['requested']}, granted "
                         f"{consents['granted']}" if consents else "")
                      + ("" if fed.get("delivered") else
                         ' <span class="deny">(not everything queued was delivered)</span>')
                      + "</li>")
    return ("<h2>Through the real federations</h2><p>The same launch, once per regime, "
            "through three node processes (JPN, KOR, USA) in the regime's topology: "
            "<code>none</code> (no partners), <code>hub</code> (JPN and KOR only through the "
            "USA node, which relays under TISA with the originator's consent), "
            "<code>direct</code> (the 2016 GSOMIA), <code>trilateral</code> (labels pinned to "
            "the 2023 mechanism). Each party's radars and pre-launch indicators were played "
            "into its own node, faster than real time; each node's warning centre tracked, "
            "predicted and warned from what the node held, and the release policy and the "
            "exchange decided what crossed. A node's own times are the flight seconds its "
            "centre stamped its outputs with; a partner's item counts from when the node "
            "stored it.</p>"
            "<table><tr><th>regime</th><th>party</th><th>model: first warning (s)</th>"
            "<th>node: its first warning (s)</th><th>that warning</th>"
            "<th>node held a track (s)</th><th>node held an impact prediction (s)</th>"
            "<th>items from partners</th></tr>" + "".join(rows) + "</table>"
            "<h3>Items delivered on each link</h3><table><tr><th>regime</th>"
            "<th>sender → recipient</th><th>items</th>"
            "<th>latency p50 / p99 (ms), publish to signed receipt</th></tr>"
            + "".join(links) + "</table><ul>" + "".join(audits) + "</ul>")


def _agreements_section(story: Mapping[str, Any]) -> str:
    states = story.get("states", {})
    if not states:
        return "<h2>Agreements</h2><p>No agreement states in this story.</p>"
    dates = list(next(iter(states.values())))
    head = "".join(f"<th>{_e(a)}</th>" for a in states)
    rows = []
    for d in dates:
        cells = []
        for by_date in states.values():
            s = by_date[d]
            cells.append(f"<td>{_e(s['state'])}"
                         + (f" (ends {_e(s['terminates_on'])})" if s.get("terminates_on")
                            else "") + "</td>")
        rows.append(f"<tr><td>{_e(d)}</td>{''.join(cells)}</tr>")
    decisions = []
    for case in story.get("decisions", []):
        d, r = case["decision"], case["request"]
        verdict = ('<span class="permit">PERMIT</span>' if d["permit"]
                   else '<span class="deny">DENY</span>')
        decisions.append(f"<tr><td>{verdict}</td><td>{_e(case['case'])}</td>"
                         f"<td>{_e(r['sender'])} → {_e(r['recipient'])}</td>"
                         f"<td>{_e(d['agreement'] or '')}</td>"
                         f"<td>{_e('; '.join(d['reasons']))}</td></tr>")
    return ("<h2>Agreements and their state on key dates</h2><table><tr><th>date</th>"
            + head + "</tr>" + "".join(rows) + "</table><h3>Release decisions</h3>"
            "<table><tr><th></th><th>case</th><th>from → to</th><th>agreement</th>"
            "<th>reasons</th></tr>" + "".join(decisions) + "</table>")


def render(story: Mapping[str, Any]) -> str:
    """The report page for a story: ``{"states", "decisions", "warning", "custody"}``, and
    ``"federations"`` when ``gsomia demo`` ran the launch through real nodes."""
    w = story.get("warning")
    body = []
    title = "gsomia report"
    if w:
        launch = w["launch"]
        title = f"gsomia report: {launch['missile_name']} {launch['local_date']}"
        body.append(f"<p>{_e(launch['missile_name'])} launched from "
                    f"{_e(launch['facility_name'])} on {_e(launch['local_date'])} (local), "
                    f"flight {w['flight_time_s']:.0f} s, replayed under the regimes "
                    f"{_e(', '.join(w['regimes']))}.</p>")
        if "map" in w:
            body.append(_map_section(w["map"], list(w["regimes"]), float(w["flight_time_s"])))
        body.append(_timeline_section(w))
    if story.get("federations"):
        body.append(_federations_section(story["federations"]))
    if story.get("custody"):
        body.append(_custody_section(story["custody"]))
    body.append(_agreements_section(story))
    data = json.dumps({"warning": {k: v for k, v in (w or {}).items() if k != "map"}},
                      ensure_ascii=False).replace("</", "<\\/")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
            f'</title><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>" + "".join(body)
            + f'<script type="application/json" id="story">{data}</script>'
            f"<script>{_JS}</script></body></html>")


def write_report(story: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` for the story; the custody paths (under the shipped
    agreements) are added if missing."""
    if "custody" not in story:
        from gsomia.shell.catalogue import load_catalogue

        story = {**story, "custody": custody_paths(load_catalogue(()))}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(story), encoding="utf-8")
    tmp.replace(path)
    return path
