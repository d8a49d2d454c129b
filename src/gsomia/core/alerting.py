"""Warnings out: what a node holds of warnings, as CAP 1.2 alerts and as GeoJSON.

A node holds warnings as STIX notes (``x_gsomia_warning`` from its warning centre, or, stored
by earlier versions whose demo published the model's replay, ``x_gsomia_replay`` of category
``warning``), next to flight paths and impact predictions. This module
turns the ones a reader may see (the shell decides which, by the access rule) into:

- :class:`Message`: one CAP message per warning message, threaded per party, launch and
  level: the first is an ``Alert``, later ones an ``Update`` (or a ``Cancel`` when a
  retraction leaves nothing of that level standing) whose ``references`` name the earlier
  messages of the thread. A thread ends when nothing of its level stands; the next message
  starts a new one. Threads are drawn only over what the reader was given, so a reference
  never names a message the reader may not see.
- :func:`cap_alert`: the CAP 1.2 ``<alert>`` (OASIS Common Alerting Protocol, the format
  of public warning systems), built with ``xml.etree``. It is classified: ``scope`` is
  ``Restricted`` and ``restriction`` carries the item's marking, national and English.
  A model replay stored by an earlier version (it carries its launch, regime and seed) is an
  ``Exercise``; the warning centre's warnings are ``Actual``, also when the sensors were
  played into it (``gsomia replay``, the dashboard's replay, the demo).
- :func:`feature_collection`: RFC 7946 GeoJSON of tracks, impact ellipses and warned
  regions (coarse outlines of the shipped geography), each feature with its marking.

Coordinates: WGS-84; CAP writes "lat,lon", GeoJSON [lon, lat]; longitudes in [-180, 180).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gsomia.core.errors import MalformedInput
from gsomia.core.stix import extension_property_problem
from gsomia.core.tracking.geography import Atlas, ellipse_points
from gsomia.core.types import Party, instant
from gsomia.core.warning import Warning

__all__ = ["CAP_MEDIA", "CAP_NS", "GEOJSON_MEDIA", "Held", "Holdings", "ImpactRecord",
           "Marking", "Message", "Outline", "Run", "TrackRecord", "WarningRecord",
           "cap_alert", "cap_bytes", "feature_collection", "index_entry", "messages",
           "outlines", "read_holdings", "record_of", "sender_of", "warning_of"]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MEDIA = "application/cap+xml"
GEOJSON_MEDIA = "application/geo+json"

_MsgType = Literal["Alert", "Update", "Cancel"]
Outline = tuple[tuple[tuple[float, float], ...], ...]
"""A region's coarse outline: closed rings of (lon, lat)."""

# XML 1.0 forbids these characters in text: one in a reason would make the alert unreadable.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# CAP: identifiers, senders and incidents hold no spaces, commas, '<' or '&'.
_NOT_TOKEN = re.compile(r"[\s,<&]+")
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Marking:
    """The item's label as people read it: in its national form and in English."""

    national: str
    english: str

    def to_json(self) -> dict[str, str]:
        return {"marking": self.national, "marking_en": self.english}


@dataclass(frozen=True, slots=True)
class Held:
    """One object a reader may read, as the node holds it."""

    item_id: str
    obj: Mapping[str, Any]
    marking: Marking
    originator: Party


@dataclass(frozen=True, slots=True)
class Run:
    """The replayed launch an item belongs to (``gsomia replay``/``demo``)."""

    launch: str
    regime: str
    seed: int

    @property
    def tag(self) -> str:
        return _token(f"{self.launch}/{self.regime}/{self.seed}")


@dataclass(frozen=True, slots=True)
class WarningRecord:
    """One warning message as held: the core's :class:`Warning` with when it was sent, its
    item, marking, and the launch it replays (None: a live warning, CAP ``Actual``)."""

    item_id: str
    sent: datetime
    marking: Marking
    warning: Warning
    run: Run | None
    # The impact ellipse's shape from the track's impact prediction, when one is held.
    semi_minor_km: float | None = None
    orientation_deg: float | None = None

    @property
    def exercise(self) -> bool:
        return self.run is not None


@dataclass(frozen=True, slots=True)
class TrackRecord:
    item_id: str
    sent: datetime
    marking: Marking
    party: Party
    run: Run | None
    points: tuple[tuple[float, float], ...]      # (lat, lon)


