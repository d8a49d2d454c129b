"""The README's examples, run as written: every ``console`` block that follows a
``<!-- example -->`` line is a session a newcomer can paste, and prints what it shows.

The marked blocks run in README order, in one temporary folder holding a copy of
``examples/`` (the README's commands run from a clone's root), each command in ``bash`` with
the variables earlier commands exported; ``gsomia`` is this tree's command. A line
``$ COMMAND`` (continued by a trailing ``\\`` or an open quote) is followed by what it
prints, stdout then stderr, up to the next ``$`` line. The variable parts of an output:

- ``…`` in a line stands for any text on that line; a line that is only ``…`` for any lines;
- output shown as a JSON document is compared as JSON: ``"…"`` as a value stands for any
  value, a member ``"…": "…"`` for any other members, and ``"…"`` last in a list for any
  further elements;
- ``(exit N)`` at the end of the last line: the command exits N (otherwise 0);
- ``--base-port 18443`` runs on a free base port instead (other tests use ports too).

Commands that only read (``items``, ``consent list``, …) are run again until they match, for
up to a minute: what a partner holds arrives a moment after the publish returns.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gsomia.shell.federation import free_base_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARK = "<!-- example -->"
ANY = "…"
READS = ("items", "consent list", "incident list", "audit partners", "federation status")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)
    line: int = 0

    @property
    def exit_code(self) -> int:
        shown = [line for line in self.shown if line.strip()]
        if shown:
            found = re.search(r"\s+\(exit (\d+)\)\s*$", shown[-1])
            if found:
                return int(found.group(1))
        return 0

    @property
    def output(self) -> list[str]:
        lines = list(self.shown)
        while lines and not lines[-1].strip():   # blank lines between examples
            lines.pop()
        if lines:
            lines[-1] = re.sub(r"\s+\(exit \d+\)\s*$", "", lines[-1])
        return lines


def _complete(command: str) -> bool:
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command, comments=True)
    except ValueError:        # an open quote: the command goes on
        return False
    return True


def sessions(text: str) -> list[list[Step]]:
    """The marked blocks of ``text``, each as its commands with what they show."""
    lines = text.splitlines()
    blocks: list[list[Step]] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARK:
            i += 1
            continue
        assert lines[i + 1].startswith("```console"), f"README.md:{i + 2}: {MARK} needs a " \
                                                      "console block next"
        i += 2
        steps: list[Step] = []
        while not lines[i].startswith("```"):
            line = lines[i]
            if line.startswith("$ "):
                command, start = line[2:], i
                while not _complete(command):
                    i += 1
                    command += "\n" + lines[i]
                steps.append(Step(command, line=start + 1))
            else:
                assert steps, f"README.md:{i + 1}: output before any command"
                steps[-1].shown.append(line)
            i += 1
        blocks.append(steps)
    return blocks


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if part == ANY else re.escape(part)
                              for part in re.split(f"({ANY})", line.rstrip())) + r"\s*")


def lines_match(shown: list[str], got: list[str]) -> bool:
    """``shown`` (with ``…`` lines and parts) against the lines printed."""
    if not shown:
        return not got
    head, rest = shown[0], shown[1:]
    if head.strip() == ANY:
        return any(lines_match(rest, got[k:]) for k in range(len(got) + 1))
    return bool(got) and _pattern(head).fullmatch(got[0].rstrip()) is not None \
        and lines_match(rest, got[1:])


def json_match(shown: Any, got: Any) -> bool:
    if shown == ANY:
        return True
    if isinstance(shown, str) and ANY in shown:
        return isinstance(got, str) and _pattern(shown).fullmatch(got) is not None
    if isinstance(shown, dict):
        if not isinstance(got, dict):
            return False
        keys = set(shown) - {ANY}
        if ANY not in shown and keys != set(got):
            return False
        return keys <= set(got) and all(json_match(shown[k], got[k]) for k in keys)
    if isinstance(shown, list):
        if not isinstance(got, list):
            return False
        if shown and shown[-1] == ANY:
            return len(got) >= len(shown) - 1 and all(
                json_match(a, b) for a, b in zip(shown[:-1], got, strict=False))
        return len(shown) == len(got) and all(
            json_match(a, b) for a, b in zip(shown, got, strict=True))
    return bool(shown == got)


def matches(step: Step, code: int, out: str, err: str) -> bool:
    if code != step.exit_code:
        return False
    shown = step.output
    if shown and shown[0].lstrip().startswith(("{", "[")):
        try:
            doc = json.loads("\n".join(shown))
        except json.JSONDecodeError:
            doc = None
        if doc is not None:
            try:
                return json_match(doc, json.loads(out))
            except json.JSONDecodeError:
                return False
    if not shown:
        return True   # nothing shown: the command only has to succeed
    return lines_match(shown, out.splitlines() + err.splitlines())


class Shell:
    """Commands run one by one in ``bash``, each seeing what the earlier ones exported."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env_file = folder / ".session-env"
        bin_dir = folder / ".bin"
        bin_dir.mkdir()
        # ``gsomia`` is this tree's command, in the interpreter running the tests.
        (bin_dir / "gsomia").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} '
                                        '-m gsomia "$@"\n', "utf-8")
        (bin_dir / "gsomia").chmod(0o755)
        self.env_file.write_text(f"export PATH={shlex.quote(str(bin_dir))}:\"$PATH\"\n",
                                 "utf-8")
        self.env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}

    def run(self, command: str) -> tuple[int, str, str]:
        env = shlex.quote(str(self.env_file))
        script = f". {env}\n{command}\nstatus=$?\nexport -p > {env}\nexit $status\n"
        done = subprocess.run(["bash", "-c", script], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=600, check=False)
        return done.returncode, done.stdout, done.stderr


