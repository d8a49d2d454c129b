"""An item whose originator changed its level after binding it does not leave at the old level
(hunt29).

An envelope carries the label the originator bound, never the notices in force, and the seal's
recheck decided on that label: KOR published an item at 군사II급비밀 REL TO KOR, JPN (its
delivery to JPN queued), then raised it to 군사I급비밀, its top level, which the JPN-KOR
agreement does not cover. The delivery, sealed after the raise (JPN down a while, or its
connection held up), went out all the same, and JPN kept the item at 極秘 and was never sent
the notice (notices go only to holders whose receipt was held when it was issued).

Real nodes (SQLite files), each partner's real peer API in process, what KOR posted read off
the wire (the harness of ``test_outbox_rewritten``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from test_outbox_rewritten import JPN_ONLY, drain, held_at, publish, rows_of, sql, trio

from gsomia.core.audit import AuditKind
from gsomia.service import handlers
from gsomia.shell.node import Node
from gsomia.shell.store._tables import classification_notices

LEVELS = ("군사I급비밀", "군사II급비밀", "군사III급비밀")
_n = iter(range(100, 10**6))


def reclassify(kor: Node, item_id: str, level: str, at: datetime) -> None:
    handlers.change_classification(kor.uow(), keys=kor.keys, schemes=kor.catalogue.schemes,
                                   item_id=item_id, new_level=level, now=at)


def refused(kor: Node, item_id: str) -> str:
    """Why the delivery of ``item_id`` was refused, its refusal on record (else "")."""
    [row] = [r for r in rows_of(kor).values() if r["item_id"] == item_id]
    logged = sql(kor, "SELECT count(*) FROM audit_events WHERE kind = ? AND item_id = ?",
                 AuditKind.DELIVERY_REFUSED.value, item_id)[0][0]
    return str(row["last_error"]) if row["status"] == "refused" and logged else ""


def test_an_item_raised_after_it_was_queued_does_not_leave_at_the_old_level(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    with trio(node_factory) as (kor, partners, couriers, wires):
        raised, _ = publish(kor, JPN_ONLY, 1, make_indicator)
        back, _ = publish(kor, JPN_ONLY, 2, make_indicator)
        untouched, _ = publish(kor, JPN_ONLY, 3, make_indicator)
        now = datetime.now(UTC)
        reclassify(kor, raised, "군사I급비밀", now)  # beyond what the agreement covers
        reclassify(kor, back, "군사III급비밀", now)
        reclassify(kor, back, "군사II급비밀", now + timedelta(seconds=1))  # as bound again
        drain(kor, couriers)
        jpn = partners["JPN"]
        # Before the fix: held at JPN under 極秘, posted to it.
        assert not held_at(jpn, raised)
        assert raised not in [i for i, _ in wires["JPN"].posted]
        assert held_at(jpn, back) and held_at(jpn, untouched)
        assert "changed its level to 군사I급비밀" in refused(kor, raised)
        assert refused(kor, back) == refused(kor, untouched) == ""


def test_a_notice_rewritten_on_disk_releases_nothing(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """The notice is read from the host's disk: its level rewritten back to the bound one
    (so that the raised item would go), it no longer verifies, and the item does not go."""
    with trio(node_factory) as (kor, partners, couriers, _wires):
        raised, _ = publish(kor, JPN_ONLY, 4, make_indicator)
        reclassify(kor, raised, "군사I급비밀", datetime.now(UTC))
        with kor.store.engine.begin() as conn:
            conn.execute(sa.update(classification_notices).values(new_level="군사II급비밀"))
        drain(kor, couriers)
        assert not held_at(partners["JPN"], raised)
        assert "does not verify" in refused(kor, raised)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(levels=hs.lists(hs.sampled_from(LEVELS), max_size=3))
def test_a_version_leaves_only_at_the_level_of_the_newest_notice(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        levels: list[str]) -> None:
    """Any run of level changes after the item was queued: it reaches JPN exactly when the
    newest of them (none: as bound) leaves it at the level bound, 군사II급비밀."""
    with trio(node_factory) as (kor, partners, couriers, _):
        item, _ = publish(kor, JPN_ONLY, next(_n), make_indicator)
        now = datetime.now(UTC)
        for k, level in enumerate(levels):
            reclassify(kor, item, level, now + timedelta(seconds=k))
        drain(kor, couriers)
        in_force = levels[-1] if levels else "군사II급비밀"
        assert held_at(partners["JPN"], item) == (in_force == "군사II급비밀")
