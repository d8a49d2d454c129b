"""The one error tree of gsomia.

    GsomiaError
     ├── ActionRefused      an operator's action the desk refuses (role, request, hidden item)
     ├── MalformedInput     input that does not have the expected shape (file, field, value)
 │    ├── PortTaken     a port asked for (or picked free) that another process took first
     │    ├── PartnerUnreachable  a partner that took no connection: it was sent nothing
     │    └── EntriesRewritten  a sealed batch leaf's entries that do not hash to its root
     ├── PolicyDenied       a release or access the agreements in force do not allow
     │    └── LimitReached  a partner's rows of one kind at the node's bound for them
     ├── ProofInvalid       a signature, binding, Merkle proof or envelope that does not verify
     │    └── Replayed      an envelope whose nonce was seen before
     ├── NoEquivalent       a national level with no equivalent under an agreement
     ├── NotFound           nothing the caller may see is there (whether or not something is)
     ├── RolledBack         a partner holds a head of this node that the local log does not extend
     └── Unavailable        the node cannot serve this now; nothing is served in its place
          ├── AuditUnavailable   the access log cannot be written, so nothing may be read
          └── PeerUnavailable    the node cannot take this kind of peer message yet

Errors carry data; only the CLI chooses exit codes and only the API chooses HTTP statuses.
``MalformedInput.where`` names a field as the service knows it (``rel_to``), never a
command-line flag: the CLI translates fields into its flags (:meth:`MalformedInput.describe`),
and an API client reads the field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "ActionRefused",
    "AuditUnavailable",
    "EntriesRewritten",
    "GsomiaError",
    "LimitReached",
    "MalformedInput",
    "NoEquivalent",
    "NotFound",
    "PartnerUnreachable",
    "PeerUnavailable",
    "PolicyDenied",
    "PortTaken",
    "ProofInvalid",
    "Replayed",
    "RolledBack",
    "Unavailable",
]


class GsomiaError(Exception):
    """Base of every error gsomia raises on purpose."""


class MalformedInput(GsomiaError):
    """Input that does not have the expected shape.

    ``where`` names the file or field (as the service knows it); ``expected`` says how to
    fix it.
    """

    def __init__(self, what: str, *, where: str = "", expected: str = "") -> None:
        self.what = what
        self.where = where
        self.expected = expected
        super().__init__(self.describe())

    def describe(self, name: Callable[[str], str] = str) -> str:
        """The message, with ``where`` as ``name`` calls it (the CLI passes field → flag)."""
        where = name(self.where) if self.where else ""
        parts = [f"{where}: {self.what}" if where else self.what]
        if self.expected:
            parts.append(f"expected {self.expected}")
        return "; ".join(parts)


class EntriesRewritten(MalformedInput):
    """The entries kept beside a sealed batch leaf do not hash to the root it commits to:
    ``audit verify`` reports the row as modified rather than malformed."""


class PartnerUnreachable(MalformedInput):
    """A partner that took no connection: it got nothing, so nothing it does can answer
    what was to be sent (a consent request is marked failed, not left pending)."""


class PortTaken(MalformedInput):
    """A node exited at start because another process listens on its port: a port given
    on the command line is bad input; one picked free was taken in between, and the
    federation starts again on others."""


class ActionRefused(GsomiaError):
    """An operator's action refused at the desk: answered ``status`` with ``public`` (what
    the person may be told); the log keeps ``reasons``."""

    def __init__(self, status: int, public: str, reasons: tuple[str, ...],
                 item_id: str | None = None) -> None:
        super().__init__(public)
        self.status, self.public, self.reasons, self.item_id = status, public, reasons, item_id


def _reasons(error: str, given: Sequence[str]) -> tuple[str, ...]:
    """``given`` as a tuple of reasons: a bare str, itself a sequence of str, would be kept
    as one reason a letter, and a reason that is no str would fail only when joined."""
    if isinstance(given, str):
        raise TypeError(f"{error} takes a tuple of reasons, not a str: write "
                        f"{error}(({given!r},))")
    reasons = tuple(given)
    for i, reason in enumerate(reasons):
        if not isinstance(reason, str):
            raise TypeError(f"{error}: reasons[{i}] is {type(reason).__name__}, not str")
    return reasons


class PolicyDenied(GsomiaError):
    """A release or an access that the agreements in force do not allow."""

    def __init__(self, reasons: tuple[str, ...] | list[str]) -> None:
        self.reasons = _reasons(type(self).__name__, reasons)
        super().__init__("; ".join(self.reasons) or "denied")


class LimitReached(PolicyDenied):
    """A partner has made this node keep as many rows of one kind as it keeps for one
    partner (``limit``, a name of ``[limits]`` in ``node.toml``, at ``bound``): the next
    is refused, never stored and never dropped silently."""

    def __init__(self, limit: str, bound: int, what: str) -> None:
        self.limit, self.bound = limit, bound
        super().__init__((f"{what}: this node keeps at most {bound} per partner "
                          f"({limit})",))


class ProofInvalid(GsomiaError):
    """A signature, label binding, Merkle proof or envelope that does not verify."""


class Replayed(ProofInvalid):
    """An envelope whose nonce this node has seen before."""

    def __init__(self, reasons: tuple[str, ...] | list[str]) -> None:
        self.reasons = _reasons(type(self).__name__, reasons)
        super().__init__("; ".join(self.reasons))


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


class NotFound(GsomiaError):
    """Nothing the caller may see is there (whether or not something is)."""


class RolledBack(GsomiaError):
    """A partner holds a head of this node that the local log does not extend."""


class Unavailable(GsomiaError):
    """The node cannot serve this now: it refuses rather than serve it otherwise."""


class AuditUnavailable(Unavailable):
    """The access log cannot be written, so nothing may be read."""


class PeerUnavailable(Unavailable):
    """The node cannot take this kind of peer message yet."""
