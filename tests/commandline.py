"""The real ``gsomia`` command in a child process, as a user runs it: a plain module (not a
conftest) so that any test can import it, whichever conftest was imported last."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

__all__ = ["run_gsomia", "run_gsomia_here"]


def run_gsomia(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI as a user would, in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gsomia", *args], input=stdin, capture_output=True, text=True,
        env=full_env, timeout=timeout, check=False,
    )


def run_gsomia_here(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command through the same entry point (``gsomia.shell.cli.main``, which turns
    errors into a line on stderr and an exit status), run in this process: for a refusal
    decided before any work or a read of a node's store, where a child process spends ~0.6 s
    of CPU starting Python and importing the command for a check of milliseconds. An
    exception the entry point lets through (what a user would see as a traceback) fails the
    test where it is raised. Not for what serves, starts nodes or sets signal handlers
    (``demo``, ``federation``, ``node run``/``serve``): it would stay in the test's process."""
    from gsomia.shell.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["gsomia", *args], code, out.getvalue(), err.getvalue())
