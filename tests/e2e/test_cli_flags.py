"""Errors name fields; the command line shows each as the flag the user typed, and prints
everything else as it was (issue 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from commandline import run_gsomia_here


def gsomia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gsomia", *args], capture_output=True,
                          text=True, timeout=180, check=False)


@pytest.mark.parametrize(("args", "line"), [
    (["node", "init", "--dir", "{tmp}/n", "--party", "XYZ"],
     "error: --party: no classification scheme for XYZ; expected one of JPN, KOR, USA"),
    (["node", "info", "--dir", "{tmp}"],
     "error: --node: {tmp} is not a node folder (no node.toml)"),
    (["agreement", "list", "--agreements", "{tmp}/none"],
     "error: --agreements: {tmp}/none is not a folder"),
    (["scenario", "run", "--launch", "1990-01-01", "--regime", "direct"],
     "error: --launch: no launch on 1990-01-01"),
    (["scenario", "run", "--launch", "2017-08-29", "--regime", "direct", "--until", "60"],
     "error: --until: --until without --federation"),
])
def test_a_field_in_error_is_named_by_its_flag(tmp_path: Path, args: list[str],
                                               line: str) -> None:
    """Each refused before any work: through gsomia's entry point in this process (which
    turns the error into the line), not a child's ~0.6 s of CPU each."""
    tmp = str(tmp_path.resolve())
    done = run_gsomia_here(*[a.format(tmp=tmp) for a in args])
    assert done.returncode == 2, (done.stdout, done.stderr)
    (printed,) = done.stderr.strip().splitlines()
    assert printed.startswith(line.format(tmp=tmp)), printed
    assert "Traceback" not in done.stderr


def test_a_file_in_error_is_printed_as_it_is(tmp_path: Path) -> None:
    bad = tmp_path / "bundle.json"
    bad.write_text('{"objects": [', encoding="utf-8")
    node = tmp_path / "node"
    assert gsomia("node", "init", "--dir", str(node), "--party", "KOR").returncode == 0
    done = gsomia("publish", "--node", str(node), "--file", str(bad), "--level", "군사II급비밀",
                  "--rel-to", "KOR", "--purpose", "dprk-missile")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith(f"error: {bad}:1:"), done.stderr
