"""The operator desk's state for an operator cleared 秘 for dprk-missile, with 0 and N items
they may not read (a tenth of them with a partner's consent request and an incident report
about them), A/B in one process (thread CPU, median of 30; two nodes, one holding the N
more, node order and the two ways interleaved round by round): as desk29's parent read it
(every holding asked of the policy, every request, incident and notice read then filtered)
and as now (``desk.readable_items_here``: dashsql29's ``item_audience`` seek, then the
policy; requests and incidents sought by item). The operator may read 3 items, each with a
request and an incident.

    PYTHONPATH=$PWD/src:$PWD python -m bench.desk_state_ab [N]
"""

from __future__ import annotations

import gc
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.dashboard_state_ab import indicator, report
from gsomia.core.custody import Holding, NodeUser
from gsomia.core.labels import Scheme, SecurityLabel
from gsomia.core.policy import Person
from gsomia.service import access, handlers
from gsomia.service.handlers import LabelRequest
from gsomia.shell import desk, exchange, notices
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node, init_node, new_token
from gsomia.shell.store import SqlRepository

_NUMBERS = itertools.count()
AFTER = (desk.readable_items_here, exchange.consent_rows, notices.incident_rows)


def _old_items(repo: SqlRepository, person: Person, schemes: Mapping[str, Scheme]
               ) -> dict[str, tuple[Holding, SecurityLabel]]:
    """The parent's read: every holding, each asked of the policy."""
    return access.readable_items(person, repo.holdings(), schemes)


def _every(read: Callable[..., list[dict[str, Any]]]) -> Callable[..., list[dict[str, Any]]]:
    def whole(node: Any, item_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
        return read(node)  # the parent's: the whole register, filtered by the desk
    return whole


BEFORE = (_old_items, _every(AFTER[1]), _every(AFTER[2]))


def _use(way: tuple[Any, Any, Any]) -> None:
    desk.readable_items_here, exchange.consent_rows, notices.incident_rows = way


def _publish(node: Node, level: str, purpose: str, count: int, now: datetime) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 500):
        objs = [indicator() for _ in range(min(500, count - start))]
        handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue, entries=[
            (obj, LabelRequest(level, ("JPN", "KOR"), purpose)) for obj in objs], now=now)
        ids.extend(str(obj["id"]) for obj in objs)
    return ids


def _about(node: Node, item_ids: list[str], now: datetime) -> None:
    for item_id in item_ids:
        exchange.record_request(node, request_id=f"req-{next(_NUMBERS)}", item_id=item_id,
                                holder="KOR", recipient="USA", reason="relay",
                                direction="incoming", now=now, actor="KOR")
        handlers.report_incident(node.uow(), keys=node.keys, kind="loss",
                                 description="lost", now=now, item_id=item_id)


def _node(folder: Path, name: str, hidden: int, now: datetime) -> tuple[Node, NodeUser]:
    node = init_node(folder / name, "JPN", catalogue=load_catalogue(), now=now)
    handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                      name="op", clearance="秘", need_to_know=["dprk-missile"],
                      token=new_token(), now=now, role="operator")
    _about(node, _publish(node, "秘", "dprk-missile", 3, now), now)
    above = _publish(node, "機密", "dprk-missile", hidden // 2, now)
    other = _publish(node, "秘", "regional-security", hidden - hidden // 2, now)
    _about(node, above[:hidden // 20] + other[:hidden // 20], now)
    with node.store.repository() as repo:
        user = repo.user_named("op")
    assert user is not None
    return node, user


def _time(call: Callable[[], dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    gc.collect()  # the other way's garbage, not in this one's time
    start = time.thread_time_ns()
    doc = call()
    return (time.thread_time_ns() - start) / 1e6, doc


def main(hidden: int, rounds: int = 30) -> None:
    now = datetime.now(UTC)
    took: dict[tuple[int, str], list[float]] = {}
    shown: dict[tuple[int, str], Any] = {}
    with tempfile.TemporaryDirectory(prefix="desk-state-ab-") as folder:
        nodes = {n: _node(Path(folder), f"jpn-{n}", n, now) for n in (0, hidden)}
        for run in range(rounds + 3):  # the first 3 warm the statement caches, not timed
            order = list(nodes.items())
            for n, (node, user) in order if run % 2 else order[::-1]:
                ways = (("before", BEFORE), ("after", AFTER))
                for name, reads in ways if run % 2 else ways[::-1]:
                    _use(reads)
                    try:
                        ms, doc = _time(partial(desk.desk_state, node, user, now))
                    finally:
                        _use(AFTER)
                    if run >= 3:
                        took.setdefault((n, name), []).append(ms)
                    shown[(n, name)] = ([i["id"] for i in doc["items"]],
                                        [c["id"] for c in doc["consents"]],
                                        [r["reference"] for r in doc["incidents"]])
        for node, _ in nodes.values():
            node.close()
    for n in nodes:  # the same items, requests and incidents either way
        assert shown[(n, "before")] == shown[(n, "after")], shown
        assert [len(x) for x in shown[(n, "after")]] == [3, 3, 3], shown
    report(took, hidden, rounds)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
