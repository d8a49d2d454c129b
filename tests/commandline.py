"""The real ``gsomia`` command in a child process, as a user runs it: a plain module (not a
conftest) so that any test can import it, whichever conftest was imported last."""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["run_gsomia"]


def run_gsomia(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI as a user would, in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gsomia", *args], input=stdin, capture_output=True, text=True,
        env=full_env, timeout=timeout, check=False,
    )
