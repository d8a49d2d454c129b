"""Shared fixtures: the shipped catalogue, and a runner for the real ``gsomia`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gsomia.core.agreements import Catalogue
from gsomia.shell.catalogue import load_catalogue

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shipped() -> Catalogue:
    return load_catalogue()


def run_gsomia(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI as a user would, in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gsomia", *args], input=stdin, capture_output=True, text=True,
        env=full_env, timeout=timeout, check=False,
    )


@pytest.fixture
def gsomia() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_gsomia
