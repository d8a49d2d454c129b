"""The dashboard tells no one of an item they may not read, not even by the audit log.

Every signed-in user was sent the audit log's size, its signed head and the partners' heads:
each item the node stores adds events, so a user cleared 秘 with no need-to-know saw the size
go 2 -> 4 when a 機密 item was stored, and ``/dashboard/events`` pushed a new state at that
instant (review28). The log is now shown only to someone cleared for all the node may hold
(``access.may_see_log``), and the stream sends a state only when what its user sees changed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person
from gsomia.service import access, handlers
from gsomia.service.handlers import LabelRequest
from gsomia.shell.node import Node, new_token
from gsomia.shell.web import NodeView, Session, state

_JPN = ("機密", "特定秘密", "極秘", "秘")
_PURPOSES = ("dprk-missile", "regional-security")
_NODES: dict[object, Node] = {}
_NAMES = itertools.count()


def _shown(doc: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in doc.items() if k != "now"}, sort_keys=True)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(clearance=st.sampled_from(_JPN),
       need=st.sets(st.sampled_from((*_PURPOSES, "maritime-security")), min_size=1)
       .map(sorted),
       level=st.sampled_from(_JPN), purpose=st.sampled_from(_PURPOSES))
def test_an_item_a_user_may_not_read_changes_nothing_they_are_sent(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        clearance: str, need: list[str], level: str, purpose: str) -> None:
    """Any JPN user and any item they may not read: their state is the same document before
    and after it is stored (before the fix, the audit size and head grew); one cleared for
    all the node may hold sees the log grow."""
    if node_factory not in _NODES:       # one node for every example
        _NODES[node_factory] = node_factory("JPN", now=datetime.now(UTC))
    node = _NODES[node_factory]
    schemes = node.catalogue.schemes
    hidden = SecurityLabel("JPN", level, frozenset({"JPN"}), purpose)
    name, token, now = f"user{next(_NAMES)}", new_token(), datetime.now(UTC)
    handlers.add_user(node.uow(), keys=node.keys, schemes=schemes, name=name,
                      clearance=clearance, need_to_know=need, token=token, now=now)
    who = Person(name, "JPN", clearance, frozenset(need))
    sees_log = access.may_see_log(who, "JPN", schemes, node.catalogue.vocabulary.purposes)
    assume(sees_log or not access.may_read(who, hidden, schemes))
    view = NodeView(node.store, node.keys, node.catalogue, "JPN")
    session = Session(name, token, now + timedelta(hours=1))
    state(view, session, now)  # what they may read is read (audited) once, here
    before, ran_before = _counted(node, lambda: state(view, session, now))
    handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                          entries=[(make_indicator(next(_NAMES)),
                                    LabelRequest(level, ("JPN",), purpose))], now=now)
    after, ran_after = _counted(node, lambda: state(view, session, now))
    if sees_log:
        assert after["audit"]["size"] > before["audit"]["size"]
    else:
        assert _shown(after) == _shown(before)
        assert after["audit"]["size"] is None and not after["audit"]["shown"]
        # Nor by the time it takes: the same statements (finalreview28a: the receipts of
        # every item held were looked up, one query each, readable or not).
        assert ran_after == ran_before


def _counted(node: Node, call: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """What ``call`` answers, and how many SQL statements it ran on the node's store."""
    from sqlalchemy import event

    ran = [0]

    def count(*_: object) -> None:
        ran[0] += 1

    event.listen(node.store.engine, "before_cursor_execute", count)
    try:
        return call(), ran[0]
    finally:
        event.remove(node.store.engine, "before_cursor_execute", count)
