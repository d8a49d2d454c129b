"""Merkle proofs against the RFC 9162 definitions, written out recursively as the RFC does."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.audit import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from gsomia.core.errors import ProofInvalid

# ---- the reference: RFC 9162 §2.1 word for word ---------------------------------------------


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = ref_k(len(d))
    return ref_node(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (§2.1.3.1)."""
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (§2.1.4.1)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


ALL = leaves(300)
FORKED = leaves(300, b"fork")


# ---- roots ------------------------------------------------------------------------------


def test_root_matches_the_definition_for_every_size_to_300() -> None:
    for n in range(301):
        assert root(ALL[:n]) == ref_mth(ALL[:n]), n


def test_empty_tree_is_the_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


# ---- inclusion --------------------------------------------------------------------------


def test_inclusion_proofs_match_the_definition_for_all_indices_to_64() -> None:
    for n in range(1, 65):
        top = ref_mth(ALL[:n])
        for i in range(n):
            proof = inclusion_proof(ALL, i, n)
            assert proof == ref_path(i, ALL[:n]), (i, n)
            verify_inclusion(ALL[i], i, n, proof, top)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_verify_for_sizes_to_300(case: tuple[int, int]) -> None:
    n, i = case
    proof = inclusion_proof(ALL, i, n)
    assert proof == ref_path(i, ALL[:n])
    verify_inclusion(ALL[i], i, n, proof, ref_mth(ALL[:n]))


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 200).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(0, n - 1),
                        st.integers(1, 260))))
def test_inclusion_proof_fails_for_another_index_size_or_root(
        case: tuple[int, int, int, int]) -> None:
    n, i, j, other_n = case
    proof = inclusion_proof(ALL, i, n)
    top = ref_mth(ALL[:n])
    if j != i:
        with pytest.raises(ProofInvalid):
            verify_inclusion(ALL[i], j, n, proof, top)
        with pytest.raises(ProofInvalid):
            verify_inclusion(ALL[j], i, n, proof, top)
    if other_n != n and i < other_n:
        # The path alone does not fix the size (leaf 0 of 129 and of 130 share a path shape):
        # it is the signed head's (size, root) pair that the proof must meet.
        with pytest.raises(ProofInvalid):
            verify_inclusion(ALL[i], i, other_n, proof, ref_mth(ALL[:other_n]))
    with pytest.raises(ProofInvalid):
        verify_inclusion(ALL[i], i, n, proof, ref_mth(FORKED[:n]))


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 200).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(0, 31), st.data())))
def test_a_changed_truncated_or_padded_inclusion_proof_fails(case: tuple) -> None:  # type: ignore[type-arg]
    n, i, bit, data = case
    proof = inclusion_proof(ALL, i, n)
    top = ref_mth(ALL[:n])
    at = data.draw(st.integers(0, len(proof) - 1))
    flipped = list(proof)
    flipped[at] = bytes(b ^ (1 << (bit % 8)) if k == bit else b for k, b in enumerate(proof[at]))
    for bad in (flipped, proof[:-1], [*proof, proof[-1]]):
        with pytest.raises(ProofInvalid):
            verify_inclusion(ALL[i], i, n, bad, top)


