"""The release decision the courier takes again as it seals (sealcheck23):
:func:`gsomia.service.outbox.refused_at_seal` refuses exactly what
:func:`gsomia.core.outbox.plan_deliveries` would not queue, whatever the row named, and the
decision it takes once per label of the node's own items is each item's."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as hs

from gsomia.core.agreements import Catalogue
from gsomia.core.custody import ConsentRecord
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import ItemStored, Routing, plan_deliveries
from gsomia.core.policy import Consent
from gsomia.service.outbox import refused_at_seal

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
PARTIES = ("KOR", "JPN", "USA")


def label(originator: str, rel_to: tuple[str, ...], level: str) -> SecurityLabel:
    return SecurityLabel(originator, level, frozenset(rel_to), "dprk-missile",
                         scheme=originator)


LEVELS = {"KOR": "군사II급비밀", "JPN": "秘", "USA": "SECRET"}


@settings(max_examples=60, deadline=None)
@given(me=hs.sampled_from(PARTIES), originators=hs.lists(hs.sampled_from(PARTIES),
                                                          min_size=1, max_size=6),
       rel_tos=hs.lists(hs.sets(hs.sampled_from(PARTIES), min_size=1), min_size=6,
                        max_size=6),
       consented=hs.sets(hs.integers(0, 5)), recipient=hs.sampled_from(PARTIES))
def test_refused_at_seal_is_what_the_queueing_would_not_plan(
        shipped: Catalogue, me: str, originators: list[str], rel_tos: list[set[str]],
        consented: set[int], recipient: str) -> None:
    partners = tuple(p for p in PARTIES if p != me)
    routing = Routing(me, partners, shipped)
    items = [(f"indicator--{k}", "v1",
              label(o, tuple(rel_tos[k] | {o}), LEVELS[o]))
             for k, o in enumerate(originators)]
    # Half the items published at once share their label (the decision taken once).
    items += [(f"indicator--{k}-twin", "v1", lb) for k, (_, _, lb) in enumerate(items)]
    consents = {i: [ConsentRecord(i, lb.originator, recipient, "obtained", {}, NOW)]
                for k, (i, _, lb) in enumerate(items) if k % 6 in consented}
    refused = refused_at_seal(routing, recipient, NOW, items, consents, [])
    grants = {i: [Consent(c.item_id, c.originator, c.recipient) for c in records]
              for i, records in consents.items()}
    planned = {(d.item_id, d.version) for d in plan_deliveries(
        [ItemStored(i, v, lb) for i, v, lb in items], routing, grants, NOW, only=recipient)}
    assert set(refused) == {(i, v) for i, v, _ in items} - planned
    assert all(why.startswith(f"not released to {recipient} as it was sealed: ")
               for why in refused.values())
