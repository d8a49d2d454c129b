"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gsomia import bootstrap
from gsomia.core.agreements import Catalogue

F = TypeVar("F", bound=Callable[..., Any])


def agreements_option(fn: F) -> F:
    """``--agreements DIR`` (repeatable): add the user's agreement files to the shipped ones."""
    return click.option(
        "--agreements", "agreement_dirs", multiple=True, metavar="DIR",
        type=click.Path(file_okay=False),
        help="Folder of extra agreement YAML files (repeatable; also $GSOMIA_AGREEMENTS).",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def catalogue(dirs: tuple[str, ...]) -> Catalogue:
    return bootstrap.catalogue(dirs)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2))


def read_json_input(source: str, *, what: str) -> Any:
    """Read JSON from a file path or ``-`` (stdin); bad JSON is MalformedInput."""
    from gsomia.core.errors import MalformedInput

    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise MalformedInput(f"cannot read {what}: {exc.strerror}", where=source,
                             expected="a readable JSON file or - for standard input") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedInput(f"invalid JSON ({exc.msg})",
                             where=f"{source}:{exc.lineno}:{exc.colno}",
                             expected=f"{what} as a JSON document") from None
