"""What this process bound as it published, the seal does not verify again (sealfast26): the
publish path keeps each binding it signed in the node's remembered checks
(``store.remembered``), keyed on the key, the signature and the exact bytes signed; the seal
recomputes those bytes from what is stored, so a rewrite on disk since publish, even one
that keeps the signature and makes the binding's digest match, is verified and refused.

One real node (SQLite), :func:`gsomia.shell.exchange.payloads_of` as the courier calls it,
the signatures counted as they are submitted; and the trio of :mod:`test_label_rewritten`
for the courier's whole seal."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from test_label_rewritten import BINDING_FAILS, rewrite, stored, widened
from test_outbox_rewritten import (
    JPN_ONLY,
    drain,
    held_at,
    insert_as,
    publish,
    rows_of,
    sql,
    trio,
)

from counting import Counted
from gsomia.core import crypto
from gsomia.core.outbox import Routing
from gsomia.service.ports import checks_here
from gsomia.shell import exchange
from gsomia.shell.node import Node
from gsomia.shell.signatures import RememberingChecks


def sealed(kor: Node, items: Sequence[tuple[str, str]], remembered: RememberingChecks
           ) -> tuple[set[str], dict[tuple[str, str], str]]:
    """The items ``payloads_of`` would seal to JPN, and those it refuses, both halves of
    the batch's checks through ``remembered``."""
    now = datetime.now(UTC)
    with kor.store.repository() as repo:
        payloads, refused = exchange.payloads_of(
            repo, list(items), "JPN", now, Routing("KOR", ("JPN",), kor.catalogue),
            {"KOR": kor.keys.public_signing_key()}, remembered, remembered)
    return {i for i, _ in payloads}, refused


def forged(kor: Node, item: tuple[str, str]) -> None:
    """``item``'s label widened to USA on disk, and its binding's digest made that of the
    label as rewritten, the signature kept: it matches what is stored, and only the
    signature, over other bytes than these, says it was not this node that bound them."""
    label = widened(stored(kor, item, "label"))
    binding = json.loads(stored(kor, item, "binding"))
    binding["digest"] = crypto.b64u(crypto.binding_digest_of(label,
                                                             stored(kor, item, "content")))
    rewrite(kor, item, "label", label)
    rewrite(kor, item, "binding", crypto.canonical(binding))


def test_an_item_published_here_is_sealed_without_a_verification(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    kor = node_factory("KOR")
    items = [publish(kor, JPN_ONLY, n, make_indicator) for n in range(3)]
    counted = Counted()
    assert sealed(kor, items, kor.store.remembered.through(counted)) == (
        {i for i, _ in items}, {})
    assert counted.made == 0
    # The same seal with a keeping of its own (another process's): each is verified.
    assert sealed(kor, items, RememberingChecks(counted)) == ({i for i, _ in items}, {})
    assert counted.made == 3


def test_published_here_then_rewritten_is_verified_and_refused(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Fails if the keeping were looked up by key and signature alone (or by the item):
    the rewritten version's signature is the one this node made, over other bytes."""
    kor = node_factory("KOR")
    rewritten, left = (publish(kor, JPN_ONLY, n, make_indicator) for n in (10, 11))
    forged(kor, rewritten)
    counted = Counted()
    names, refused = sealed(kor, [rewritten, left], kor.store.remembered.through(counted))
    assert names == {left[0]}
    assert refused == {rewritten: f"{BINDING_FAILS}: {crypto.BINDING_SIGNATURE_FAILS}"}
    assert counted.made == 1  # the rewritten one only, the other found


def test_the_courier_refuses_what_was_rewritten_right_after_it_was_published(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """The courier's whole seal, its checks the node's (signature worker and this process):
    published, forged on disk before the first seal, a row to USA queued; nothing of it
    reaches USA (or JPN), the row is refused; the item beside it goes."""
    with trio(node_factory) as (kor, partners, couriers, wires):
        rewritten, left = (publish(kor, JPN_ONLY, n, make_indicator) for n in (20, 21))
        forged(kor, rewritten)
        row = insert_as(kor, rewritten[0], "USA")
        drain(kor, couriers)
        assert wires["USA"].posted == []
        assert wires["JPN"].posted == [(left[0], "JPN")]
        assert held_at(partners["JPN"], left[0])
        assert rows_of(kor)[row]["status"] == exchange.REFUSED
        assert BINDING_FAILS in rows_of(kor)[row]["last_error"]


def test_a_stored_item_that_does_not_read_is_refused_and_the_rest_sealed(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """review26: a label retyped to text on disk (SQLite keeps it, the store reads it back
    as text), and content bytes that do not read under a binding whose digest was made to
    match them, each raised out of ``payloads_of``: the courier's pass failed at every try
    and the link's rows behind them waited for ever. Each is refused, the item beside goes."""
    kor = node_factory("KOR")
    retyped, unreadable, left = (publish(kor, JPN_ONLY, n, make_indicator)
                                 for n in (40, 41, 42))
    sql(kor, "UPDATE items SET label = CAST(label AS TEXT) WHERE id = ? AND version = ?",
        *retyped)
    content = b"{not json"
    binding = json.loads(stored(kor, unreadable, "binding"))
    binding["digest"] = crypto.b64u(crypto.binding_digest_of(
        stored(kor, unreadable, "label"), content))
    rewrite(kor, unreadable, "content", content)
    rewrite(kor, unreadable, "binding", crypto.canonical(binding))
    names, refused = sealed(kor, [retyped, unreadable, left], RememberingChecks(checks_here))
    assert names == {left[0]}
    assert set(refused) == {retyped, unreadable}
    assert "its stored label or content is not bytes" in refused[retyped]
    # The signature over the bytes the node bound says the last word.
    assert refused[unreadable] == f"{BINDING_FAILS}: {crypto.BINDING_SIGNATURE_FAILS}"