@settings(max_examples=100, deadline=None)
@given(st.integers(3, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_a_subtree_path_does_not_pass_for_the_whole_tree(case: tuple[int, int]) -> None:
    """Cut the path short and offer the subtree root it reaches: the size must refuse it."""
    n, i = case
    proof = inclusion_proof(ALL, i, n)
    if len(proof) < 2:
        return
    r = ALL[i]
    fn, sn = i, n - 1
    for p in proof[:-1]:  # the RFC walk, stopped one level below the root
        if fn & 1 or fn == sn:
            r = ref_node(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = ref_node(r, p)
        fn, sn = fn >> 1, sn >> 1
    with pytest.raises(ProofInvalid, match="shorter"):
        verify_inclusion(ALL[i], i, n, proof[:-1], r)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_a_padded_path_does_not_prove_a_taller_tree(case: tuple[int, int]) -> None:
    """One more hash above the root would make a new 'root' of the same size: refused."""
    n, i = case
    proof = inclusion_proof(ALL, i, n)
    extra = FORKED[0]
    with pytest.raises(ProofInvalid, match="longer"):
        verify_inclusion(ALL[i], i, n, [*proof, extra], ref_node(extra, ref_mth(ALL[:n])))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 200).flatmap(lambda n: st.tuples(st.integers(1, n - 1), st.just(n))))
def test_a_padded_or_cut_consistency_proof_is_refused(case: tuple[int, int]) -> None:
    m, n = case
    proof = consistency_proof(ALL, m, n)
    old, new, extra = ref_mth(ALL[:m]), ref_mth(ALL[:n]), FORKED[0]
    with pytest.raises(ProofInvalid, match="longer"):
        verify_consistency(m, n, ref_node(extra, old), ref_node(extra, new), [*proof, extra])
    if len(proof) < 2:
        return
    # Walk the RFC algorithm over all but the last hash and offer what it reaches.
    path = list(proof[:-1])
    if m & (m - 1) == 0:
        path.insert(0, old)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr, sr = ref_node(c, fr), ref_node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = ref_node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn == 0:
        return  # the cut proof happens to end at the top: nothing to offer
    with pytest.raises(ProofInvalid):
        verify_consistency(m, n, fr, sr, proof[:-1])


def test_index_outside_the_tree_is_refused() -> None:
    with pytest.raises(ProofInvalid):
        verify_inclusion(ALL[0], 5, 5, [], ref_mth(ALL[:5]))
    with pytest.raises(ProofInvalid):
        verify_inclusion(ALL[0], -1, 5, [], ref_mth(ALL[:5]))


# ---- consistency ------------------------------------------------------------------------


def test_consistency_proofs_match_the_definition_for_all_sizes_to_48() -> None:
    for n in range(1, 49):
        new = ref_mth(ALL[:n])
        for m in range(1, n + 1):
            proof = consistency_proof(ALL, m, n)
            assert proof == (ref_proof(m, ALL[:n]) if m < n else []), (m, n)
            verify_consistency(m, n, ref_mth(ALL[:m]), new, proof)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_consistency_proofs_verify_for_sizes_to_300(case: tuple[int, int]) -> None:
    m, n = case
    proof = consistency_proof(ALL, m, n)
    if 0 < m < n:
        assert proof == ref_proof(m, ALL[:n])
    verify_consistency(m, n, ref_mth(ALL[:m]), ref_mth(ALL[:n]), proof)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 200).flatmap(
    lambda n: st.tuples(st.integers(1, n - 1), st.just(n), st.integers(1, 260))))
def test_consistency_fails_against_a_fork_or_other_sizes(case: tuple[int, int, int]) -> None:
    m, n, other = case
    proof = consistency_proof(ALL, m, n)
    old, new = ref_mth(ALL[:m]), ref_mth(ALL[:n])
    # A log that rewrote any of the first m leaves: its new root is not consistent.
    forked = ALL[:n]
    forked[m - 1] = FORKED[m - 1]
    with pytest.raises(ProofInvalid):
        verify_consistency(m, n, old, ref_mth(forked), proof)
    # A proof from the forked log does not link the honest old root either.
    with pytest.raises(ProofInvalid):
        verify_consistency(m, n, old, ref_mth(forked), consistency_proof(forked, m, n))
    with pytest.raises(ProofInvalid):
        verify_consistency(m, n, ref_mth(FORKED[:m]), new, proof)
    # As with inclusion, a proof meets (size, root) pairs: against the true roots of other
    # sizes it must fail.
    if other not in (m, n) and other < n:
        with pytest.raises(ProofInvalid):
            verify_consistency(other, n, ref_mth(ALL[:other]), new, proof)
    if other > m and other != n:
        with pytest.raises(ProofInvalid):
            verify_consistency(m, other, old, ref_mth(ALL[:other]), proof)
    with pytest.raises(ProofInvalid):
        verify_consistency(m, n, old, new, proof[:-1])


def test_equal_and_empty_sizes() -> None:
    r = ref_mth(ALL[:7])
    verify_consistency(7, 7, r, r, [])
    verify_consistency(0, 7, EMPTY_ROOT, r, [])
    with pytest.raises(ProofInvalid):
        verify_consistency(7, 7, r, ref_mth(FORKED[:7]), [])
    with pytest.raises(ProofInvalid):
        verify_consistency(7, 7, r, r, [r])
    with pytest.raises(ProofInvalid):
        verify_consistency(8, 7, r, r, [])
    with pytest.raises(ProofInvalid):
        verify_consistency(3, 7, ref_mth(ALL[:3]), r, [])


# ---- the accumulator --------------------------------------------------------------------


def test_accumulator_root_equals_the_batch_root_at_every_size() -> None:
    acc = MerkleAccumulator()
    assert acc.root() == EMPTY_ROOT
    for n, h in enumerate(ALL, start=1):
        assert acc.append(h) == n - 1
        assert acc.root() == ref_mth(ALL[:n])
        assert len(acc.frontier) == n.bit_count() <= n.bit_length()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300))
def test_accumulator_survives_persisting_and_resuming(split: int, total: int) -> None:
    split, total = min(split, total), max(split, total)
    first = MerkleAccumulator.of(ALL[:split])
    resumed = MerkleAccumulator.from_json(first.to_json())
    assert resumed == first
    resumed.extend(ALL[split:total])
    assert resumed.root() == root(ALL[:total]) == MerkleAccumulator.of(ALL[:total]).root()
    assert first.size == split  # the original is untouched
