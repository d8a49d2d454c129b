"""Readers for the data shipped with gsomia: launches, sensors, geography.

The files live in the package (``gsomia/data``) and are read with importlib.resources, so
they work from a wheel as well as from a checkout; nothing is downloaded. Each reader decodes
the file and hands the document to the pure parser in ``gsomia.core.tracking``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import geography, launches, sensors

_DATA = "data"


def _text(*parts: str) -> str:
    resource = files("gsomia").joinpath(_DATA, *parts)
    try:
        return resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise MalformedInput(f"cannot read shipped data: {exc}", where="/".join(parts),
                             expected="the file shipped with gsomia") from None


def _json(*parts: str) -> Any:
    try:
        return json.loads(_text(*parts))
    except json.JSONDecodeError as exc:
        raise MalformedInput(f"invalid JSON ({exc.msg})", where="/".join(parts),
                             expected="the JSON file shipped with gsomia") from None


@cache
def load_launches() -> tuple[launches.Launch, ...]:
    """Every test of the CNS North Korea missile test database, in data-set order."""
    return launches.launches(_json("launches", "test.en.json"),
                             _json("launches", "facility.en.json"),
                             _json("launches", "missile.en.json"))


def find_launch(day: str, index: int | None = None) -> launches.Launch:
    """``--launch DATE [--index N]``: by UTC or Korean/Japanese date, N-th (0-based) that day."""
    return launches.find(load_launches(), day, index)


@cache
def load_sensors() -> tuple[sensors.Sensor, ...]:
    """The sensor catalogue (``data/sensors.yaml``)."""
    try:
        # libyaml's parser where PyYAML has it: the same document, a tenth of the CPU.
        doc = yaml.load(_text("sensors.yaml"),
                        Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise MalformedInput(f"invalid YAML ({exc})", where="sensors.yaml",
                             expected="the sensor catalogue") from None
    return sensors.catalogue(doc)


@cache
def load_geography() -> geography.Atlas:
    """Prefectures, provinces and EEZs (``data/geography/*.geojson``)."""
    return geography.atlas([_json("geography", name) for name in geography.FILES])
