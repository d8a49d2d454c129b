"""Options and output helpers shared by the command modules.

Output habits every command follows: ``--json`` prints one JSON document on stdout and
nothing else there; colours only on a terminal and never with ``NO_COLOR`` set (rich's
Console reads both, and ``click.echo`` strips styles when stdout is not a terminal);
progress bars go to stderr, only when stdout and stderr are both terminals and the output is
not JSON (:func:`progress`), and vanish when done.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gsomia import bootstrap
from gsomia.core.agreements import Catalogue

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console
    from rich.progress import Progress, TaskID

    from gsomia.shell.scenarios import ModelRuns

F = TypeVar("F", bound=Callable[..., Any])


def agreements_option(fn: F) -> F:
    """``--agreements DIR`` (repeatable): add the user's agreement files to the shipped ones."""
    return click.option(
        "--agreements", "agreement_dirs", multiple=True, metavar="DIR",
        type=click.Path(file_okay=False),
        help="Folder of extra agreement YAML files (repeatable; also $GSOMIA_AGREEMENTS).",
    )(fn)


def label_options(fn: F) -> F:
    """The label flags (``publish``, ``label``): ``--level``, ``--rel-to``, ``--purpose``,
    ``--caveat``, ``--category``, ``--policy``."""
    for option in reversed((
            click.option("--level", required=True,
                         help="Level in the originator's (the node's) national scheme."),
            click.option("--rel-to", "rel_to", required=True, metavar="P,P",
                         help="Parties it may be released to, e.g. KOR,JPN."),
            click.option("--purpose", required=True, help="Purpose it is provided for."),
            click.option("--caveat", "caveats", multiple=True,
                         help="Caveat (NOFORN, ORCON)."),
            click.option("--category", help="Kind of information (e.g. impact-prediction)."),
            click.option("--policy", metavar="AGREEMENT",
                         help="Agreement the label is marked under."))):
        fn = option(fn)
    return fn


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def catalogue(dirs: tuple[str, ...]) -> Catalogue:
    return bootstrap.catalogue(dirs)


def split_values(values: tuple[str, ...]) -> list[str]:
    """Repeated options and comma-separated lists alike: ``--x a,b --x c``."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


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
    from gsomia.core.limits import MAX_DEPTH, check_text_depth

    # A bundle holds its objects two levels down; deeper text would exhaust json's stack.
    check_text_depth(text, where=source, limit=MAX_DEPTH + 2)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedInput(f"invalid JSON ({exc.msg})",
                             where=f"{source}:{exc.lineno}:{exc.colno}",
                             expected=f"{what} as a JSON document") from None


# ---- terminals, colours and progress ---------------------------------------------------------
def console(*, stderr: bool = False) -> Console:
    """A rich Console; it colours only a terminal and honours ``NO_COLOR`` and ``TERM=dumb``."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def interactive(as_json: bool = False) -> bool:
    """Whether a progress display may be drawn: a person is watching, not a pipe or a parser."""
    if as_json:
        return False
    try:
        return sys.stdout.isatty() and console(stderr=True).is_terminal
    except (AttributeError, ValueError):     # a closed or replaced stream
        return False


def progress_console(as_json: bool = False) -> Console | None:
    """The console to draw progress on (stderr), or None when progress is off."""
    return console(stderr=True) if interactive(as_json) else None


class Steps:
    """One task of a progress display; does nothing when the display is off."""

    def __init__(self, bar: Progress | None, task: TaskID | None) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: float = 1.0) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def update(self, *, total: float | None = None, completed: float | None = None,
               description: str | None = None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total, completed=completed,
                             description=description)

    @property
    def shown(self) -> bool:
        return self._bar is not None


@contextmanager
def progress(description: str, total: float | None = None, *,
             as_json: bool = False) -> Iterator[Steps]:
    """A transient progress bar on stderr (a spinner while ``total`` is None).

    Off, and free, when stdout or stderr is not a terminal or with ``--json``: scripts and
    pipes see only the command's output.
    """
    shown = progress_console(as_json)
    if shown is None:
        yield Steps(None, None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=shown,
                  transient=True) as bar:
        yield Steps(bar, bar.add_task(description, total=total))


def model_runs(day: str, seed: int, console: Console | None,
               regimes: Sequence[str] | None = None) -> ModelRuns:
    """The launch of ``day`` replayed under ``regimes`` (every regime by default), with a
    progress bar on ``console`` (none when it is None or not a terminal)."""
    from rich.progress import Progress

    from gsomia.core.sharing import REGIMES
    from gsomia.shell import feeds
    from gsomia.shell.scenarios import DEMO

    names = tuple(REGIMES) if regimes is None else tuple(regimes)
    launch = feeds.find_launch(day)
    with Progress(console=console, transient=True,
                  disable=console is None or not console.is_terminal) as bar:
        task = bar.add_task(f"scenario model: {launch.missile.name} {launch.local_date}",
                            total=len(names))
        return bootstrap.scenario_runner().replay(launch, seed, names,
                                                  on_regime=lambda: bar.advance(task),
                                                  options=DEMO)
