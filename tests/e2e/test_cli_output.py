"""What the command line prints for people and for programs.

- Every command takes ``--json`` (servers aside), and every listing command, run against a
  real node made here, prints exactly one parseable JSON document and no escape codes.
- Progress bars are drawn on a terminal and never into a pipe or with ``--json``; colours
  follow the terminal and ``NO_COLOR``.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import click
import pytest
from click.testing import CliRunner

from gsomia.service import handlers
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.cli import cli
from gsomia.shell.node import init_node, new_token

CATALOGUE = load_catalogue()
# Commands that serve until stopped, and release-check, whose --json names its input (its
# output is always one JSON decision).
NOT_JSON = {"node serve", "node run", "release-check"}
LISTING = {"list", "status", "info", "items", "launches", "events", "head", "show", "doctor"}


def leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from leaves(command, path + " ")
        else:
            yield path, command


def test_each_command_is_found_in_the_modules_that_register_it() -> None:
    """The command line imports a command's modules only when it is run: its table of which
    modules register which command must be what the modules do register."""
    from importlib import import_module

    from gsomia.shell.cli import COMMAND_MODULES, COMMANDS

    registered: dict[str, list[str]] = {}
    for module in COMMAND_MODULES:
        scratch = click.Group()
        import_module(module).register(scratch)
        for name in scratch.commands:
            registered.setdefault(name, []).append(module.rsplit(".", 1)[1])
    assert {name: tuple(modules) for name, modules in registered.items()} == COMMANDS


def takes_json(command: click.Command) -> bool:
    return any("--json" in p.opts and getattr(p, "is_flag", False) for p in command.params)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from gsomia.shell.federation import configure

    root = tmp_path_factory.mktemp("cli")
    folder = root / "jpn"
    node = init_node(folder, "JPN", catalogue=CATALOGUE, now=datetime.now(UTC))
    token = new_token()
    handlers.add_user(node.uow(), keys=node.keys, schemes=CATALOGUE.schemes, name="kenji",
                      clearance="極秘", need_to_know=["dprk-missile"], token=token,
                      now=datetime.now(UTC))
    node.close()
    stamp = "2017-08-28T20:00:00.000Z"
    obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
           "created": stamp, "modified": stamp, "name": "TEL activity",
           "pattern": "[x-dprk-site:name = 'Sunan']", "pattern_type": "stix",
           "valid_from": "2017-08-28T20:00:00Z"}
    source = root / "obj.json"
    source.write_text(json.dumps(obj), "utf-8")
    out = CliRunner().invoke(cli, ["publish", "--node", str(folder), "--file", str(source),
                                   "--level", "極秘", "--rel-to", "JPN,KOR", "--purpose",
                                   "dprk-missile", "--json"])
    assert out.exit_code == 0, out.output
    configure(root / "fed", "direct", 29000)        # written, never started
    return {"node": str(folder), "item": obj["id"], "token": token, "fed": str(root / "fed")}


def invocations(made: dict[str, str]) -> dict[str, list[str]]:
    node = ["--node", made["node"]]
    return {
        "agreement list": [],
        "agreement show": ["jpn-kor-gsomia-2016"],
        "agreement status": ["jpn-kor-gsomia-2016", "--at", "2019-10-01"],
        "audit events": node,
        "audit head": node,
        "consent list": node,
        "consent standing list": node,
        "doctor": node,
        "federation status": ["--dir", made["fed"]],
        "incident list": node,
        "item show": [made["item"], *node, "--user", made["token"]],
        "items": node,
        "launches": ["--year", "2017"],
        "node info": ["--dir", made["node"]],
        "user list": node,
    }


def test_every_command_but_servers_takes_json() -> None:
    found = dict(leaves(cli))
    assert {"items", "launches", "agreement list", "user list"} <= set(found)
    missing = sorted(p for p, c in found.items() if p not in NOT_JSON and not takes_json(c))
    assert missing == []


def test_every_listing_command_prints_one_json_document(made: dict[str, str]) -> None:
    runs = invocations(made)
    listing = {p for p, _ in leaves(cli) if p.split()[-1] in LISTING}
    # A new listing command needs a line in invocations(): this keeps the check complete.
    assert listing <= set(runs), sorted(listing - set(runs))
    runner = CliRunner()
    for path in sorted(listing):
        args = runs[path]
        result = runner.invoke(cli, [*path.split(), *args, "--json"])
        assert result.exit_code == 0, (path, result.output, result.exception)
        assert "\x1b[" not in result.output, path
        doc = json.loads(result.output)          # one document, nothing around it
        assert isinstance(doc, dict) and doc, path
    items = json.loads(runner.invoke(cli, ["items", "--node", made["node"], "--json"]).output)
    assert [i["id"] for i in items["items"]] == [made["item"]]


# ---- terminals ---------------------------------------------------------------------------------
def on_a_terminal(code: str, env: dict[str, str] | None = None) -> bytes:
    """Run Python code with stdin, stdout and stderr on a pseudo-terminal; what it showed."""
    main, side = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=side, stdout=side, stderr=side,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", **(env or {})})
    os.close(side)
    shown = b""
    while True:
        ready, _, _ = select.select([main], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:                 # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=30)
    os.close(main)
    return shown


BAR = """
import time
from gsomia.shell.commands.common import progress
with progress("publishing objects", 3, as_json={as_json}) as steps:
    for _ in range(3):
        steps.advance(); time.sleep(0.15)
