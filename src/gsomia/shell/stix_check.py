"""A fast STIX 2.1 check for ingest through the API: the same JSON schemas as
stix2-validator, compiled once (``jsonschema-rs``), plus its cheap "MUST" rules.

stix2-validator takes about 3-10 ms per object (it rebuilds its schema registry on every
call) and seconds to import, which caps TAXII ingest near 100 objects/s; this check costs
microseconds. It applies the schemas shipped inside the pinned stix2-validator 3.2.x (so both
agree on what a valid object is), checks that timestamps are real instants and ordered
(``modified`` ≥ ``created``, ``valid_until`` > ``valid_from``, …), that the id names the
type, and the pattern grammar of STIX indicators (stix2-patterns, one parse per pattern
shape: see :func:`pattern_shape`), formats (uri, email, idn-hostname) and every MUST rule
stix2-validator applies beyond the schemas (:func:`_must_problems`, with its own tables).
The node may refuse more than stix2-validator, never less: ``test_stix_equivalence`` checks
that on the test corpus and on Hypothesis-made objects, and the interop tests that
everything the API serves passes stix2-validator itself.
"""

from __future__ import annotations

import importlib.util
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import Any

from gsomia.core.errors import MalformedInput
from gsomia.core.taxii import timestamp

__all__ = ["check_stix", "pattern_shape"]

_BASE = "http://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/stix2.1/schemas/"
_ORDERED = (("created", "modified", "≥"), ("valid_from", "valid_until", ">"),
            ("first_seen", "last_seen", "≥"), ("first_observed", "last_observed", "≥"),
            ("start_time", "stop_time", ">"))


def _package() -> Path:
    # find_spec locates the package without importing it (its import costs seconds).
    spec = importlib.util.find_spec("stix2validator")
    if spec is None or not spec.submodule_search_locations:
        raise MalformedInput("stix2-validator is not installed", where="stix check",
                             expected="stix2-validator 3.2.x (its schemas are used)")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def _enums() -> Any:
    """stix2-validator's tables for its MUST rules (``v21/enums.py``: language codes, the
    timestamp properties of each type, observable types and properties, IANA media types
    and character sets from its own CSV files), loaded from that one file: it imports only
    csv, glob and os, where importing the package costs seconds."""
    path = _package() / "v21" / "enums.py"
    spec = importlib.util.spec_from_file_location("gsomia_stix2validator_enums", path)
    if spec is None or spec.loader is None:
        raise MalformedInput("stix2-validator's tables are missing", where=str(path),
                             expected="stix2-validator 3.2.x")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def _validators() -> tuple[dict[str, Any], Any, Any]:
    """The schemas of the object types by type name, and the validators of the common
    properties (a custom object's). A type's own validator is compiled when an object of
    that type first comes (:func:`_validator_of`): the 2.1 schemas are 57 types at ~2.5 ms of
    CPU each, which every node start paid (0.15 s, a sixth of it), while a node sees a
    handful of types."""
    import jsonschema_rs

    root = _package() / "schemas-2.1" / "schemas"
    docs: dict[str, Any] = {}
    for folder in ("common", "sdos", "sros", "observables"):
        for entry in (root / folder).iterdir():
            if entry.name.endswith(".json"):
                doc = json.loads(entry.read_text("utf-8"))
                docs[doc["$id"]] = doc
    registry = jsonschema_rs.Registry(list(docs.items()))
    # Formats too (uri, email, idn-hostname), as stix2-validator's format checker does.
    compiled = partial(jsonschema_rs.validator_for, registry=registry, validate_formats=True)
    by_type: dict[str, Any] = {}
    for key, doc in docs.items():
        name = key[len(_BASE):]
        folder, _, file = name.partition("/")
        if folder in ("sdos", "sros", "observables") or file in (
                "marking-definition.json", "extension-definition.json", "language-content.json"):
            by_type[file[:-len(".json")]] = partial(compiled, doc)
    core = compiled(docs[_BASE + "common/core.json"])
    observable = compiled(docs[_BASE + "common/cyber-observable-core.json"])
    return by_type, core, observable


