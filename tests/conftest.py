"""Shared fixtures: the shipped catalogue, and a runner for the real ``gsomia`` command
(:mod:`commandline`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from commandline import run_gsomia
from gsomia.core.agreements import Catalogue
from gsomia.shell.catalogue import load_catalogue
from starting import nodes_stop_with_me

ROOT = Path(__file__).resolve().parents[1]

# No per-example deadline: three workers share two cores with the nodes they start, and an
# example of a geometry property took 259 ms against the default 200 under that load. What a
# property asserts is its invariant; speed is measured in bench/, not here.
# Nor a limit on drawing (HealthCheck.too_slow, 30 s of wall time for the first ten inputs):
# the first draw of a worker's first property scans the project's modules for constants
# (Hypothesis 6.13x+; cached in .hypothesis/constants, cold in a fresh clone), 1-3 s of CPU
# that took 30 s of wall time at a load of 20 and failed test_sensor_feed's line property,
# 2 of 3 tries (flaky22). A strategy that is slow for good still shows in --durations.
settings.register_profile("gsomia", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gsomia")

# Each pytest process (each xdist worker too: it imports this file itself) names itself, so no
# node a test starts outlives the run, however it ends (^C, a killed worker, a CI time-out).
nodes_stop_with_me()

# The files that take longest, longest first (seconds of one worker in a full run on the
# 2-core machine, with others'). `make test` hands whole files to three workers in the order
# collected (--dist loadfile --no-loadscope-reorder): started last, one of these ran alone for
# minutes after the rest had finished; started first, the short files fill the gaps. Files not
# named keep pytest's order after these.
LONGEST_FIRST = (
    "e2e/test_demo.py", "integration/test_scenario.py", "integration/test_evaluate_pinned.py",
    "integration/test_evaluate_command.py", "e2e/test_warnings_out.py",
    "e2e/test_readme_examples.py", "e2e/test_node_cli.py", "e2e/test_sensor_federation.py",
    "e2e/test_doctor.py", "e2e/test_taxii_conformance.py",
    "e2e/test_dashboard.py", "e2e/test_audit_registers.py", "e2e/test_limits.py",
    "e2e/test_standing_consents.py", "unit/test_policy.py", "e2e/test_auth_cli.py",
    "e2e/test_sensor_feeds.py", "e2e/test_federation.py", "e2e/test_sensor_partner_down.py",
    "e2e/test_evaluate_federation.py",
    "e2e/test_dashboard_defences.py", "unit/test_report.py", "e2e/test_sender_crash.py",
    "integration/test_node_workers.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Compile the tracker's kernels once, before any worker starts, when their cache is
    cold: ``make test`` does it (``make kernels``), but a run in a new worktree or a clone
    without it had every process that tracks compile them at once, 26 s of CPU each, and a
    warning centre took 139 s of wall time to get ready at a load of 20 (flaky22)."""
    import os
    import sys

    import gsomia

    if hasattr(config, "workerinput") or os.environ.get("NUMBA_CACHE_DIR") or \
            not config.getoption("numprocesses", None) or config.option.collectonly:
        # A worker (its controller did it), a cache this file does not know, or one process:
        # it compiles them once, when it first tracks, and only if it does.
        return
    kernels = Path(gsomia.__file__).parent / "core" / "tracking" / "kernels.py"
    made = [p.stat().st_mtime for p in (kernels.parent / "__pycache__").glob("kernels.*.nbi")]
    if made and min(made) >= kernels.stat().st_mtime:
        return
    print("compiling the tracker's kernels once for the workers (a cold numba cache: 30 s "
          "of CPU)", file=sys.__stderr__)  # under pytest's capture, sys.stderr is not seen
    subprocess.run([sys.executable, "-m", "gsomia", "scenario", "run", "--launch",
                    "2017-08-29", "--regime", "none", "--json"], stdout=subprocess.DEVNULL,
                   timeout=900, check=False)  # what fails here fails again in the tests


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    gone = [name for name in LONGEST_FIRST if not (ROOT / "tests" / name).is_file()]
    if gone:
        raise pytest.UsageError(f"conftest.LONGEST_FIRST names files that do not exist: {gone};"
                                " remove or rename them there")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> int:
        return rank.get(Path(item.path).relative_to(ROOT / "tests").as_posix(), len(rank))

    items.sort(key=place)   # stable: the tests of a file keep their order
    # A property's own suppress_health_check replaces the profile's list, not adds to it.
    slow = sorted({item.nodeid.split("[")[0] for item in items
                   if HealthCheck.too_slow not in getattr(
                       getattr(item, "obj", None), "_hypothesis_internal_use_settings",
                       settings.default).suppress_health_check})
    if slow:
        raise pytest.UsageError(f"properties whose settings drop HealthCheck.too_slow (see "
                                f"the profile in conftest.py): {slow}")


@pytest.fixture(scope="session")
def shipped() -> Catalogue:
    return load_catalogue()


@pytest.fixture
def gsomia() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_gsomia
