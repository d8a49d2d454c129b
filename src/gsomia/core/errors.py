"""The one error tree of gsomia.

    GsomiaError
     ├── MalformedInput     input that does not have the expected shape (file, field, value)
     ├── PolicyDenied       a release or access the agreements in force do not allow
     ├── ProofInvalid       a signature, binding, Merkle proof or envelope that does not verify
     └── NoEquivalent       a national level with no equivalent under an agreement

Errors carry data; only the CLI chooses exit codes and only the API chooses HTTP statuses.
"""

from __future__ import annotations


class GsomiaError(Exception):
    """Base of every error gsomia raises on purpose."""


class MalformedInput(GsomiaError):
    """Input that does not have the expected shape.

    ``where`` names the file, field or argument; ``expected`` says how to fix it.
    """

    def __init__(self, what: str, *, where: str = "", expected: str = "") -> None:
        self.what = what
        self.where = where
        self.expected = expected
        parts = [f"{where}: {what}" if where else what]
        if expected:
            parts.append(f"expected {expected}")
        super().__init__("; ".join(parts))


class PolicyDenied(GsomiaError):
    """A release or an access that the agreements in force do not allow."""

    def __init__(self, reasons: tuple[str, ...] | list[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__("; ".join(self.reasons) or "denied")


class ProofInvalid(GsomiaError):
    """A signature, label binding, Merkle proof or envelope that does not verify."""


class NoEquivalent(GsomiaError):
    """A national level that an agreement's equivalence table does not cover."""

    def __init__(self, agreement: str, party: str, level: str, to_party: str) -> None:
        self.agreement = agreement
        self.party = party
        self.level = level
        self.to_party = to_party
        super().__init__(
            f"{party} level {level!r} has no {to_party} equivalent under {agreement}: "
            "the agreement does not cover it, so it cannot be released under it"
        )