@dataclass(frozen=True, slots=True)
class ImpactRecord:
    item_id: str
    sent: datetime
    marking: Marking
    party: Party
    run: Run | None
    track: str
    at_s: float
    lat: float
    lon: float
    semi_major_km: float
    semi_minor_km: float
    orientation_deg: float
    time_to_impact_s: float


@dataclass(frozen=True, slots=True)
class Holdings:
    warnings: tuple[WarningRecord, ...]
    tracks: tuple[TrackRecord, ...]
    impacts: tuple[ImpactRecord, ...]
    skipped: int = 0      # objects whose warning properties do not fit their schema


@dataclass(frozen=True, slots=True)
class Message:
    """One CAP message: a warning record in its thread."""

    record: WarningRecord
    identifier: str
    sender: str
    msg_type: _MsgType
    holder: Party
    references: tuple[tuple[str, str, datetime], ...] = field(default=())
    thread: str = ""

    @property
    def status(self) -> str:
        return "Exercise" if self.record.exercise else "Actual"


# ---- reading what the node holds -----------------------------------------------------------
def record_of(w: Warning, *, item_id: str, sent: datetime, marking: Marking,
              run: Run | None) -> WarningRecord:
    """A warning of the core's warning centre as a record to send out."""
    return WarningRecord(item_id, instant(sent), marking, w, run)


def read_holdings(held: Iterable[Held]) -> Holdings:
    """The warnings, flight paths and impact predictions among ``held``; an object whose
    properties do not fit their schema is counted in ``skipped`` and left out."""
    warnings: list[WarningRecord] = []
    tracks: list[TrackRecord] = []
    impacts: list[ImpactRecord] = []
    skipped = 0
    for h in held:
        found = _payload(h.obj)
        if found is None:
            continue
        kind, data = found
        if extension_property_problem(f"x_gsomia_{kind}", data) is not None:
            skipped += 1
            continue
        try:
            sent = instant(str(h.obj.get("created", "")), where=f"{h.item_id}.created")
        except MalformedInput:
            skipped += 1
            continue
        # A node's own warning centre names no launch: what it holds is live (CAP Actual).
        run = (Run(str(data["launch"]), str(data["regime"]), int(data["seed"]))
               if all(data.get(k) is not None for k in ("launch", "regime", "seed")) else None)
        if kind == "warning":
            warnings.append(WarningRecord(h.item_id, sent, h.marking, warning_of(data), run))
        elif kind == "track":
            tracks.append(TrackRecord(h.item_id, sent, h.marking, h.originator, run,
                                      tuple((float(a), float(o)) for a, o in data["points"])))
        else:
            e = data["ellipse"]
            impacts.append(ImpactRecord(
                h.item_id, sent, h.marking, h.originator, run, str(data["track"]),
                float(data["at_s"]), float(data["lat_deg"]), float(data["lon_deg"]),
                float(e["semi_major_km"]), float(e["semi_minor_km"]),
                float(e["orientation_deg"]), float(data["time"]) - float(data["at_s"])))
    return Holdings(tuple(_with_ellipses(warnings, impacts)), tuple(tracks), tuple(impacts),
                    skipped)


_CATEGORY = {"warning": "warning", "flight-path": "track", "impact-prediction": "ipp"}