print("shown" if steps.shown else "hidden")
"""


def test_progress_is_drawn_on_a_terminal_only() -> None:
    drawn = on_a_terminal(BAR.format(as_json=False)).decode("utf-8", "replace")
    assert "publishing objects" in drawn and "shown" in drawn
    assert "\x1b[32m" in drawn                          # coloured on a colour terminal
    quiet = on_a_terminal(BAR.format(as_json=True)).decode("utf-8", "replace")
    assert "publishing objects" not in quiet and "hidden" in quiet
    piped = subprocess.run([sys.executable, "-c", BAR.format(as_json=False)],
                           capture_output=True, text=True, timeout=60, check=True)
    assert piped.stdout == "hidden\n" and piped.stderr == ""


def test_no_colour_with_NO_COLOR_even_on_a_terminal() -> None:
    drawn = on_a_terminal(BAR.format(as_json=False), {"NO_COLOR": "1"}).decode(
        "utf-8", "replace")
    assert "publishing objects" in drawn            # the bar, without colours
    assert "\x1b[32m" not in drawn and "\x1b[38;5;" not in drawn


def test_a_long_command_shows_progress_on_a_terminal_and_not_in_a_pipe(
        made: dict[str, str]) -> None:
    run = "from gsomia.shell.cli import main; import sys; sys.exit(main({args!r}))"
    args = ["audit", "verify", "--node", made["node"]]
    drawn = on_a_terminal(run.format(args=args)).decode("utf-8", "replace")
    assert "audit log intact" in drawn
    assert "verifying the audit log" in drawn
    piped = subprocess.run([sys.executable, "-m", "gsomia", *args], capture_output=True,
                           text=True, timeout=120, check=True)
    assert piped.stdout.startswith("audit log intact") and "\x1b[" not in piped.stdout
    assert piped.stderr == ""



@pytest.mark.parametrize("path", [p for p, _ in leaves(cli)])
def test_usage_errors_are_one_line(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped option is bad input like any other: one line on stderr naming it and where
    the command's help is, exit 2 (click's own form takes four lines)."""
    from gsomia.shell.cli import main

    assert main([*path.split(), "--no-such-option"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: No such option '--no-such-option'")
    assert lines[0].endswith(f"see 'gsomia {path} --help'")
    assert captured.out == ""


def test_a_missing_choice_is_one_line(gsomia: Callable[..., Any]) -> None:
    """click lists choices on lines of their own; the error folds them onto its line."""
    out = gsomia("scenario", "run", "--launch", "2017-08-29")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("error: Missing option '--regime'. Choose from: none, hub, direct, "
                          "trilateral; see 'gsomia scenario run --help'\n")
    out = gsomia("no-such-command")
    assert out.returncode == 2
    assert out.stderr == "error: No such command 'no-such-command'; see 'gsomia --help'\n"
