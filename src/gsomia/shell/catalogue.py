"""Reading the shipped and user-supplied agreements and national schemes from YAML files."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gsomia.core.agreements import Agreement, Catalogue, parse_agreement
from gsomia.core.errors import MalformedInput
from gsomia.core.labels import Scheme, load_schemes

_DATA = resources.files("gsomia") / "data"


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: dates stay text, so the schema (not a ValueError
    deep inside PyYAML) reports an impossible date with its file and field."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

# The shipped files, parsed by libyaml where PyYAML has it (the same documents; 40 ms of
# every node start in PyYAML's own parser, 5 ms in libyaml's). A user's files keep PyYAML's
# parser, whose error messages they are shown.
_Shipped: Any = _Loader
if getattr(yaml, "__with_libyaml__", False):
    class _ShippedLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

    _Shipped = _ShippedLoader


def _yaml(text: str, source: str, loader: Any = _Loader) -> Any:
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise MalformedInput(f"not valid YAML ({getattr(exc, 'problem', exc)})", where=where,
                             expected="a YAML mapping") from None


def schemes() -> dict[str, Scheme]:
    return load_schemes(_yaml((_DATA / "schemes.yaml").read_text("utf-8"), "schemes.yaml",
                              _Shipped), source="schemes.yaml")


def _read_dir(folder: Any, label: str, table: dict[str, Scheme],
              loader: Any = _Loader) -> list[Agreement]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            source = f"{label}/{entry.name}"
            found.append(parse_agreement(_yaml(entry.read_text("utf-8"), source, loader),
                                         table, source=source))
    return found


def load_catalogue(extra_dirs: Iterable[str | Path] = ()) -> Catalogue:
    """The shipped agreements plus every ``*.yaml`` in ``extra_dirs`` (user agreements)."""
    table = schemes()
    agreements = _read_dir(_DATA / "agreements", "gsomia/data/agreements", table, _Shipped)
    for d in extra_dirs:
        path = Path(d)
        if not path.is_dir():
            raise MalformedInput(f"{d} is not a folder", where="agreements",
                                 expected="a folder of agreement YAML files")
        agreements.extend(_read_dir(path, str(path), table))
    return Catalogue.of(agreements, table)
