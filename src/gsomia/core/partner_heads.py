"""Judging a partner's signed tree head against the one recorded before (RFC 9162 §2.1.4).

Partners exchange signed tree heads so that none can later rewrite its log unnoticed: a
node keeps the last head of each partner it found consistent and asks for a consistency
proof from that size to the partner's new head. A new head is consistent only if the proof
shows the recorded tree is a prefix of it. A head that is smaller than the recorded one, or
whose proof fails (a rewritten entry, a fork), is inconsistent; it is kept as evidence but
never becomes the base for the next check.

Pure: heads, proofs and keys in, a verdict out. A head whose signature does not verify is
not the partner's statement at all and raises :class:`ProofInvalid` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core.audit import (
    EMPTY_ROOT,
    TreeHead,
    node_hash,
    verify_consistency,
    verify_tree_head,
)
from gsomia.core.errors import MalformedInput, ProofInvalid

__all__ = ["HeadVerdict", "MerkleLevels", "OwnHeadVerdict", "judge_held_head",
           "judge_partner_head"]

_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class HeadVerdict:
    """Whether ``head`` extends the recorded head of size ``from_size`` (0: none recorded)."""

    consistent: bool
    from_size: int
    reason: str


def judge_partner_head(previous: TreeHead | None, head: TreeHead,
                       proof: Sequence[bytes] | None,
                       partner_public: Ed25519PublicKey) -> HeadVerdict:
    """Check ``head`` is the partner's and extends ``previous`` by ``proof``.

    ``previous`` must be a head of the same partner recorded as consistent before; ``proof``
    is the partner's RFC 9162 consistency proof from ``previous.size`` to ``head.size``
    (``None`` when the partner gave none).
    """
    verify_tree_head(head, partner_public)
    if previous is not None:
        verify_tree_head(previous, partner_public)
    old_size = previous.size if previous is not None else 0
    old_root = previous.root if previous is not None else EMPTY_ROOT
    if head.size < old_size:
        return HeadVerdict(False, old_size, f"the log shrank from {old_size} to {head.size} "
                                            "entries: it was truncated or rewritten")
    if proof is None:
        if old_size not in (0, head.size):
            return HeadVerdict(False, old_size, f"no consistency proof from size {old_size}")
        proof = ()
    try:
        verify_consistency(old_size, head.size, old_root, head.root, list(proof))
    except ProofInvalid as exc:
        return HeadVerdict(False, old_size, str(exc))
    return HeadVerdict(True, old_size, "extends the recorded head" if old_size else
                       "first head recorded")


@dataclass(frozen=True, slots=True)
class OwnHeadVerdict:
    """What a partner's copy of this node's head says about the local log.

    ``status``: ``consistent`` (the local log extends it), ``rolled-back`` (it covers more
    events than the local log holds), ``forked`` (same size or smaller, other history),
    ``not-ours`` (not signed by this node's key: proves nothing either way), ``none`` (the
    partner holds no head of this node).
    """

    status: str
    reason: str

    @property
    def failed(self) -> bool:
        """The local log is proven older than, or different from, what this node signed."""
        return self.status in ("rolled-back", "forked")


def judge_held_head(held: TreeHead | None, latest: TreeHead | None,
                    proof: Sequence[bytes] | None,
                    own_public: Ed25519PublicKey) -> OwnHeadVerdict:
    """Judge the newest head of this node a partner holds against the local log.

    ``latest`` is the local log's latest signed head and ``proof`` the RFC 9162 consistency
    proof from ``held.size`` to ``latest.size`` computed from the local leaves (None when
    ``held`` is larger). A node rolled back in full (database and head file from an older
    copy) signs nothing contradicting itself locally; only what it told others shows it,
    as Certificate Transparency monitors gossip heads (RFC 9162 §8.3).
    """
    if held is None:
        return OwnHeadVerdict("none", "the partner holds no head of this node")
    try:
        verify_tree_head(held, own_public)
    except ProofInvalid as exc:
        return OwnHeadVerdict("not-ours", f"the head the partner returned does not verify "
                                          f"with this node's key: {exc}")
    local = latest.size if latest is not None else 0
    if latest is None or held.size > latest.size:
        return OwnHeadVerdict(
            "rolled-back",
            f"the partner holds this node's head of size {held.size}, signed "
            f"{held.to_json()['timestamp']}, but the local log's latest signed head covers "
            f"{local}: the node was rolled back to an older copy")
    try:
        verify_consistency(held.size, latest.size, held.root, latest.root, list(proof or ()))
    except ProofInvalid as exc:
        return OwnHeadVerdict(
            "forked", f"the partner holds this node's head of size {held.size}, which the "
                      f"local log of {latest.size} does not extend: {exc}")
    return OwnHeadVerdict("consistent", f"the local log of {latest.size} extends the head "
                                        f"of size {held.size} the partner holds")


class MerkleLevels:
    """Every complete, aligned subtree hash of a growing log, so that a consistency proof
    costs O(log n) hashes instead of :func:`gsomia.core.audit.consistency_proof`'s O(n).

    A node answers partners' tree-head exchanges from this; the tests check its proofs are
    byte for byte those of :func:`gsomia.core.audit.consistency_proof`.
    """

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        self.levels[0].extend(leaf_hashes)
        k = 0
        while len(self.levels[k]) >= 2:
            if k + 1 == len(self.levels):
                self.levels.append([])
            below, above = self.levels[k], self.levels[k + 1]
            start = 2 * len(above)
            pairs = iter(below[start:start + (len(below) - start) // 2 * 2])
            # The tight loop of audit.root: a million leaves in about a second.
            above.extend(_sha256(b"\x01" + a + b).digest()
                         for a, b in zip(pairs, pairs, strict=True))
            k += 1

    def mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) (RFC 9162 §2.1.1)."""
        n = hi - lo
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:
            return self.levels[n.bit_length() - 1][lo // n]
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 SUBPROOF, as :func:`gsomia.core.audit.consistency_proof`."""
        if not 0 <= old_size <= new_size <= self.size:
            raise MalformedInput(f"sizes {old_size} to {new_size} do not fit a log of "
                                 f"{self.size}", where="since")
        if old_size in (0, new_size):
            return []
        path: list[bytes] = []
        lo, hi, m, whole = 0, new_size, old_size, True
        while m != hi - lo:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if m <= k:
                path.append(self.mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.mth(lo, lo + k))
                lo += k
                m -= k
                whole = False
        if not whole:
            path.append(self.mth(lo, hi))
        path.reverse()
        return path
