"""The service layer: use cases over the core, behind ports the shell implements.

Modules by role: ``ports`` and ``taxii_ports`` (what the shell must provide), ``handlers``
(publish, release, receive, audit), ``access`` (who may read and act: every way in asks it),
``taxii`` (what a TAXII caller sees), ``stories`` (the agreements' story). The names below
are re-exported, loaded on first use, and pinned by ``tests/unit/test_exported_members.py``.
"""

from __future__ import annotations

from gsomia._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _HOME)