def _validator_of(kind: str) -> Any:
    """The compiled validator of a STIX type's own schema, None for a type it has none of
    (a custom one). Only the schemas' types are cached: the types a sender names are not."""
    return _compiled(kind) if kind in _validators()[0] else None


@cache
def _compiled(kind: str) -> Any:
    # Two threads asking first both compile it: the same validator, one of them kept.
    return _validators()[0][kind]()


# A plain string literal as the pattern lexer reads it (STIXPattern.g4 ``StringLiteral``):
# a backslash escapes only a quote or a backslash, so the first bare quote closes it.
_STRING = re.compile(r"'(?:[^'\\]|\\['\\])*'")


def pattern_shape(pattern: str) -> str:
    """``pattern`` with the content of every plain string literal replaced by ``s``: the
    pattern validator's verdict depends on that content only for hash values (the
    ``hashes`` rule), so patterns of one shape are valid or invalid together and one ANTLR
    parse decides for all of them (it costs ~2 ms; indicators mostly differ only in their
    strings). Anything the lexer could read differently is returned unchanged: comments,
    anything mentioning hashes, an unterminated quote, and a quote right after an identifier
    character (typed literals ``t'…'``, ``h'…'``, ``b'…'``)."""
    if "/*" in pattern or "//" in pattern or "hashes" in pattern.lower():
        return pattern
    out: list[str] = []
    at = 0
    while (quote := pattern.find("'", at)) >= 0:
        found = _STRING.match(pattern, quote)
        if found is None:
            return pattern
        before = pattern[quote - 1] if quote else " "
        typed = before.isalnum() or before in "_-" or not before.isascii()
        out.append(pattern[at:quote])
        out.append(found.group() if typed else "'s'")
        at = found.end()
    out.append(pattern[at:])
    return "".join(out)


def _pattern_problem(pattern: str, version: str = "2.1") -> str | None:
    if _validate_pattern(pattern_shape(pattern), version) is None:
        return None
    return _validate_pattern(pattern, version)  # the message names the caller's own strings


@lru_cache(maxsize=65536)
def _validate_pattern(pattern: str, version: str = "2.1") -> str | None:
    from stix2patterns.v21.pattern import Pattern
    from stix2patterns.validator import run_validator

    try:
        errors = run_validator(pattern, stix_version=version)
        if errors:
            return "; ".join(str(e) for e in errors)
        # stix2-validator's MUST rules on the names a pattern compares (they depend on the
        # object types and property paths, not on the strings: the shape decides them too)
        enums = _enums()
        for kind, comparisons in Pattern(pattern).inspect().comparisons.items():
            if kind not in enums.OBSERVABLE_TYPES and (
                    not _TYPE_NAME.match(kind) or not 3 <= len(kind) <= 250):
                return f"{kind!r} is not a valid observable type name"
            for path, *_ in comparisons:
                known = enums.OBSERVABLE_PROPERTIES.get(kind, ())
                if path[0] not in known and not _PROPERTY_NAME.match(str(path[0])):
                    return f"{path[0]!r} is not a valid observable property name"
    except Exception as exc:  # the ANTLR front end raises anything on odd input
        return str(exc) or type(exc).__name__
    return None


_TYPE_NAME = re.compile(r"^\-?[a-z0-9]+(-[a-z0-9]+)*\-?$")
_PROPERTY_NAME = re.compile(r"^[a-z0-9_]{3,250}$")
# A timestamp as stix2-validator's MUST rule reads one before parsing it (leap second 60
# included: it must still parse as a real instant, and does not).
_STAMP = re.compile(r"^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):"
                    r"([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?Z$")
_INDEX = re.compile(r"\[(\d+)\]")
_UUID4_UNLESS = {"artifact": ("hashes", "payload_bin"),
                 "email-message": ("from_ref", "subject", "body"),
                 "user-account": ("account_type", "user_id", "account_login"),
                 "windows-registry-key": ("key", "values"),
                 "x509-certificate": ("hashes", "serial_number")}