def _payload(obj: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(kind, the properties in the form of their ``x_gsomia_*`` schema), or None."""
    for kind in ("warning", "track", "ipp"):
        value = obj.get(f"x_gsomia_{kind}")
        if value is not None:
            return kind, dict(value) if isinstance(value, Mapping) else {}
    replay = obj.get("x_gsomia_replay")
    if not isinstance(replay, Mapping) or not isinstance(replay.get("data"), Mapping):
        return None
    found = _CATEGORY.get(str(replay.get("category")))
    if found is None:
        return None
    run = {k: replay.get(k) for k in ("launch", "regime", "seed")}
    data = dict(replay["data"])
    if found == "ipp":
        data.setdefault("at_s", replay.get("at_s"))
    return found, {**data, **run}


def warning_of(data: Mapping[str, Any]) -> Warning:
    """A warning from its JSON (:meth:`Warning.to_json`, with its ``party``)."""

    def num(name: str) -> float | None:
        v = data.get(name)
        return None if v is None else float(v)

    return Warning(str(data["party"]), data["action"], float(data["at_s"]), str(data["track"]),
                   tuple(str(r) for r in data["regions"]), data["level"], num("impact_lat"),
                   num("impact_lon"), num("semi_major_km"), num("time_to_impact_s"),
                   str(data["reason"]), tuple(str(r) for r in data["active"]))


def _with_ellipses(warnings: list[WarningRecord], impacts: list[ImpactRecord]
                   ) -> list[WarningRecord]:
    """Each warning with the shape of its track's latest impact prediction at its time."""
    by_track: dict[tuple[Run | None, str], list[ImpactRecord]] = {}
    for i in impacts:
        by_track.setdefault((i.run, i.track), []).append(i)
    out = []
    for r in warnings:
        w = r.warning
        found = [i for i in by_track.get((r.run, w.track), []) if i.at_s <= w.at_s]
        if w.impact_lat is not None and found:
            best = max(found, key=lambda i: i.at_s)
            r = replace(r, semi_minor_km=best.semi_minor_km,
                        orientation_deg=best.orientation_deg)
        out.append(r)
    return out


# ---- threads -------------------------------------------------------------------------------
def sender_of(holder: Party) -> str:
    """The CAP sender of a node: globally unique, no spaces or commas."""
    return f"{holder.lower()}.node.gsomia.invalid"


def messages(records: Iterable[WarningRecord], holder: Party) -> list[Message]:
    """Every record as a CAP message of its thread, oldest first."""
    sender = sender_of(holder)
    ordered = sorted(records, key=lambda r: (r.sent, r.warning.at_s, r.item_id))
    open_threads: dict[tuple[Any, ...], list[Message]] = {}
    out: list[Message] = []
    for r in ordered:
        w = r.warning
        key = (w.party, r.run, w.level)
        earlier = open_threads.get(key, [])
        refs = tuple((m.sender, m.identifier, m.record.sent) for m in earlier)
        if not refs:
            kind: _MsgType = "Alert"
        elif w.action == "retracted" and not w.active:
            kind = "Cancel"
        else:
            kind = "Update"
        thread = earlier[0].identifier if earlier else _identifier(r.item_id)
        m = Message(r, _identifier(r.item_id), sender, kind, holder, refs, thread)
        out.append(m)
        if w.active:
            open_threads[key] = [*earlier, m]
        else:
            open_threads.pop(key, None)
    return out


def _identifier(item_id: str) -> str:
    return _token(f"gsomia-{item_id}")


def _token(text: str) -> str:
    return _NOT_TOKEN.sub("_", _NOT_XML.sub("", text))[:200] or "_"


# ---- CAP 1.2 -------------------------------------------------------------------------------
_EVENT = {"alert": "Ballistic missile: land alert",
          "notice": "Ballistic missile: impact possible in the exclusive economic zone",
          "information": "Ballistic missile: impact on the high seas"}
_STANDING = {  # level -> (responseType, urgency, severity)
    "alert": ("Shelter", "Immediate", "Extreme"),
    "notice": ("Monitor", "Expected", "Severe"),
    "information": ("Monitor", "Future", "Minor")}
_INSTRUCTION = {
    "alert": "Take shelter at once in a sturdy building or underground; outdoors, get down "
             "and protect your head. Stay away from windows. Follow the authorities' "
             "instructions.",
    "notice": "Ships and aircraft in the zone: keep clear of the impact area and follow the "
              "coast guard's and the aviation authority's notices. Do not approach debris.",
    "information": "No action needed on land. Ships and aircraft near the impact area: "
                   "follow the authorities' notices."}
_ALL_CLEAR = ("The missile no longer threatens these regions. Do not approach fallen "
              "objects; report them to the police or the coast guard.")


def _cap_time(at: datetime) -> str:
    # CAP wants four-digit years and a numeric zone; strftime's %Y does not pad years < 1000.
    u = at.astimezone(UTC)
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}"
            f"T{u.hour:02d}:{u.minute:02d}:{u.second:02d}+00:00")


def _later(at: datetime, seconds: float) -> datetime:
    try:
        return min(at + timedelta(seconds=max(seconds, 0.0)), _LATEST)
    except OverflowError:
        return _LATEST


def _text(value: object) -> str:
    return _NOT_XML.sub("", str(value))


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    e = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        e.text = _text(text)
    return e


