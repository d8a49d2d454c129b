"""The dashboard's state for a low-cleared user, with 0 and N items they may not read, A/B in
one process (thread CPU, median of 40; two nodes, one holding N more, and the two ways
interleaved round by round): as 6c839fa's parent read it (every holding, each asked of the
policy) and as now (``web.readable_holdings``: the versions sought in ``item_audience``,
then the policy on those alone). The user is cleared 秘 for dprk-missile and may read 3
items; the hidden ones are 機密 (above them) and for regional-security (no need-to-know),
half each.

    PYTHONPATH=$PWD/src:$PWD python -m bench.dashboard_state_ab [N]
"""

from __future__ import annotations

import gc
import itertools
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from gsomia.core.custody import Holding
from gsomia.core.labels import Scheme
from gsomia.core.policy import Person
from gsomia.service import access, handlers
from gsomia.service.handlers import LabelRequest
from gsomia.service.ports import ShellReads
from gsomia.shell import web
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node, init_node, new_token

_NUMBERS = itertools.count()


def before(repo: ShellReads, person: Person,
           schemes: Mapping[str, Scheme]) -> list[Holding]:
    """The parent's read: every holding, each asked of the policy."""
    return [h for h in repo.holdings()
            if access.may_read(person, h.current.national_label, schemes)]


AFTER = web.readable_holdings


def indicator() -> dict[str, Any]:
    """A fresh indicator (ids unique in this process): what the hidden-item A/Bs publish."""
    n = next(_NUMBERS)
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=n + 1, version=4)}",
            "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
            "name": f"TEL activity {n}", "pattern": f"[x-dprk-site:name = 'Sunan-{n}']",
            "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z"}


def _publish(node: Node, level: str, purpose: str, count: int, now: datetime) -> None:
    for start in range(0, count, 500):
        handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue, entries=[
            (indicator(), LabelRequest(level, ("JPN", "KOR"), purpose))
            for _ in range(min(500, count - start))], now=now)


def _time(call: Callable[[], dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    # The garbage the other way left (5,000 holdings read) is collected first, not in the
    # next one's time.
    gc.collect()
    start = time.thread_time_ns()
    doc = call()
    return (time.thread_time_ns() - start) / 1e6, doc


def _node(folder: Path, name: str, hidden: int,
          now: datetime) -> tuple[Node, web.NodeView, web.Session]:
    node = init_node(folder / name, "JPN", catalogue=load_catalogue(), now=now)
    token = new_token()
    handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                      name="analyst", clearance="秘", need_to_know=["dprk-missile"],
                      token=token, now=now)
    _publish(node, "秘", "dprk-missile", 3, now)
    _publish(node, "機密", "dprk-missile", hidden // 2, now)
    _publish(node, "秘", "regional-security", hidden - hidden // 2, now)
    view = web.NodeView(node.store, node.keys, node.catalogue, "JPN")
    session = web.Session("analyst", token, now + timedelta(hours=1))
    web.state(view, session, now)  # the first answer audits the reads
    return node, view, session


def main(hidden: int, rounds: int = 40) -> None:
    """Two nodes, one holding ``hidden`` items more; the four (node, way) pairs interleaved
    round by round, so that the machine's other load falls on all alike."""
    now = datetime.now(UTC)
    took: dict[tuple[int, str], list[float]] = {}
    shown: dict[tuple[int, str], list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="dashboard-state-ab-") as folder:
        nodes = {n: _node(Path(folder), f"jpn-{n}", n, now) for n in (0, hidden)}
        for run in range(rounds + 3):  # the first 3 warm the statement caches, not timed
            order = list(nodes.items())  # each node first in every other round
            for n, (_, view, session) in order if run % 2 else order[::-1]:
                for way, read in (("before", before), ("after", AFTER)):
                    web.readable_holdings = read
                    try:
                        ms, doc = _time(partial(web.state, view, session, now))
                    finally:
                        web.readable_holdings = AFTER
                    if run >= 3:
                        took.setdefault((n, way), []).append(ms)
                    shown[(n, way)] = [i["id"] for i in doc["items"]]
        for node, _, _ in nodes.values():
            node.close()
    for n in nodes:  # the same three items either way
        assert shown[(n, "before")] == shown[(n, "after")], shown
        assert len(shown[(n, "after")]) == 3, shown
    report(took, hidden, rounds)


def report(took: dict[tuple[int, str], list[float]], hidden: int, rounds: int) -> None:
    """Print the medians of ``took`` ((hidden items, "before" or "after"): times in ms) and
    their ratios: how each way grows with what is hidden, and after against before."""
    med = {k: statistics.median(v) for k, v in took.items()}
    for way in ("before", "after"):
        print(f"{way:6}: 0 hidden {med[(0, way)]:8.2f} ms, {hidden} hidden "
              f"{med[(hidden, way)]:8.2f} ms, x{med[(hidden, way)] / med[(0, way)]:.2f}")
    print(f"after/before: at 0 hidden x{med[(0, 'after')] / med[(0, 'before')]:.3f}, "
          f"at {hidden} x{med[(hidden, 'after')] / med[(hidden, 'before')]:.3f} "
          f"(thread CPU, median of {rounds})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