def test_readme_marks_its_examples() -> None:
    blocks = sessions(README.read_text("utf-8"))
    assert len(blocks) >= 4
    commands = [s.command for b in blocks for s in b]
    for needed in ("examples/indicator.json", "scenario run", "items --node fed/KOR"):
        assert any(needed in c for c in commands), needed


def test_the_matching_rules() -> None:
    """The rules above, each able to fail."""
    assert lines_match(["a … c"], ["a bb c"]) and not lines_match(["a … c"], ["a bb d"])
    assert lines_match(["x", ANY, "z"], ["x", "1", "2", "z"])
    assert not lines_match(["x", "z"], ["x", "1", "z"])
    assert json_match({"a": ANY, ANY: ANY}, {"a": 1, "b": 2})
    assert not json_match({"a": ANY}, {"a": 1, "b": 2})
    assert json_match([1, ANY], [1, 2, 3]) and not json_match([1, 2], [1, 2, 3])
    assert Step("x", ["error: no   (exit 3)"]).exit_code == 3


def test_every_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shell = Shell(tmp_path)
    base = str(free_base_port())
    started: list[str] = []
    try:
        for block in sessions(README.read_text("utf-8")):
            for step in block:
                command = step.command.replace("--base-port 18443", f"--base-port {base}")
                if "federation up" in command:
                    started.append(command.split("--dir", 1)[1].split()[0])
                read_only = command.startswith(tuple(f"gsomia {r} " for r in READS))
                deadline = time.monotonic() + (60 if read_only else 0)
                while True:
                    code, out, err = shell.run(command)
                    if matches(step, code, out, err) or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                assert matches(step, code, out, err), (
                    f"README.md:{step.line}: $ {step.command}\nexit {code} (shown: "
                    f"{step.exit_code})\n--- shown ---\n" + "\n".join(step.output)
                    + f"\n--- printed ---\n{out}{err}")
    finally:
        for folder in started:
            shell.run(f"gsomia federation down --dir {folder}")