def _lon(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


def _lon4(lon: float) -> float:
    """``lon`` in [-180, 180) to four decimals: wrapped after rounding too, since a longitude
    just under 180 rounds up to 180.0, outside the range (Hypothesis found 179.99996)."""
    rounded = round(_lon(lon), 4)
    return -180.0 if rounded >= 180.0 else rounded


def _pairs(ring: Sequence[tuple[float, float]]) -> str:
    """A CAP polygon: "lat,lon" pairs, the first repeated last."""
    return " ".join(f"{lat:.4f},{lon:.4f}" for lon, lat in ring)


def _regions_shown(m: Message) -> tuple[str, ...]:
    """The regions a message's areas name: what stands after it, or what it withdrew."""
    w = m.record.warning
    if w.active:
        return w.active
    return w.regions


def _expires_of(m: Message) -> datetime:
    """When a consumer may drop the message: ten minutes after the predicted impact (or
    after it was sent, when no impact time is known or the warning ended)."""
    w = m.record.warning
    standing = w.action in ("issued", "updated") or bool(w.active)
    tti = w.time_to_impact_s if standing and w.time_to_impact_s is not None else 0.0
    return _later(m.record.sent, tti + 600.0)


def cap_alert(m: Message, outlines_by_name: Mapping[str, Outline] | None = None
              ) -> ET.Element:
    """The CAP 1.2 ``<alert>`` of one message (``outlines_by_name``: region outlines for
    the areas' polygons; a region without one is named only)."""
    r, w = m.record, m.record.warning
    shapes = outlines_by_name or {}
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", m.identifier)
    _sub(alert, "sender", m.sender)
    _sub(alert, "sent", _cap_time(r.sent))
    _sub(alert, "status", m.status)
    _sub(alert, "msgType", m.msg_type)
    _sub(alert, "source", f"{w.party} missile early warning")
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction",
         f"Classified: {r.marking.national} ({r.marking.english}). Release only as the "
         "security agreements in force allow; read only with the clearance and "
         "need-to-know the marking requires.")
    _sub(alert, "code", "GSOMIA")
    if r.run is not None:
        _sub(alert, "note", f"Exercise: replay of the launch {r.run.launch} under the "
                            f"{r.run.regime} sharing regime (seed {r.run.seed}); not a real "
                            "warning.")
    if m.references:
        _sub(alert, "references", " ".join(f"{s},{i},{_cap_time(t)}"
                                           for s, i, t in m.references))
    if r.run is not None:
        _sub(alert, "incidents", r.run.tag)
    info = _sub(alert, "info")
    _sub(info, "language", "en-US")
    _sub(info, "category", "Safety")
    _sub(info, "category", "Security")
    _sub(info, "event", _EVENT[w.level])
    ended = w.action in ("passed", "retracted") and not w.active
    response, urgency, severity = _STANDING[w.level]
    if ended:
        response, urgency, severity = "AllClear", "Past", "Minor"
    _sub(info, "responseType", response)
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", {"passed": "Observed", "retracted": "Unlikely"}.get(w.action,
                                                                               "Possible")
         if ended else "Possible")
    for code_name, code_value in (("gsomia-level", w.level), ("gsomia-action", w.action)):
        code = _sub(info, "eventCode")
        _sub(code, "valueName", code_name)
        _sub(code, "value", code_value)
    _sub(info, "effective", _cap_time(r.sent))
    if not ended:
        _sub(info, "onset", _cap_time(r.sent))
    _sub(info, "expires", _cap_time(_expires_of(m)))
    relayed = "" if w.party == m.holder else f", held at the {m.holder} node"
    _sub(info, "senderName", f"{w.party} missile early warning{relayed}")
    _sub(info, "headline", _headline(m)[:160])
    _sub(info, "description", _description(m))
    _sub(info, "instruction", _ALL_CLEAR if ended else _INSTRUCTION[w.level])
    for key, value in _parameters(m):
        p = _sub(info, "parameter")
        _sub(p, "valueName", key)
        _sub(p, "value", value)
    for region in _regions_shown(m):
        area = _sub(info, "area")
        _sub(area, "areaDesc", region)
        for outline in shapes.get(region, ()):
            _sub(area, "polygon", _pairs(outline))
    ellipse = _impact_ring(r)
    if ellipse is not None and not ended:
        area = _sub(info, "area")
        _sub(area, "areaDesc", "Predicted impact area")
        _sub(area, "polygon", _pairs(ellipse))
    elif w.impact_lat is not None and w.impact_lon is not None and not ended:
        area = _sub(info, "area")
        _sub(area, "areaDesc", "Predicted impact area")
        _sub(area, "circle", f"{w.impact_lat:.4f},{_lon(w.impact_lon):.4f} "
                             f"{max(w.semi_major_km or 0.0, 0.0):.1f}")
    return alert


