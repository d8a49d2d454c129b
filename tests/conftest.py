"""Shared fixtures: the shipped catalogue, and a runner for the real ``gsomia`` command
(:mod:`commandline`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from commandline import run_gsomia
from gsomia.core.agreements import Catalogue
from gsomia.shell.catalogue import load_catalogue

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shipped() -> Catalogue:
    return load_catalogue()


@pytest.fixture
def gsomia() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_gsomia
