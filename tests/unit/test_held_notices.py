"""A receipt recorded after the originator re-classified the item owes its holder the newest
notice (noticeflight29): :func:`gsomia.core.outbox.plan_held_notices` over generated
notices and receipts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.custody import ClassificationNotice, sign_classification_notice
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import CLASSIFICATION, ReceiptObtained, plan_held_notices

KOR, USA = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
LEVELS = ("군사I급비밀", "군사II급비밀", "군사III급비밀")
ITEMS = tuple(f"indicator--00000000-0000-4000-8000-00000000000{n}" for n in (1, 2))


@settings(max_examples=300, deadline=None)
@given(bound=st.tuples(st.sampled_from(LEVELS), st.sampled_from(LEVELS)),
       notices=st.lists(st.tuples(st.sampled_from(LEVELS), st.integers(0, 50),
                                  st.sampled_from(ITEMS), st.sampled_from(("KOR", "USA"))),
                        max_size=6),
       receipts=st.lists(st.tuples(st.sampled_from(ITEMS), st.sampled_from(("v1", "v2")),
                                   st.sampled_from(("JPN", "USA", "KOR"))), max_size=5),
       me=st.sampled_from(("KOR", "USA")))
def test_each_holder_is_owed_the_originators_newest_notice_once_if_its_version_differs(
        bound: tuple[str, str], notices: list[tuple[str, int, str, str]],
        receipts: list[tuple[str, str, str]], me: str) -> None:
    """Security invariant: for every (item, partner) with a receipt just recorded, at most
    one notice is planned; it is the newest of the item's originator's (by its time; a tie
    may give any of the tied), it goes exactly when a version receipted was bound at
    another level than it sets, and never to this node nor to the originator. Notices of
    another party (not the originator) or of another item are never sent."""
    versions = {"v1": bound[0], "v2": bound[1]}
    labels = {(item, v): SecurityLabel("KOR", level, frozenset({"KOR", "JPN", "USA"}),
                                       "dprk-missile")
              for item in ITEMS for v, level in versions.items()}
    held: dict[str, list[ClassificationNotice]] = {}
    for level, at, item, signer in notices:
        held.setdefault(item, []).append(sign_classification_notice(
            item_id=item, originator=signer, old_level="군사II급비밀", new_level=level,
            issued_at=T0 + timedelta(seconds=at), key=KOR if signer == "KOR" else USA))
    obtained = [ReceiptObtained(i, v, p) for i, v, p in receipts]
    planned = plan_held_notices(obtained, me, held, labels)

    keys = [(n.item_id, n.recipient) for n in planned]
    assert len(keys) == len(set(keys))
    for due in planned:
        assert due.kind == CLASSIFICATION and due.recipient not in (me, "KOR")
        doc = json.loads(due.body)
        assert doc["originator"] == "KOR" and doc["item_id"] == due.item_id
    by_key = {(n.item_id, n.recipient): json.loads(n.body) for n in planned}
    for item, _, peer in receipts:
        kor = [n for n in held.get(item, ()) if n.originator == "KOR"]
        if peer in (me, "KOR") or not kor:
            assert (item, peer) not in by_key
            continue
        latest = max(n.issued_at for n in kor)
        tied = {n.new_level for n in kor if n.issued_at == latest}
        levels = {versions[v] for i, v, p in receipts if (i, p) == (item, peer)}
        sent = by_key.get((item, peer))
        if sent is not None:
            assert sent["new_level"] in tied and any(level != sent["new_level"]
                                                    for level in levels)
        if len(tied) == 1:
            [newest] = tied
            assert (sent is not None) == any(level != newest for level in levels)

def test_no_notice_held_plans_nothing() -> None:
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
    assert plan_held_notices([ReceiptObtained(ITEMS[0], "v1", "JPN")], "KOR", {},
                             {(ITEMS[0], "v1"): label}) == []