@lru_cache(maxsize=1024)
def _kind_rules(kind: str) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...],
                                    tuple[tuple[str, str, str], ...]]:
    """stix2-validator's tables for one type, looked up once per type (not per object): its
    timestamp properties, those of its embedded objects (observables), and the timestamp
    pairs it orders."""
    enums = _enums()
    observable = kind in enums.OBSERVABLE_TYPES
    stamps = ("created", "modified", *enums.TIMESTAMP_PROPERTIES.get(kind, ()))
    embedded: tuple[tuple[str, tuple[str, ...]], ...] = ()
    compares = [("modified", "ge", "created"), *enums.TIMESTAMP_COMPARE.get(kind, ())]
    if observable:
        stamps += tuple(enums.TIMESTAMP_OBSERVABLE_PROPERTIES.get(kind, ()))
        embedded = tuple((embed, tuple(names)) for embed, names
                         in enums.TIMESTAMP_EMBEDDED_PROPERTIES.get(kind, {}).items())
        compares += enums.TIMESTAMP_COMPARE_OBSERVABLE.get(kind, [])
    return stamps, embedded, tuple((a, op, b) for a, op, b in compares)


def _must_problems(obj: Mapping[str, Any]) -> Iterator[str]:
    """What stix2-validator's MUST rules (``v21/musts.py``) refuse beyond the schemas, the
    pattern grammar and the order of paired timestamps, checked here the same way."""
    enums = _enums()
    kind = str(obj["type"])
    names, embedded, compares = _kind_rules(kind)
    if kind == "observed-data" and "objects" in obj:
        yield "the deprecated 'objects' property (use object_refs)"
    stamps: list[tuple[Any, str]] = [(obj, n) for n in names if n in obj]
    for embed, inner_names in embedded:
        held = obj.get(embed)
        if not isinstance(held, Mapping):
            continue
        inner = [v for v in held.values() if isinstance(v, Mapping)] \
            if embed == "extensions" else [held]
        stamps += [(where, n) for where in inner for n in inner_names]
    for where, name in stamps:
        if name not in where:
            continue
        value = where[name]
        # Not text (the schemas leave it free on observables) fails stix2-validator's rule.
        if not isinstance(value, str) or _unreal_stamp(value):
            yield f"{name}: {value!r} is not a valid timestamp"
    # stix2-validator compares these as text: so does the node, besides as instants.
    for first, op, second in compares:
        if first in obj and second in obj and not (
                obj[first] >= obj[second] if op == "ge" else obj[first] > obj[second]):
            yield f"{first} must be {'≥' if op == 'ge' else '>'} {second}"
    if kind == "marking-definition" and (obj["id"] in obj.get("object_marking_refs", ()) or any(
            m.get("marking_ref") == obj["id"] for m in obj.get("granular_markings", ()))):
        yield "a marking definition may not mark itself"
    for marking in obj.get("granular_markings", ()):
        for selector in marking.get("selectors", ()):
            if not _selects(obj, selector):
                yield f"{selector!r} is not a valid selector"
    refs = obj.get("external_references", [])
    if not isinstance(refs, list) or not all(isinstance(r, Mapping) for r in refs):
        # The schemas leave it free on observables; stix2-validator fails on anything but a
        # list there (an error, so a refusal)
        yield "external_references is not a list of external references"
    if "lang" in obj and obj["lang"] not in enums.LANG_CODES:
        yield f"{obj['lang']!r} is not a valid RFC 5646 language code"
    if kind == "artifact" and "mime_type" in obj and obj["mime_type"] not in \
            enums.media_types():
        yield f"mime_type {obj['mime_type']!r} is not an IANA media type"
    for owner, name in (("directory", "path_enc"), ("file", "name_enc")):
        if kind == owner and name in obj and obj[name] not in enums.char_sets():
            yield f"{name} {obj[name]!r} is not an IANA character set"
    if kind == "software":
        for code in obj.get("languages", ()):
            if code not in enums.SOFTWARE_LANG_CODES:
                yield f"{code!r} is not an ISO 639-2 language code"
    if "cpe" in obj:
        from cpe import CPE

        try:
            CPE(obj["cpe"], CPE.VERSION_2_3)
        except Exception:
            yield f"{obj['cpe']!r} is not a CPE 2.3 name"
    if kind == "language-content":
        for code, content in obj.get("contents", {}).items():
            if code not in enums.LANG_CODES or not all(
                    _PROPERTY_NAME.match(k) for k in content):
                yield f"contents {code!r} is not a language code with property names"
    needs_v4 = kind == "process" or (
        kind in _UUID4_UNLESS and not any(k in obj for k in _UUID4_UNLESS[kind]))
    if needs_v4 and uuid.UUID(str(obj["id"]).split("--")[-1]).version != 4:
        yield f"a {kind} without its contributing properties needs a UUIDv4 id"


