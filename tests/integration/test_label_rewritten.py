"""The host's disk turned against the node, one step further than an outbox row: the item
itself. sealcheck23's courier decides the release again as it seals, from the label *as
stored*; whoever can write the database file can rewrite that label (``REL TO KOR, JPN`` to
``REL TO KOR, JPN, USA``) and queue a row to USA, or put a JPN-only item's content under a
genuine label that releases to USA. Before sealsig26 either was sealed to USA's key and
posted: USA's receiver refused to keep it (the originator's binding no longer verifies), and
``audit verify`` named it later, but USA had read it. The courier now verifies the binding
of the label and content as stored against the originator's key before it seals; a version
whose binding fails carries nothing, is marked refused with the reason (``delivery-refused``,
``gsomia doctor``), and the other rows go.

Real nodes (SQLite files), each partner's real peer API in process, the trio and wire of
:mod:`test_outbox_rewritten`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs
from test_outbox_rewritten import (
    JPN_ONLY,
    WITH_USA,
    drain,
    held_at,
    insert_as,
    publish,
    rows_of,
    sql,
    trio,
)

from gsomia import bootstrap
from gsomia.core.custody import record_bytes
from gsomia.shell import exchange
from gsomia.shell.doctor import delivery_checks
from gsomia.shell.node import Node

BINDING_FAILS = "its binding does not verify"


def stored(kor: Node, item: tuple[str, str], column: str) -> bytes:
    [(value,)] = sql(kor, f"SELECT {column} FROM items WHERE id = ? AND version = ?", *item)
    return bytes(value)


def rewrite(kor: Node, item: tuple[str, str], column: str, value: bytes) -> None:
    sql(kor, f"UPDATE items SET {column} = ? WHERE id = ? AND version = ?", value, *item)


def widened(label: bytes, *, rel_to: tuple[str, ...] = WITH_USA,
            level: str | None = None) -> bytes:
    """``label`` (stored bytes) released to ``rel_to`` (and at ``level``), in the canonical
    bytes the node itself writes: it reads as a label and the policy would release it."""
    doc = json.loads(label)
    doc["rel_to"] = sorted(rel_to)
    if level is not None:
        doc["level"] = level
    return record_bytes(doc)


def test_a_label_or_content_rewritten_on_disk_is_not_sealed(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Before: the relabelled item and the JPN-only content under a USA label were each
    sealed to USA's key and posted to USA (whose receiver then refused to keep them)."""
    with trio(node_factory) as (kor, partners, couriers, wires):
        relabelled, lowered, secret = (publish(kor, JPN_ONLY, n, make_indicator)
                                       for n in range(3))
        carrier, other = (publish(kor, WITH_USA, n, make_indicator) for n in (3, 4))
        rewrite(kor, relabelled, "label", widened(stored(kor, relabelled, "label")))
        rewrite(kor, lowered, "label", widened(stored(kor, lowered, "label"),
                                               level="군사III급비밀"))
        # The JPN-only content under the carrier's genuine label (its row to USA queued).
        rewrite(kor, carrier, "content", stored(kor, secret, "content"))
        rows = [insert_as(kor, relabelled[0], "USA"), insert_as(kor, lowered[0], "USA")]
        [carrier_row] = [r for r, v in rows_of(kor).items()
                         if v["item_id"] == carrier[0] and v["recipient"] == "USA"]
        rows.append(carrier_row)
        drain(kor, {"USA": couriers["USA"]})

        assert wires["USA"].posted == [(other[0], "USA")]
        assert held_at(partners["USA"], other[0])
        forged = {relabelled[0], lowered[0], carrier[0]}
        assert not any(held_at(partners["USA"], i) for i in forged)
        now = rows_of(kor)
        for row in rows:
            assert now[row]["status"] == exchange.REFUSED
            assert BINDING_FAILS in now[row]["last_error"], now[row]["last_error"]
        refused = {(i, json.loads(d)["recipient"]) for i, d in sql(
            kor, "SELECT item_id, details FROM audit_events WHERE kind = 'delivery-refused'")}
        assert refused == {(i, "USA") for i in forged}
        [check] = [c for c in delivery_checks(kor.folder, bootstrap.catalogue)
                   if c.name == "deliveries"]
        assert not check.ok and "3 refused" in check.detail and BINDING_FAILS in check.detail
        # The rows to JPN of the items rewritten go nowhere either; the genuine ones go.
        drain(kor, {"JPN": couriers["JPN"]})
        assert {i for i, _ in wires["JPN"].posted} == {secret[0], other[0]}


def test_any_rewrite_of_a_stored_item_seals_nothing_its_bound_label_does_not_release(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Security invariant: whatever a held item's stored label, content or binding is
    rewritten to (a wider REL TO, a lower level, another item's content or binding, bytes
    that do not read), with a row to USA queued for it, nothing reaches a partner the label
    the originator bound does not release to; an item left alone is still delivered. One
    trio of nodes for every example. Nor does anything rewritten leave at all: its
    content is not what the originator bound to the label it would go under."""
    numbers = itertools.count()
    bound_to: dict[str, frozenset[str]] = {}
    forged: set[str] = set()  # items whose stored label, content or binding was rewritten
    with trio(node_factory) as (kor, _, couriers, wires):

        @settings(max_examples=8, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(column=hs.sampled_from(["label", "content", "binding"]),
               how=hs.integers(0, 3), to_usa=hs.booleans())
        @example(column="label", how=0, to_usa=True)  # REL TO widened, row to USA
        @example(column="content", how=1, to_usa=False)  # JPN-only content, USA's label
        def one(column: str, how: int, to_usa: bool) -> None:
            n = next(numbers) * 3
            jpn_only, with_usa, untouched = (publish(kor, rel, n + k, make_indicator)
                                             for k, rel in enumerate((JPN_ONLY, WITH_USA,
                                                                      WITH_USA)))
            bound_to.update({jpn_only[0]: frozenset({"JPN"}),
                             with_usa[0]: frozenset({"JPN", "USA"}),
                             untouched[0]: frozenset({"JPN", "USA"})})
            target, source = (jpn_only, with_usa) if to_usa else (with_usa, jpn_only)
            if column == "label":
                value = [widened(stored(kor, target, "label")),
                         widened(stored(kor, target, "label"), level="군사III급비밀"),
                         stored(kor, source, "label"), b"{not json"][how]
            else:
                value = [stored(kor, source, column), b"{}", stored(kor, source, column)[:-1],
                         stored(kor, untouched, column)][how]
            if value != stored(kor, target, column):
                forged.add(target[0])
            rewrite(kor, target, column, value)
            if to_usa:
                insert_as(kor, target[0], "USA")
            drain(kor, couriers)
            for party, wire in wires.items():
                leaked = [i for i, to in wire.posted
                          if to != party or party not in bound_to.get(i, ())]
                assert leaked == [], (party, column, how)
                # Not even under a label that releases to the partner: the content is
                # not the one bound to it.
                assert not forged & {i for i, _ in wire.posted}, (party, column, how)
            assert (untouched[0], "USA") in wires["USA"].posted

        one()
