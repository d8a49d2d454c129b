"""The pure core: no I/O, no clock, no environment; randomness only in HPKE sealing.

Each module is a role (``labels``, ``agreements``, ``policy``, ``crypto``, ``audit``...); the
names most callers need are re-exported here, as httpx does, and pinned by
``tests/unit/test_exported_members.py``. They load on first use, so that importing one
module (``gsomia.core.errors`` at the command line's start) does not load them all.
"""

from __future__ import annotations

from gsomia._lazy import lazy_exports

__all__ = [
    "PARTIES", "SECRET_LEVELS", "Agreement", "AuditEvent", "AuditKind", "AuditUnavailable",
    "Catalogue", "Decision", "Envelope", "GsomiaError", "LabelVocabulary", "MalformedInput",
    "NoEquivalent", "NotFound", "Party", "PeerUnavailable", "Person", "PolicyDenied",
    "PortTaken", "ProofInvalid", "Receipt", "ReleaseRequest", "Replayed", "RolledBack", "Scheme",
    "SecurityLabel", "TreeHead", "Unavailable", "bind", "decide", "decide_access", "instant",
    "iso", "party", "utc_text", "verify_binding", "verify_log",
]

_HOME = {
    **dict.fromkeys(("AuditUnavailable", "GsomiaError", "MalformedInput", "NoEquivalent",
                     "NotFound", "PeerUnavailable", "PolicyDenied", "PortTaken", "ProofInvalid",
                     "Replayed", "RolledBack", "Unavailable"), "errors"),
    **dict.fromkeys(("PARTIES", "SECRET_LEVELS", "Party", "instant", "iso", "party",
                     "utc_text"), "types"),
    **dict.fromkeys(("LabelVocabulary", "Scheme", "SecurityLabel"), "labels"),
    **dict.fromkeys(("Agreement", "Catalogue"), "agreements"),
    **dict.fromkeys(("Decision", "Person", "ReleaseRequest", "decide", "decide_access"),
                    "policy"),
    **dict.fromkeys(("Envelope", "Receipt", "bind", "verify_binding"), "crypto"),
    **dict.fromkeys(("AuditEvent", "AuditKind", "TreeHead", "verify_log"), "audit"),
}


__getattr__, __dir__ = lazy_exports(__name__, _HOME)
