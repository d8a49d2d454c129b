"""Reading a partner's heads by index (largest held, last found consistent) answers as the
reading of every head in the log did, whatever the log holds: ties, several heads of one
partner, heads signed by someone else, records of others, rows that cannot be read."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gsomia.core.audit import AuditKind, TreeHead, sign_tree_head, verify_tree_head
from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.shell.node import Node
from gsomia.shell.notices import _recorded_base, head_events
from gsomia.shell.partner_check import held_head_of

PARTNER_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
AT = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
FIRST = 1_000_000  # the generated records' seqs: after the node's own events
EXCHANGED = AuditKind.TREE_HEAD_EXCHANGED.value
INCONSISTENT = AuditKind.PARTNER_LOG_INCONSISTENT.value


def every_head_held(node: Node, partner: str, public: Ed25519PublicKey) -> TreeHead | None:
    """held_head_of as it was: every head of the log read and parsed."""
    best: TreeHead | None = None
    with node.store.repository() as repo:
        rows = head_events(repo)
    for row in rows:
        try:
            details = json.loads(row.details)
            if details.get("partner") != partner:
                continue
            head = TreeHead.from_json(details["head"])
        except (ValueError, KeyError, TypeError, AttributeError, MalformedInput):
            continue
        if best is not None and head.size <= best.size:
            continue
        try:
            verify_tree_head(head, public)
        except ProofInvalid:
            continue
        best = head
    return best


def every_head_base(node: Node, partner: str, skip: bool) -> TreeHead | None:
    """_recorded_base as it was (``skip``: passing over a row that cannot be read, where
    it raised)."""
    with node.store.repository() as repo:
        rows = head_events(repo)
    for row in rows:
        if row.kind != EXCHANGED:
            continue
        try:
            details = json.loads(row.details)
            if details.get("partner") == partner and details.get("consistent") is True:
                return TreeHead.from_json(details["head"])
        except (ValueError, KeyError, TypeError, AttributeError, MalformedInput):
            if not skip:
                raise
    return None


def _head(size: int, key: Ed25519PrivateKey, root: int) -> dict[str, Any]:
    return sign_tree_head(size, bytes([root]) * 32, AT, key).to_json()


SIZES = st.one_of(st.integers(0, 6), st.just(2 ** 53 - 1))
SIGNED = st.builds(_head, SIZES, st.sampled_from([PARTNER_KEY, PARTNER_KEY, OTHER_KEY]),
                   st.integers(0, 3))
HEADS = st.one_of(
    SIGNED, SIGNED, SIGNED,
    # not a head: sizes a parse refuses, a missing member
    st.builds(lambda h, size: {**h, "size": size},
              st.builds(_head, st.integers(0, 6), st.just(PARTNER_KEY), st.just(0)),
              st.sampled_from([True, -1, "3", 2.0, None])),
    st.builds(lambda h: {k: v for k, v in h.items() if k != "root"},
              st.builds(_head, st.integers(0, 6), st.just(PARTNER_KEY), st.just(0))),
)
ABSENT = object()
DETAILS = st.one_of(
    st.builds(lambda partner, head, consistent: json.dumps(
        {k: v for k, v in (("partner", partner), ("head", head), ("consistent", consistent))
         if v is not ABSENT}, sort_keys=True, separators=(",", ":")),
        st.sampled_from(["KOR", "KOR", "KOR", "USA", 5, ABSENT]), HEADS,
        st.sampled_from([True, False, "true", ABSENT])),
    st.sampled_from(["{", "[]", "null", '"KOR"', '{"partner":"KOR"}',
                     '{"head":[],"partner":"KOR"}', '{"consistent":true,"partner":"KOR"}']),
)
RECORDS = st.lists(st.tuples(st.sampled_from([EXCHANGED, EXCHANGED, INCONSISTENT,
                                              "item-read"]), DETAILS), max_size=16)


def _record(kind: str, size: int, root: int, key: Ed25519PrivateKey = PARTNER_KEY,
            consistent: bool = True) -> tuple[str, str]:
    return kind, json.dumps({"consistent": consistent, "head": _head(size, key, root),
                             "partner": "KOR"}, sort_keys=True, separators=(",", ":"))


# Equal sizes (the newest is the answer), a larger head signed by someone else, a larger
# one recorded inconsistent, a malformed row between them.
TIES = [_record(EXCHANGED, 3, 0), _record(EXCHANGED, 3, 1), _record(EXCHANGED, 5, 2, OTHER_KEY),
        (EXCHANGED, "{"), _record(INCONSISTENT, 4, 3, consistent=False),
        _record(EXCHANGED, 3, 2, consistent=False)]


def _write(node: Node, records: list[tuple[str, str]]) -> None:
    """The records straight into the log's table (a row the node would never write, too)."""
    with node.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq >= :first"),
                     {"first": FIRST})
        if records:
            conn.execute(sa.text(
                "INSERT INTO audit_events (seq, kind, at, actor, details, leaf_hash) "
                "VALUES (:seq, :kind, '2024-03-01T09:00:00Z', 'KOR', :details, :leaf)"),
                [{"seq": FIRST + n, "kind": kind, "details": details, "leaf": bytes(32)}
                 for n, (kind, details) in enumerate(records)])


def _check(node: Node, records: list[tuple[str, str]]) -> None:
    _write(node, records)
    public = PARTNER_KEY.public_key()
    for partner in ("KOR", "USA"):
        assert held_head_of(node, partner, public) == every_head_held(node, partner, public)
        with node.store.repository() as repo:
            base = _recorded_base(repo, partner)
        assert base == every_head_base(node, partner, skip=True)
        # where the old reading did not stop at a row it could not read, it agrees too
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError,
                                 MalformedInput):
            assert base == every_head_base(node, partner, skip=False)


def test_the_heads_read_by_index_are_those_every_head_gave(
        node_factory: Callable[..., Node]) -> None:
    from gsomia.shell.store._repository import _HEADS_BY_SIZE

    jpn = node_factory("JPN")  # one node for every example: records are written anew
    with jpn.store.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + _HEADS_BY_SIZE.text.replace(
            ":partner", "'KOR'")).all()
    details = " ".join(str(row[-1]) for row in plan)
    assert "ix_audit_events_partner_size" in details and "TEMP B-TREE" not in details

    @settings(max_examples=40, deadline=None)
    @given(records=RECORDS)
    @example(records=TIES)
    def reads(records: list[tuple[str, str]]) -> None:
        _check(jpn, records)

    reads()


@pytest.fixture
def pg_jpn(node_factory: Callable[..., Node], pg_url: str) -> Node:
    return node_factory("JPN", pg_url)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=RECORDS)
@example(records=TIES)
def test_the_same_on_postgresql(pg_jpn: Node, records: list[tuple[str, str]]) -> None:
    _check(pg_jpn, records)
