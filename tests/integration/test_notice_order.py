"""Only the originator's newest classification notice is in force at a holder (hunt29).

JPN lowers its item, then raises it back; the holder (KOR, on real node stores) is handed the
two notices newest first, as a relay that reorders them, or a retry that lands late, would.
Before the fix the older notice was applied last and left the item lowered at KOR."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from federating import ingested
from gsomia.core.audit import AuditKind
from gsomia.core.errors import PolicyDenied
from gsomia.service import handlers
from gsomia.service.handlers import LabelRequest
from gsomia.service.refusals import RefusalWindow
from gsomia.shell import notices
from gsomia.shell.node import Node
from gsomia.shell.store._tables import classification_notices

SECRET_JPN = LabelRequest("極秘", ("JPN", "KOR"), "dprk-missile")


def _held_levels(node: Node, item_id: str) -> set[str]:
    with node.store.repository() as repo:
        return {repo.custody_of(item_id, v.version)[-1].national_label.level
                for v in repo.item_versions(item_id)}


def test_an_older_notice_handed_over_after_a_newer_one_leaves_the_item_at_the_newer_level(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime) -> None:
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    obj = make_indicator(1)
    handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue, obj=obj,
                     label=SECRET_JPN, now=now)
    jpn_key = ingested(kor, jpn, obj["id"], now)
    assert _held_levels(kor, obj["id"]) == {"군사II급비밀"}
    later = now + timedelta(hours=1)
    lowered = handlers.change_classification(jpn.uow(), keys=jpn.keys,
                                             schemes=jpn.catalogue.schemes,
                                             item_id=obj["id"], new_level="秘", now=later)
    # Raised back a moment later, by a clock that went back meanwhile: still issued after.
    raised = handlers.change_classification(jpn.uow(), keys=jpn.keys,
                                            schemes=jpn.catalogue.schemes,
                                            item_id=obj["id"], new_level="極秘",
                                            now=later - timedelta(minutes=5))
    assert raised.issued_at > lowered.issued_at

    def hand_over(notice: Any) -> dict[str, Any]:
        return notices.accept_classification_notice(
            kor, notice.to_json(), "JPN", {"JPN": jpn_key}, later + timedelta(minutes=1),
            RefusalWindow())

    assert hand_over(raised)["accepted"]
    assert _held_levels(kor, obj["id"]) == {"군사II급비밀"}
    with pytest.raises(PolicyDenied, match="newer classification notice"):
        hand_over(lowered)  # before the fix: applied, the item re-marked 군사III급비밀
    assert _held_levels(kor, obj["id"]) == {"군사II급비밀"}
    with kor.store.repository() as repo:
        assert [n.signature for n in repo.notices_for(obj["id"])] == [raised.signature]
    with kor.store.reader() as reader:
        kinds = [row["kind"] for row in reader.rows()]
        assert kinds.count(AuditKind.NOTICE_REFUSED.value) == 1
        assert handlers.verify_audit(reader, public_key=kor.keys.public_signing_key()).ok


def test_a_notice_time_rewritten_on_disk_does_not_hold_the_originators_next_notice_back(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime) -> None:
    """The time of the notice in force is read from the holder's disk, which is not trusted:
    rewritten into the far future, it made every later notice of the originator look older
    and be refused for good (403), so the item stayed at the level an older notice had
    lowered it to. A notice held counts only if its signature still verifies over what is
    stored (failed before: JPN's raise was refused)."""
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    obj = make_indicator(2)
    handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue, obj=obj,
                     label=SECRET_JPN, now=now)
    jpn_key = ingested(kor, jpn, obj["id"], now)
    later = now + timedelta(hours=1)

    def hand_over(notice: Any) -> dict[str, Any]:
        return notices.accept_classification_notice(
            kor, notice.to_json(), "JPN", {"JPN": jpn_key}, later + timedelta(minutes=1),
            RefusalWindow())

    lowered = handlers.change_classification(jpn.uow(), keys=jpn.keys,
                                             schemes=jpn.catalogue.schemes,
                                             item_id=obj["id"], new_level="秘", now=later)
    assert hand_over(lowered)["accepted"]
    assert _held_levels(kor, obj["id"]) == {"군사III급비밀"}
    with kor.store.engine.begin() as conn:  # the host's disk, behind the node's back
        conn.execute(sa.update(classification_notices)
                     .values(issued_at=datetime(2099, 1, 1, tzinfo=UTC)))
    raised = handlers.change_classification(jpn.uow(), keys=jpn.keys,
                                            schemes=jpn.catalogue.schemes,
                                            item_id=obj["id"], new_level="極秘",
                                            now=later + timedelta(minutes=1))
    assert hand_over(raised)["accepted"]
    assert _held_levels(kor, obj["id"]) == {"군사II급비밀"}
