"""Split ``src/gsomia/shell/store.py`` into the package ``src/gsomia/shell/store/`` by role:
``tools/split_module.py store``, kept under the name the store's package and its report cite.
Run from the repository's root (then the ruff passes in split_module.py's docstring)::

    /work/main/.venv/bin/python tools/split_store.py
"""

from __future__ import annotations

import sys

from split_module import run

if __name__ == "__main__":
    run(["store", *sys.argv[1:]])
