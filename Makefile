# Two commands matter: `make demo` and `make test`. Each sets up .venv on a fresh machine:
# `make demo` with gsomia and what it needs to run (the runtime), `make test` and `make bench`
# with the test tools and the benchmarks' references as well (the `dev` extra).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean bytecode kernels asserts

# uv installs the same packages from the same index as pip, in about a fifth of the time
# (fresh .venv, empty caches: 9.5 s against 50 s for the runtime), which is most of what
# `make demo` spends on a fresh clone. --compile-bytecode as pip does: where
# PYTHONDONTWRITEBYTECODE is set (this machine, CI) every process would otherwise compile
# NumPy, SciPy and SQLAlchemy from source at each start (make test: 12.7 against 9.6 min).
UV := $(VENV)/bin/uv

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.5'
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]'
	touch $(STAMP)

# gsomia itself is installed editable, so uv's --compile-bytecode leaves src/ alone, and with
# PYTHONDONTWRITEBYTECODE set every `gsomia` process compiled the package's modules again:
# `gsomia --help` took 1.5 s of CPU instead of 0.9 s, and the tests start hundreds of them.
# Python checks each .pyc against its source, so an edited module is compiled afresh in memory.
bytecode: $(RUNTIME)
	$(PY) -m compileall -q src

# The tracker's numba kernels are compiled by one process, once, before the test workers
# start: otherwise every process that tracks at the start of the suite (the workers, the
# demo's nodes, each node's warning centre, evaluate) compiled them at the same time, about
# 26 s of CPU each, before any had written the cache beside the source (`cache=True`).
# A short model run compiles them (a cold run 29 s of CPU, a warm one 3 s).
kernels: bytecode
	$(VENV)/bin/gsomia scenario run --launch 2017-08-29 --regime none --json > /dev/null

# pytest rewrites the asserts of each test module as it imports it, and keeps the result in
# tests/**/__pycache__ unless PYTHONDONTWRITEBYTECODE is set, as on this machine and in CI:
# then each of the three workers rewrote every test module as it collected the suite (about
# 5 s of CPU each). One collection with the variable unset for it alone writes them once (7 to
# 9 s of CPU on a fresh clone, 3 to 4 s once written), and the workers read them: pytest
# checks each against its source's mtime and size, so an edited test is rewritten afresh.
# A collection error is left to the run itself to report.
asserts: $(STAMP) bytecode
	-PYTHONDONTWRITEBYTECODE= $(PY) -m pytest --collect-only -q -p no:xdist -p no:cacheprovider > /dev/null

demo: $(RUNTIME) bytecode
	$(VENV)/bin/gsomia demo

# The store tests run against a real PostgreSQL server: install Debian's package if missing
# (the test session starts and stops a throwaway cluster on 127.0.0.1).
# The dashboard tests drive Debian's Chromium headless (installed if missing).
# Both use apt-get, so as root (or through sudo); see the README.
# Three workers on two cores, each taking whole files (a file's tests share their nodes and
# federations): much of the suite waits on node processes, so a third worker keeps both cores
# busy (8 min 46 s against 10 min 31 s with two, measured on a quiet 2-core machine). The 30
# slowest tests are listed at the end, to see where the 10-minute budget goes.
# Lint, the kernels' compile and the asserts' rewrite are one process each, so they run side
# by side on the two cores (a fresh clone: mypy's cold run and numba's about half a minute
# each).
test: $(STAMP)
	$(MAKE) --no-print-directory -j2 lint kernels asserts
	sh tools/pg-test-cluster.sh install
	sh tools/install-chromium.sh
	$(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder --durations=30

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP) kernels
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