def cap_bytes(m: Message, outlines_by_name: Mapping[str, Outline] | None = None) -> bytes:
    """The alert as an XML document (UTF-8, with its declaration)."""
    return bytes(ET.tostring(cap_alert(m, outlines_by_name), encoding="utf-8",
                             xml_declaration=True, default_namespace=CAP_NS))


_LEVEL_WORD = {"alert": "Missile alert", "notice": "Missile notice",
               "information": "Missile information"}


def _headline(m: Message) -> str:
    w = m.record.warning
    names = ", ".join(w.regions) or "no region"
    tti = "" if w.time_to_impact_s is None or w.action in ("passed", "retracted") else \
        f"; impact in {max(w.time_to_impact_s, 0.0):.0f} s"
    return _text(f"{_LEVEL_WORD[w.level]} {w.action}: {names}{tti}")


def _description(m: Message) -> str:
    w = m.record.warning
    lines = [f"{w.party} {w.level} {w.action} at T+{w.at_s:.0f} s (track {w.track}): "
             f"{', '.join(w.regions) or 'no region'}."]
    if w.reason:
        lines.append(f"Reason: {w.reason}.")
    lines.append(f"Still standing at this level: {', '.join(w.active) or 'none'}.")
    if w.impact_lat is not None and w.impact_lon is not None:
        lines.append(f"Predicted impact {w.impact_lat:.3f}, {_lon(w.impact_lon):.3f}"
                     + (f" within {w.semi_major_km:.0f} km" if w.semi_major_km is not None
                        else "")
                     + (f", {w.time_to_impact_s:.0f} s after this message."
                        if w.time_to_impact_s is not None else "."))
    return _text(" ".join(lines))


def _parameters(m: Message) -> list[tuple[str, str]]:
    r, w = m.record, m.record.warning
    out = [("marking", r.marking.national), ("marking-en", r.marking.english),
           ("party", w.party), ("level", w.level), ("action", w.action),
           ("regions", "; ".join(w.regions)), ("active", "; ".join(w.active)),
           ("track", w.track), ("seconds-after-launch", f"{w.at_s:.1f}")]
    if w.time_to_impact_s is not None:
        out.append(("time-to-impact-s", f"{w.time_to_impact_s:.1f}"))
    if r.run is not None:
        out += [("launch", r.run.launch), ("regime", r.run.regime), ("seed", str(r.run.seed))]
    return out


def _impact_ring(r: WarningRecord, n: int = 36) -> tuple[tuple[float, float], ...] | None:
    """The impact ellipse as a closed ring of (lon, lat), when its shape is known."""
    w = r.warning
    if (w.impact_lat is None or w.impact_lon is None or w.semi_major_km is None
            or r.semi_minor_km is None or r.orientation_deg is None):
        return None
    return _ellipse_ring(w.impact_lat, w.impact_lon, w.semi_major_km, r.semi_minor_km,
                        r.orientation_deg, n)


def _ellipse_ring(lat: float, lon: float, semi_major_km: float, semi_minor_km: float,
                 orientation_deg: float, n: int = 36) -> tuple[tuple[float, float], ...]:
    a = max(semi_major_km, 0.01) * 1e3
    b = max(min(semi_minor_km, semi_major_km), 0.01) * 1e3
    lats, lons = ellipse_points(lat, lon, a, b, orientation_deg, n=n, rings=1)
    pts = [(_lon4(float(o)), round(max(-90.0, min(90.0, float(t))), 4))
           for t, o in zip(lats[:n], lons[:n], strict=True)]
    return (*pts, pts[0])


# ---- the index and GeoJSON -----------------------------------------------------------------
def index_entry(m: Message) -> dict[str, Any]:
    """One message as the JSON index lists it."""
    r, w = m.record, m.record.warning
    return {"identifier": m.identifier, "sender": m.sender, "sent": _cap_time(r.sent),
            "status": m.status, "msgType": m.msg_type, "thread": m.thread,
            "references": [i for _, i, _ in m.references], "expires": _cap_time(_expires_of(m)),
            "item": r.item_id, **r.marking.to_json(), **w.to_json(),
            "run": None if r.run is None else {"launch": r.run.launch, "regime": r.run.regime,
                                               "seed": r.run.seed},
            "headline": _headline(m)}


