"""The repository's two ports: what the handlers read and write (``Repository``), and what
the shell alone reads besides (``ShellReads``). The store's repository is both; a fake for
the handlers is the first alone, so it need not answer the dashboard's or the courier's reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from gsomia.service import ports
from gsomia.service.ports import Repository, ShellReads
from gsomia.shell.store import SqlRepository

SERVICE = Path(ports.__file__).parent


def as_shell_reads(repo: SqlRepository) -> ShellReads:
    """mypy checks here that the store's repository is every member of both ports, with
    their types: a signature drifted apart fails ``make lint``, not a node at run time."""
    return repo


def _own(port: type) -> set[str]:
    return {name for name in vars(port) if not name.startswith("_")}


def test_the_two_ports_split_the_repository_and_the_store_answers_both() -> None:
    handlers, shell = _own(Repository), _own(ShellReads)
    assert handlers and shell and not handlers & shell
    assert all(callable(getattr(SqlRepository, name, None)) for name in handlers | shell)


def test_no_handler_reads_what_only_the_shell_reads() -> None:
    """A service module that called one of the shell's reads would need a fake to answer it:
    such a read belongs in ``Repository`` (and its fakes), not in ``ShellReads``."""
    called = {(path.relative_to(SERVICE).as_posix(), name)
              for path in SERVICE.rglob("*.py") if path.name != "ports.py"
              for name in _own(ShellReads)
              if re.search(rf"\.{name}\(", path.read_text("utf-8"))}
    assert called == set()
