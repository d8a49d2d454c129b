"""STIX 2.1 objects in and out: security labels as extension-based marking definitions.

A label travels as a ``marking-definition`` that carries no ``definition_type`` but a
property extension (STIX 2.1 §7.3) defined by :data:`EXTENSION_DEFINITION`; the item points
at it through ``object_marking_refs``. The marking's id is derived from the canonical label,
so equal labels give the same marking everywhere.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gsomia.core.errors import MalformedInput
from gsomia.core.labels import LabelVocabulary, SecurityLabel
from gsomia.core.types import iso

__all__ = [
    "EXTENSION_DEFINITION", "EXTENSION_ID", "EXTENSION_PROPERTY_SCHEMAS", "FEED_PASSES",
    "IDENTITY", "IDENTITY_ID", "NODE_MADE", "NODE_MADE_KINDS", "SPEC_VERSION", "apply_marking",
    "check_extension_properties", "check_label_marking", "check_spec_version",
    "check_warning_party", "extension_property_problem", "is_label_marking",
    "label_from_marking", "label_marking", "marking_id", "node_made", "printed_marking",
    "same_label",
]

_NAMESPACE = uuid.UUID("6f1d0c9e-8f8e-4b0f-9b6c-5c0a1e6f4d21")
IDENTITY_ID = "identity--" + str(uuid.uuid5(_NAMESPACE, "gsomia"))
EXTENSION_ID = "extension-definition--" + str(uuid.uuid5(_NAMESPACE, "security-label/v1"))
_FIXED = "2026-01-01T00:00:00.000Z"

IDENTITY: dict[str, Any] = {
    "type": "identity", "spec_version": "2.1", "id": IDENTITY_ID,
    "created": _FIXED, "modified": _FIXED, "name": "gsomia", "identity_class": "system",
}

EXTENSION_DEFINITION: dict[str, Any] = {
    "type": "extension-definition", "spec_version": "2.1", "id": EXTENSION_ID,
    "created_by_ref": IDENTITY_ID, "created": _FIXED, "modified": _FIXED,
    "name": "gsomia security label",
    "description": "A confidentiality label modelled on NATO STANAG 4774: originator, national "
                   "level and scheme, releasable-to trigraphs, purpose, caveats, policy.",
    "schema": "https://gsomia.invalid/schemas/security-label-v1.json",
    "version": "1.0.0",
    "extension_types": ["property-extension"],
}


SPEC_VERSION = "2.1"


def check_spec_version(obj: Mapping[str, Any], *, where: str) -> None:
    """MalformedInput unless ``obj`` is a STIX 2.1 object.

    A node serves everything it holds as STIX 2.1, so an object of another version would be
    served as what it is not. ``spec_version`` must say "2.1"; only a cyber-observable (no
    ``created``) may leave it out, since 2.1 makes that its default. A STIX 2.0 object
    carries none, and has ``created``: it is refused.
    """
    version = obj.get("spec_version")
    if version is None and "spec_version" not in obj and "created" not in obj:
        return
    if version != SPEC_VERSION:
        shown = "no spec_version" if "spec_version" not in obj else \
            f"spec_version {version!r}"
        raise MalformedInput(f"has {shown}; this node holds STIX 2.1 objects only",
                             where=f"{where}.spec_version",
                             expected='"spec_version": "2.1" (convert the object to STIX 2.1)')


def label_marking(label: SecurityLabel, english: str, *, created: datetime) -> dict[str, Any]:
    """The marking-definition that carries ``label`` (``english``: its English marking)."""
    body = label.to_json()
    key = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return {
        "type": "marking-definition", "spec_version": "2.1",
        "id": "marking-definition--" + str(uuid.uuid5(_NAMESPACE, key)),
        "created_by_ref": IDENTITY_ID, "created": iso(created),
        "name": english,
        # STIX forbids empty lists, so a label without caveats simply has none.
        "extensions": {EXTENSION_ID: {"extension_type": "property-extension",
                                      **{k: v for k, v in body.items() if v != []}}},
    }


def marking_id(label: SecurityLabel) -> str:
    """The id of the marking-definition that carries ``label``: it depends on the label's
    values only, so a client may compute it and a marking reads back unchanged."""
    return str(label_marking(label, "", created=_MARKING_CREATED)["id"])


_MARKING_CREATED = datetime.fromisoformat(_FIXED.replace("Z", "+00:00"))


def printed_marking(label: SecurityLabel, english: str) -> dict[str, Any]:
    """The marking-definition a script posts for ``label`` (``gsomia label --json``, a
    collection's label): its id from the label's values and a fixed ``created``, so the same
    label prints the same object every time and a second post of it is "already held"."""
    return label_marking(label, english, created=_MARKING_CREATED)


def is_label_marking(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is a marking-definition carrying the gsomia label extension."""
    ext = obj.get("extensions")
    return obj.get("type") == "marking-definition" and isinstance(ext, Mapping) \
        and EXTENSION_ID in ext


def same_label(a: SecurityLabel, b: SecurityLabel) -> bool:
    """Equal in every value a decision reads (``created`` is when it was bound, not what)."""
    return a.to_json() | {"created": None} == b.to_json() | {"created": None}


def check_label_marking(obj: Mapping[str, Any], label: SecurityLabel,
                        known: LabelVocabulary, *, where: str) -> None:
    """MalformedInput unless ``obj`` is the marking-definition of ``label`` itself, with the
    id its label gives: the only marking-definition a node keeps as an object, under the
    label it carries (so only those who may see that label see it)."""
    carried = label_from_marking(obj, known, where=where)
    if obj.get("id") != marking_id(carried):
        raise MalformedInput("its id is not the one its label gives", where=f"{where}.id",
                             expected=marking_id(carried))
    if not same_label(carried, label):
        raise MalformedInput("is kept under the label it carries, not another",
                             where=where, expected="the label of its own extension")


def label_from_marking(marking: Mapping[str, Any], known: LabelVocabulary, *,
                       where: str = "marking") -> SecurityLabel:
    """The label a gsomia marking-definition carries, every value known to ``known``;
    MalformedInput for anything else."""
    if marking.get("type") != "marking-definition":
        raise MalformedInput("not a marking-definition", where=where)
    extensions = marking.get("extensions")
    ext = extensions.get(EXTENSION_ID) if isinstance(extensions, Mapping) else None
    if not isinstance(ext, Mapping):
        raise MalformedInput("carries no gsomia security label extension", where=where,
                             expected=f"extensions.{EXTENSION_ID}")
    body = {k: v for k, v in ext.items() if k != "extension_type"}
    return SecurityLabel.from_json(body, known, where=f"{where}.extensions.{EXTENSION_ID}")


def apply_marking(obj: Mapping[str, Any], marking: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` that references ``marking`` (and no other gsomia label marking)."""
    refs = [r for r in obj.get("object_marking_refs", []) if r != marking["id"]]
    return {**obj, "object_marking_refs": [*refs, marking["id"]]}


# ---- the application's extension properties -----------------------------------------------
# What the node's own tools publish as top-level ``x_gsomia_*`` properties (STIX 2.1 §11.1
# custom properties), each with a JSON Schema (2020-12; only the keywords
# :func:`extension_property_problem` checks). Every ingest path (TAXII, the command line,
# the dashboard's replay, items delivered by partners) refuses an object whose property does
# not fit, so nothing downstream (the dashboard's map, the report) meets a malformed one.

_NUMBER = {"type": "number", "minimum": -1e9, "maximum": 1e9}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
_RUN = {"launch": _TEXT,
        "regime": {"enum": ["none", "hub", "direct", "trilateral"]},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}}
_LAT = {"type": "number", "minimum": -90, "maximum": 90}
_LON = {"type": "number", "minimum": -180, "maximum": 360}
_KM = {"type": "number", "minimum": 0, "maximum": 40_075}


def _schema(title: str, properties: dict[str, Any],
            optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
            "type": "object", "required": sorted(set(properties) - optional),
            "properties": properties}


# A node's own warning centre (gsomia.shell.warning_centre) replays no launch: its items
# name none, and are CAP ``Actual``; the replay's carry the run they belong to.
_LIVE = frozenset(_RUN)


EXTENSION_PROPERTY_SCHEMAS: dict[str, dict[str, Any]] = {
    "x_gsomia_track": _schema("A flight path: ground track points [lat, lon] in degrees", {
        **_RUN,
        "points": {"type": "array", "minItems": 2, "maxItems": 10_000, "items": {
            "type": "array", "minItems": 2, "maxItems": 2,
            "prefixItems": [_LAT, _LON]}}}, _LIVE),
    "x_gsomia_ipp": _schema("An impact point prediction with its error ellipse", {
        **_RUN, "at_s": _NUMBER, "track": _TEXT, "lat_deg": _LAT, "lon_deg": _LON,
        "time": _NUMBER, "time_sigma_s": {"type": "number", "minimum": 0, "maximum": 1e9},
        "ellipse": {"type": "object",
                    "required": ["orientation_deg", "semi_major_km", "semi_minor_km", "sigma"],
                    "properties": {"semi_major_km": _KM, "semi_minor_km": _KM,
                                   "orientation_deg": {"type": "number", "minimum": -360,
                                                       "maximum": 360},
                                   "sigma": {"type": "number", "minimum": 0,
                                             "maximum": 100}}}}, _LIVE),
    "x_gsomia_warning": _schema("A missile warning issued, updated, passed or retracted", {
        **_RUN, "party": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "action": {"enum": ["issued", "updated", "passed", "retracted"]},
        "at_s": _NUMBER, "track": _TEXT,
        "level": {"enum": ["alert", "notice", "information"]},
        "regions": {"type": "array", "maxItems": 200, "items": _TEXT},
        # the regions of this level still standing after the message
        "active": {"type": "array", "maxItems": 200, "items": _TEXT},
        "impact_lat": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
        "impact_lon": {"type": ["number", "null"], "minimum": -180, "maximum": 360},
        "semi_major_km": {"type": ["number", "null"], "minimum": 0, "maximum": 40_075},
        "time_to_impact_s": {"type": ["number", "null"], "minimum": -1e9, "maximum": 1e9},
        "reason": {"type": "string", "maxLength": 2000}}, _LIVE),
    "x_gsomia_replay": _schema("An item of a replayed launch (gsomia demo)", {
        **_RUN, "at_s": _NUMBER, "category": _TEXT, "data": {"type": "object"}}),
    # A radar's measurements as its owner's node shares them: each as range, azimuth and
    # elevation (degrees) from a public reference point with a full covariance, so that the
    # sensor's site (labelled apart, owner only) is not in the report.
    "x_gsomia_sensor_report": _schema("Sensor measurements of a missile (gsomia sensors)", {
        "sensor": _TEXT, "epoch": {"type": "string", "minLength": 20, "maxLength": 40},
        "reference": {"type": "array", "minItems": 3, "maxItems": 3,
                      "prefixItems": [_LAT, _LON, _NUMBER]},
        "t": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": _NUMBER},
        "z": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": {
            "type": "array", "minItems": 3, "maxItems": 3, "items": _NUMBER}},
        "cov": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": {
            "type": "array", "minItems": 6, "maxItems": 6, "items": _NUMBER}}}),
}


NODE_MADE = frozenset(EXTENSION_PROPERTY_SCHEMAS)
"""The properties only the node's own tools make: its warning centre (warnings, tracks,
impact predictions), its sensor intake (reports), the replays on its host. What carries them
drives the node's CAP alerts, its map and its tracker, so a person posting over TAXII makes
none, nor replaces an item that carries one (:class:`gsomia.service.taxii.TaxiiService`)."""


NODE_MADE_KINDS = frozenset({"warning", "sensor-report"})
"""The label categories of what only the node's own tools make (its warning centre, its sensor
intake): a person posting over TAXII labels nothing so. Tracks and predictions
(``flight-path``, ``impact-prediction``) are not among them: a national system shares those
over TAXII under the trilateral mechanism, which carries ``launch-point``, ``flight-path`` and
``impact-prediction``."""

FEED_PASSES = (frozenset({"warning"}), frozenset({"flight-path", "impact-prediction"}))
"""The label categories the warnings feed reads, one pass each (:mod:`gsomia.shell.
warnings_out`): warnings first, each pass bounded on its own, so that what a person may
label (tracks, predictions) never pushes a warning out of the feed."""


def node_made(obj: Mapping[str, Any]) -> str | None:
    """The first of :data:`NODE_MADE` that ``obj`` carries, or None."""
    if NODE_MADE.isdisjoint(obj):
        return None
    return min(k for k in obj if k in NODE_MADE)


def _problem(schema: Mapping[str, Any], value: Any, at: Callable[[], str]) -> str | None:
    """The first way ``value`` does not fit ``schema`` (the keywords used above), or None.
    ``at`` names where it is, made only when needed (a flight path has thousands of
    points)."""
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        if not any(_is(t, value) for t in allowed):
            return f"{at()}: {_shown(value)} is not {' or '.join(allowed)}"
    if "enum" in schema and not any(type(value) is type(e) and value == e
                                    for e in schema["enum"]):
        return f"{at()}: {_shown(value)} is not one of {', '.join(map(str, schema['enum']))}"
    kind = type(value)
    if kind is int or kind is float:
        if "minimum" in schema and value < schema["minimum"]:
            return f"{at()}: {value} is below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{at()}: {value} is above {schema['maximum']}"
    elif kind is str:
        if len(value) < schema.get("minLength", 0):
            return f"{at()}: is empty"
        if len(value) > schema.get("maxLength", len(value)):
            return f"{at()}: longer than {schema['maxLength']} characters"
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            return f"{at()}: {_shown(value)} does not match {schema['pattern']}"
    elif isinstance(value, Mapping):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{at()}.{name}: missing"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found = _problem(sub, value[name], _below(at, f".{name}"))
                if found:
                    return found
    elif kind is list:
        if len(value) < schema.get("minItems", 0):
            return f"{at()}: fewer than {schema['minItems']} entries"
        if len(value) > schema.get("maxItems", len(value)):
            return f"{at()}: more than {schema['maxItems']} entries"
        prefix = schema.get("prefixItems", ())
        rest = schema.get("items")
        if not prefix and rest is not None and rest.get("type") == "number" \
                and rest.keys() <= _BOUNDED_NUMBER:
            # A list of bounded numbers (a sensor report's, a track's): checked in one loop,
            # the first entry that fails named by the walk below, with its own message.
            low, high = rest.get("minimum"), rest.get("maximum")
            for i, entry in enumerate(value):
                kind = type(entry)
                if (kind is int or (kind is float and math.isfinite(entry))) \
                        and (low is None or entry >= low) and (high is None or entry <= high):
                    continue
                found = _problem(rest, entry, _below(at, f"[{i}]"))
                if found:
                    return found
            return None
        for i, entry in enumerate(value):
            sub = prefix[i] if i < len(prefix) else rest
            if sub is not None:
                found = _problem(sub, entry, _below(at, f"[{i}]"))
                if found:
                    return found
    return None


_BOUNDED_NUMBER = frozenset({"type", "minimum", "maximum"})


def _below(at: Callable[[], str], step: str) -> Callable[[], str]:
    return lambda: at() + step


_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "array": (list,),
                                       "null": (type(None),)}


def _is(kind: str, value: Any) -> bool:
    if kind == "number":
        return (type(value) is float and math.isfinite(value)) or type(value) is int
    if kind == "integer":
        return type(value) is int or (type(value) is float and value.is_integer())
    if kind == "object":
        return isinstance(value, Mapping)
    return type(value) in _TYPES.get(kind, ())


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def extension_property_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``name`` (an ``x_gsomia_*`` property), naming the field;
    None when it is valid."""
    schema = EXTENSION_PROPERTY_SCHEMAS.get(name)
    if schema is None:
        return (f"{name}: not a gsomia extension property (known: "
                f"{', '.join(sorted(EXTENSION_PROPERTY_SCHEMAS))})")
    return _problem(schema, value, lambda: name)


def check_warning_party(obj: Mapping[str, Any], originator: str, *,
                        where: str = "object") -> None:
    """MalformedInput if ``obj`` is a warning (``x_gsomia_warning``) of another party than
    its ``originator``: a party warns only for itself. A partner's warning naming this node's
    party would come out of this node's CAP feed and dashboard as this party's own."""
    warning = obj.get("x_gsomia_warning")
    party = warning.get("party") if isinstance(warning, Mapping) else None
    if party is not None and party != originator:
        raise MalformedInput(f"a warning of {_shown(party)} originated by {originator}",
                             where=f"{where}.x_gsomia_warning.party",
                             expected=f"{originator}: a party warns only for itself")


def check_extension_properties(obj: Mapping[str, Any], *, where: str = "object") -> None:
    """MalformedInput naming the field if one of ``obj``'s ``x_gsomia_*`` properties does not
    fit its schema (:data:`EXTENSION_PROPERTY_SCHEMAS`) or is not one of them."""
    # Most objects have none: one pass over the keys at C speed says so (a key that is not
    # text is let through to the exact test below).
    found = [k for k in obj if type(k) is not str or k.startswith("x_gsomia_")]
    if not found:
        return
    for name in sorted(k for k in found if isinstance(k, str) and k.startswith("x_gsomia_")):
        problem = extension_property_problem(name, obj[name])
        if problem is not None:
            field_name, _, what = problem.partition(": ")
            title = EXTENSION_PROPERTY_SCHEMAS.get(name, {}).get("title")
            raise MalformedInput(what, where=f"{where}.{field_name}",
                                 expected=f"{name}: {title}, as its JSON schema says" if title
                                 else "one of the gsomia extension properties")