def outlines(atlas: Atlas, *, max_rings: int = 8, max_vertices: int = 40
             ) -> dict[str, Outline]:
    """Each region's coarse outline, by name: its largest rings, each thinned to at most
    ``max_vertices`` vertices. For drawing and for a receiver's map; warnings are decided
    on the full geography."""
    out: dict[str, Outline] = {}
    for region in atlas.regions:
        rings = []
        for ring in region.rings:
            pts = [(float(x), float(y)) for x, y in ring[:, :2]]
            if len(pts) > 1 and pts[0] == pts[-1]:
                pts.pop()
            if len(pts) < 3:
                continue
            step = max(1, math.ceil(len(pts) / max_vertices))
            thin = pts[::step]
            if len(thin) < 3:
                thin = pts[:3]
            closed = tuple((_lon4(x), round(y, 4)) for x, y in thin)
            rings.append((_area(pts), (*closed, closed[0])))
        rings.sort(key=lambda t: -t[0])
        out[region.name] = tuple(r for _, r in rings[:max_rings])
    return out


def _area(pts: Sequence[tuple[float, float]]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1)
                   in zip(pts, [*pts[1:], pts[0]], strict=True))) / 2.0


def feature_collection(msgs: Sequence[Message], holdings: Holdings,
                       outlines_by_name: Mapping[str, Outline]) -> dict[str, Any]:
    """GeoJSON (RFC 7946) of what the reader was given: flight paths (LineString), impact
    ellipses of predictions and warnings (Polygon), and the regions each warning thread
    named, with the thread's latest message about them (MultiPolygon; null geometry for
    a region without an outline, such as the high seas)."""
    features: list[dict[str, Any]] = []
    for t in holdings.tracks:
        coords = [[_lon4(lon), round(lat, 4)] for lat, lon in t.points]
        features.append(_feature({"type": "LineString", "coordinates": coords}, {
            "kind": "track", "item": t.item_id, "party": t.party, "sent": _cap_time(t.sent),
            **_run_json(t.run), **t.marking.to_json()}))
    for i in holdings.impacts:
        ring = _ellipse_ring(i.lat, i.lon, i.semi_major_km, i.semi_minor_km, i.orientation_deg)
        features.append(_feature({"type": "Polygon", "coordinates": [[list(p) for p in ring]]}, {
            "kind": "impact-ellipse", "item": i.item_id, "party": i.party, "track": i.track,
            "sent": _cap_time(i.sent), "seconds_after_launch": round(i.at_s, 1),
            "time_to_impact_s": round(i.time_to_impact_s, 1),
            "semi_major_km": i.semi_major_km, "semi_minor_km": i.semi_minor_km,
            **_run_json(i.run), **i.marking.to_json()}))
    latest: dict[tuple[str, str], Message] = {}
    for m in msgs:
        w = m.record.warning
        common = {"identifier": m.identifier, "thread": m.thread, "party": w.party,
                  "level": w.level, "action": w.action, "msgType": m.msg_type,
                  "status": m.status, "sent": _cap_time(m.record.sent),
                  "expires": _cap_time(_expires_of(m)),
                  "time_to_impact_s": w.time_to_impact_s, **_run_json(m.record.run),
                  **m.record.marking.to_json()}
        area = _impact_ring(m.record)
        if area is not None:
            features.append(_feature({"type": "Polygon",
                                      "coordinates": [[list(p) for p in area]]},
                                     {"kind": "warning-impact-area", **common}))
        for name in (*w.regions, *w.active):
            latest[(m.thread, name)] = m
    for (_, name), m in sorted(latest.items(), key=lambda kv: (kv[1].record.sent, kv[0])):
        w = m.record.warning
        shape = outlines_by_name.get(name)
        geometry = None if not shape else {
            "type": "MultiPolygon", "coordinates": [[[list(p) for p in ring]] for ring in shape]}
        features.append(_feature(geometry, {
            "kind": "warned-area", "region": name, "standing": name in w.active,
            "reason": w.reason, "identifier": m.identifier, "thread": m.thread,
            "party": w.party, "level": w.level, "action": w.action, "msgType": m.msg_type,
            "status": m.status, "sent": _cap_time(m.record.sent),
            "expires": _cap_time(_expires_of(m)), "time_to_impact_s": w.time_to_impact_s,
            **_run_json(m.record.run), **m.record.marking.to_json()}))
    return {"type": "FeatureCollection", "features": features}


def _feature(geometry: dict[str, Any] | None, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _run_json(run: Run | None) -> dict[str, Any]:
    return {"exercise": run is not None,
            "launch": None if run is None else run.launch,
            "regime": None if run is None else run.regime}