@lru_cache(maxsize=4096)
def _unreal_stamp(text: str) -> bool:
    """Whether ``text`` reads as a timestamp but is no real instant (stix2-validator's rule);
    a batch's objects mostly share their timestamps, so each text is looked at once."""
    return bool(_STAMP.match(text)) and _instant(text) is None


def _instant(text: Any) -> datetime | None:
    """``text`` as an instant, None if it is not one."""
    return _parsed(text) if isinstance(text, str) else None


@lru_cache(maxsize=4096)
def _parsed(text: str) -> datetime | None:
    # Objects of a batch mostly share their timestamps: each text is parsed once.
    try:
        return timestamp(text, where="")
    except MalformedInput:
        return None


def _selects(obj: Any, selector: str) -> bool:
    """Whether a granular marking's selector names something ``obj`` holds."""
    for segment in selector.split("."):
        index = _INDEX.match(segment)
        try:
            obj = obj[int(index.group(1))] if index else obj[segment]
        except (IndexError, KeyError, TypeError):
            return False
    return True


def check_stix(obj: Mapping[str, Any]) -> None:
    """Raise MalformedInput naming what is wrong with one STIX 2.1 object."""
    where = f"object {obj.get('id', '?')}"
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise MalformedInput("has no type", where=where, expected="a STIX 2.1 object")
    _, core, observable = _validators()
    validator = _validator_of(kind)
    if validator is None:
        # custom objects: the common properties (stix2-validator does the same)
        validator = observable if "created" not in obj and "modified" not in obj else core
    try:
        # The verdict first (it stops at the first error and builds none): most objects
        # pass, and only a refusal needs its messages.
        doc = obj if type(obj) is dict else dict(obj)
        errors = [] if validator.is_valid(doc) else [e.message for e in
                                                     validator.iter_errors(doc)]
    except ValueError as exc:  # not representable as JSON (e.g. a float NaN)
        errors = [str(exc)]
    if errors:
        shown = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3
                                          else "")
        raise MalformedInput(f"not a valid STIX 2.1 object: {shown}", where=where,
                             expected="an object that the STIX 2.1 JSON schemas accept")
    object_id = obj.get("id")
    if not isinstance(object_id, str) or object_id.partition("--")[0] != kind:
        raise MalformedInput(f"id {object_id!r} does not name type {kind}", where=where,
                             expected=f"{kind}--<uuid>")
    for first, then, rule in _ORDERED:
        if first in obj and then in obj:
            a, b = _instant(obj[first]), _instant(obj[then])
            if a is None or b is None:
                timestamp(obj[first] if a is None else obj[then],
                          where=f"{where}.{first if a is None else then}")  # raises: says why
                continue
            if (b < a) if rule == "≥" else (b <= a):
                raise MalformedInput(f"{then} is not {rule} {first}", where=where,
                                     expected=f"{then} {rule} {first}")
    if kind == "indicator" and obj.get("pattern_type") == "stix":
        version = obj.get("pattern_version", obj.get("spec_version", "2.1"))
        problem = _pattern_problem(str(obj.get("pattern", "")), str(version))
        if problem:
            raise MalformedInput(f"the STIX pattern does not parse: {problem}",
                                 where=f"{where}.pattern", expected="a STIX 2.1 pattern")
    try:
        problems = list(_must_problems(obj))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        problems = [f"a value of the wrong kind ({type(exc).__name__}: {exc})"]
    if problems:
        raise MalformedInput(f"not a valid STIX 2.1 object: {'; '.join(problems[:3])}",
                             where=where, expected="an object that the STIX 2.1 MUST rules "
                                                   "accept (as stix2-validator applies them)")
