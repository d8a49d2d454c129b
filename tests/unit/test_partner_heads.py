"""A partner's head is judged consistent only if the tree recorded before is a prefix of it.

Generated logs, then an honest extension or a truncated, rewritten or forked variant; the
partner answers with the honest proof for its (possibly rewritten) log, or replays a proof
from the original log, or sends none. The invariant: a consistent verdict implies the
recorded tree is a prefix of the new one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.audit import consistency_proof, leaf_hash, root, sign_tree_head
from gsomia.core.errors import ProofInvalid
from gsomia.core.partner_heads import MerkleLevels, judge_partner_head

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
T0 = datetime(2026, 11, 22, tzinfo=UTC)


def leaves(tags: list[int]) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(t).encode()).digest()) for t in tags]


def head(hashes: list[bytes], key: Ed25519PrivateKey = KEY):  # type: ignore[no-untyped-def]
    return sign_tree_head(len(hashes), root(hashes), T0, key)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[bytes], int, list[bytes], str]:
    """(original log, recorded size, partner's new log, what was done to it)."""
    original = leaves(draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=40,
                                    unique=True)))
    recorded = draw(st.integers(0, len(original)))
    how = draw(st.sampled_from(["extend", "truncate", "rewrite", "fork"]))
    new = list(original)
    if how == "extend":
        new += leaves(draw(st.lists(st.integers(10**6 + 1, 2 * 10**6), max_size=20)))
    elif how == "truncate":
        new = new[:draw(st.integers(0, len(new)))]
    elif how == "rewrite":
        at = draw(st.integers(0, len(new) - 1))
        new[at] = leaf_hash(b"rewritten" + new[at])
    else:  # drop the tail and grow a different one past the old size
        cut = draw(st.integers(0, len(new)))
        new = new[:cut] + leaves(draw(st.lists(st.integers(-10**6, -1), min_size=1,
                                               max_size=30, unique=True)))
    return original, recorded, new, how


@settings(max_examples=400, deadline=None)
@given(histories(), st.sampled_from(["honest", "replayed", "none"]))
def test_an_inconsistent_head_is_never_judged_consistent(
        history: tuple[list[bytes], int, list[bytes], str], answer: str) -> None:
    original, recorded, new, _how = history
    previous = head(original[:recorded]) if recorded else None
    proof: list[bytes] | None
    if answer == "honest" and recorded <= len(new):
        proof = consistency_proof(new, recorded, len(new))
    elif answer == "replayed" and len(new) <= len(original) and recorded <= len(new):
        # The partner replays a proof computed over the log it had before.
        proof = consistency_proof(original, recorded, len(new))
    else:
        proof = None
    verdict = judge_partner_head(previous, head(new), proof, KEY.public_key())
    is_prefix = len(new) >= recorded and root(new[:recorded]) == root(original[:recorded])
    if verdict.consistent:
        assert is_prefix
        assert verdict.from_size == recorded
    # The honest partner whose log only grew is always found consistent.
    if answer == "honest" and new[:len(original)] == original:
        assert verdict.consistent, verdict.reason


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=30, unique=True),
       st.data())
def test_truncation_is_reported_as_shrinking(tags: list[int], data: st.DataObject) -> None:
    hashes = leaves(tags)
    recorded = data.draw(st.integers(1, len(hashes)))
    cut = data.draw(st.integers(0, recorded - 1))
    verdict = judge_partner_head(head(hashes[:recorded]), head(hashes[:cut]), None,
                                 KEY.public_key())
    assert not verdict.consistent and "shrank" in verdict.reason


def test_a_head_not_signed_by_the_partner_is_not_judged_at_all() -> None:
    hashes = leaves(list(range(8)))
    with pytest.raises(ProofInvalid):
        judge_partner_head(head(hashes[:4]), head(hashes, OTHER),
                           consistency_proof(hashes, 4, 8), KEY.public_key())


def test_first_head_and_equal_heads() -> None:
    hashes = leaves(list(range(5)))
    first = judge_partner_head(None, head(hashes), [], KEY.public_key())
    assert first.consistent and first.from_size == 0
    same = judge_partner_head(head(hashes), head(hashes), None, KEY.public_key())
    assert same.consistent
    forked = judge_partner_head(head(hashes), head(leaves(list(range(1, 6)))), None,
                                KEY.public_key())
    assert not forked.consistent and "forked" in forked.reason


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=5), st.data())
def test_cached_levels_give_the_core_proofs(batches: list[int], data: st.DataObject) -> None:
    """Proofs from the incrementally extended levels are byte for byte the core's, and
    their roots are the core's."""
    levels = MerkleLevels()
    hashes: list[bytes] = []
    for n in batches:
        more = leaves(list(range(len(hashes), len(hashes) + n)))
        hashes += more
        levels.extend(more)
        new = data.draw(st.integers(0, len(hashes)))
        old = data.draw(st.integers(0, new))
        assert levels.consistency_proof(old, new) == consistency_proof(hashes, old, new)
        assert levels.mth(0, new) == root(hashes[:new])


# ---- this node's own head, as a partner holds it (a node rolled back in full) ----------------


@settings(max_examples=300, deadline=None)
@given(tags=st.lists(st.integers(0, 10**6), min_size=2, max_size=40, unique=True),
       data=st.data())
def test_a_held_head_fails_exactly_when_the_local_log_does_not_extend_it(
        tags: list[int], data: st.DataObject) -> None:
    """What the node signed and a partner kept (``held``) against the local log: honest
    prefixes pass; a log restored from an older copy, or rewritten, fails; a head not
    signed by the node proves nothing either way."""
    from gsomia.core.partner_heads import judge_held_head

    signed = leaves(tags)
    held_size = data.draw(st.integers(1, len(signed)))
    held = head(signed[:held_size])
    case = data.draw(st.sampled_from(["honest", "rolled-back", "rewritten", "foreign"]))
    local = signed
    if case == "rolled-back":
        local = signed[:data.draw(st.integers(0, held_size - 1))]
    elif case == "rewritten":
        at = data.draw(st.integers(0, held_size - 1))
        local = [*signed[:at], leaf_hash(b"rewritten"), *signed[at + 1:]]
    elif case == "foreign":
        held = head(signed[:held_size], OTHER)
    latest = head(local) if local else None
    proof = consistency_proof(local, held.size, len(local)) if held.size <= len(local) \
        else None
    verdict = judge_held_head(held, latest, proof, KEY.public_key())
    expected = {"honest": "consistent", "rolled-back": "rolled-back", "rewritten": "forked",
                "foreign": "not-ours"}[case]
    assert verdict.status == expected, verdict
    assert verdict.failed == (case in ("rolled-back", "rewritten"))


def test_no_held_head_is_no_verdict() -> None:
    from gsomia.core.partner_heads import judge_held_head

    verdict = judge_held_head(None, head(leaves([1, 2])), [], KEY.public_key())
    assert verdict.status == "none" and not verdict.failed
