"""The service layer: use cases over the core, behind ports the shell implements.

Modules by role: ``ports`` and ``taxii_ports`` (what the shell must provide), ``handlers``
(publish, release, receive, audit), ``taxii`` (who may see what over TAXII), ``stories``
(the agreements' story). The names below are re-exported, loaded on first use, and pinned
by ``tests/unit/test_exported_members.py``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "KeyStore", "LabelRequest", "ObjectStore", "PeerInbox", "Repository", "Served",
    "TaxiiService", "UnitOfWork", "agreement_story",
]

_HOME = {
    **dict.fromkeys(("KeyStore", "Repository", "UnitOfWork"), "ports"),
    **dict.fromkeys(("ObjectStore", "PeerInbox"), "taxii_ports"),
    **dict.fromkeys(("Served", "TaxiiService"), "taxii"),
    "LabelRequest": "handlers",
    "agreement_story": "stories",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
