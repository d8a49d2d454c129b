"""A fast STIX 2.1 check for ingest through the API: the same JSON schemas as
stix2-validator, compiled once (``jsonschema-rs``), plus its cheap "MUST" rules.

stix2-validator takes about 3-10 ms per object (it rebuilds its schema registry on every
call) and seconds to import, which caps TAXII ingest near 100 objects/s; this check costs
microseconds. It applies the schemas shipped inside the pinned stix2-validator 3.2.x (so both
agree on what a valid object is), checks that timestamps are real instants and ordered
(``modified`` ≥ ``created``, ``valid_until`` > ``valid_from``, …), that the id names the
type, and the pattern grammar of STIX indicators (stix2-patterns, one parse per pattern
shape: see :func:`pattern_shape`). The test suite checks that everything the API serves
passes stix2-validator itself.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from gsomia.core.errors import MalformedInput
from gsomia.core.taxii import timestamp

__all__ = ["check_stix", "pattern_shape"]

_BASE = "http://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/stix2.1/schemas/"
_ORDERED = (("created", "modified", "≥"), ("valid_from", "valid_until", ">"),
            ("first_seen", "last_seen", "≥"), ("first_observed", "last_observed", "≥"),
            ("start_time", "stop_time", ">"))


@lru_cache(maxsize=1)
def _validators() -> tuple[dict[str, Any], Any, Any]:
    import jsonschema_rs

    # find_spec locates the package without importing it (its import costs seconds).
    spec = importlib.util.find_spec("stix2validator")
    if spec is None or not spec.submodule_search_locations:
        raise MalformedInput("stix2-validator is not installed", where="stix check",
                             expected="stix2-validator 3.2.x (its schemas are used)")
    root = Path(next(iter(spec.submodule_search_locations))) / "schemas-2.1" / "schemas"
    docs: dict[str, Any] = {}
    for folder in ("common", "sdos", "sros", "observables"):
        for entry in (root / folder).iterdir():
            if entry.name.endswith(".json"):
                doc = json.loads(entry.read_text("utf-8"))
                docs[doc["$id"]] = doc
    registry = jsonschema_rs.Registry(list(docs.items()))
    by_type: dict[str, Any] = {}
    for key, doc in docs.items():
        name = key[len(_BASE):]
        folder, _, file = name.partition("/")
        if folder in ("sdos", "sros", "observables") or file in (
                "marking-definition.json", "extension-definition.json", "language-content.json"):
            by_type[file[:-len(".json")]] = jsonschema_rs.validator_for(doc, registry=registry)
    core = jsonschema_rs.validator_for(docs[_BASE + "common/core.json"], registry=registry)
    observable = jsonschema_rs.validator_for(docs[_BASE + "common/cyber-observable-core.json"],
                                             registry=registry)
    return by_type, core, observable


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


def _pattern_problem(pattern: str) -> str | None:
    if _validate_pattern(pattern_shape(pattern)) is None:
        return None
    return _validate_pattern(pattern)  # the message names the caller's own strings


@lru_cache(maxsize=65536)
def _validate_pattern(pattern: str) -> str | None:
    from stix2patterns.validator import run_validator

    try:
        errors = run_validator(pattern, stix_version="2.1")
    except Exception as exc:  # the ANTLR front end raises anything on odd input
        return str(exc)
    return "; ".join(str(e) for e in errors) or None


def check_stix(obj: Mapping[str, Any]) -> None:
    """Raise MalformedInput naming what is wrong with one STIX 2.1 object."""
    where = f"object {obj.get('id', '?')}"
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise MalformedInput("has no type", where=where, expected="a STIX 2.1 object")
    by_type, core, observable = _validators()
    validator = by_type.get(kind)
    if validator is None:
        # custom objects: the common properties (stix2-validator does the same)
        validator = observable if "created" not in obj and "modified" not in obj else core
    try:
        errors = [e.message for e in validator.iter_errors(dict(obj))]
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
            a = timestamp(obj[first], where=f"{where}.{first}")
            b = timestamp(obj[then], where=f"{where}.{then}")
            if (b < a) if rule == "≥" else (b <= a):
                raise MalformedInput(f"{then} is not {rule} {first}", where=where,
                                     expected=f"{then} {rule} {first}")
    if kind == "indicator" and obj.get("pattern_type") == "stix":
        problem = _pattern_problem(str(obj.get("pattern", "")))
        if problem:
            raise MalformedInput(f"the STIX pattern does not parse: {problem}",
                                 where=f"{where}.pattern", expected="a STIX 2.1 pattern")
