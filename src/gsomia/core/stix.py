"""STIX 2.1 objects in and out: security labels as extension-based marking definitions.

A label travels as a ``marking-definition`` that carries no ``definition_type`` but a
property extension (STIX 2.1 §7.3) defined by :data:`EXTENSION_DEFINITION`; the item points
at it through ``object_marking_refs``. The marking's id is derived from the canonical label,
so equal labels give the same marking everywhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gsomia.core.errors import MalformedInput
from gsomia.core.labels import LabelVocabulary, SecurityLabel
from gsomia.core.types import iso

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
