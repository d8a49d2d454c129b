"""How a TAXII page's work grows with the items its reader may not read (desk29's
measurement; not fixed yet). One JPN node per N; a reader cleared 秘 for dprk-missile;
``SqlObjectStore.page`` (what GET .../objects/ runs) with limit 10, first page, two layouts:

- ``after``: 3 readable items, then N hidden ones (機密, and 秘 for regional-security, half
  each): fewer than a page visible, so the keyset walk runs to the end of ``items``;
- ``among``: 20 readable items spread evenly among N hidden: the page steps over the hidden
  ones between its 10 rows (about N/2).

Per (layout, N): SQLite VM instructions of one page (deterministic) and thread CPU, median of
15, the N and layouts interleaved round by round.

    PYTHONPATH=$PWD/src:$PWD python -m bench.taxii_hidden_page [N ...]
"""

from __future__ import annotations

import gc
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.dashboard_state_ab import indicator
from gsomia.core.policy import Person
from gsomia.core.taxii import Filters
from gsomia.service import access, handlers
from gsomia.service.handlers import LabelRequest
from gsomia.service.taxii_ports import Page, Query
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node, init_node
from gsomia.shell.taxii_store import SqlObjectStore

_NUMBERS = itertools.count()
READER = Person("reader", "JPN", "秘", frozenset({"dprk-missile"}))


def _publish(node: Node, labels: list[tuple[str, str]], now: datetime) -> None:
    for start in range(0, len(labels), 500):
        handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue, entries=[
            (indicator(), LabelRequest(level, ("JPN", "KOR"), purpose))
            for level, purpose in labels[start:start + 500]], now=now)


def _hidden(n: int) -> list[tuple[str, str]]:
    return [("機密", "dprk-missile") if k % 2 else ("秘", "regional-security")
            for k in range(n)]


def _node(folder: Path, layout: str, hidden: int, now: datetime) -> tuple[Node, SqlObjectStore]:
    node = init_node(folder / f"{layout}-{hidden}", "JPN", catalogue=load_catalogue(), now=now)
    readable = ("秘", "dprk-missile")
    if layout == "after":
        _publish(node, [readable] * 3 + _hidden(hidden), now)
    else:
        gap = hidden // 20
        labels: list[tuple[str, str]] = []
        for k in range(20):
            labels += [readable, *_hidden(gap if k < 19 else hidden - 19 * gap)]
        _publish(node, labels, now)
    store = SqlObjectStore(node.store, keys=node.keys, catalogue=node.catalogue,
                           validate=None)
    return node, store


def _page(store: SqlObjectStore) -> Page:
    classes = store.label_classes()
    visible = frozenset(k for k, label in classes.items()
                        if access.may_read(READER, label, store.catalogue.schemes))
    return store.page(Query(Filters(limit=10), visible, None, 10))


def _steps(store: SqlObjectStore, call: Callable[[], Page]) -> tuple[Page, int]:
    steps = [0]
    hooked: list[Any] = []

    def tick() -> int:
        steps[0] += 1
        return 0

    def hook(conn: Any, *_: object) -> None:
        raw = conn.connection.dbapi_connection
        if raw not in hooked:
            raw.set_progress_handler(tick, 1)
            hooked.append(raw)

    # The label classes are read on the driver's own cursor: hook the pool's connections.
    def on_checkout(raw: Any, *_: object) -> None:
        if raw not in hooked:
            raw.set_progress_handler(tick, 1)
            hooked.append(raw)

    engine = store.store.engine
    sa.event.listen(engine, "before_cursor_execute", hook)
    sa.event.listen(engine, "checkout", on_checkout)
    try:
        return call(), steps[0]
    finally:
        sa.event.remove(engine, "before_cursor_execute", hook)
        sa.event.remove(engine, "checkout", on_checkout)
        for raw in hooked:
            raw.set_progress_handler(None, 0)


def main(sizes: list[int], rounds: int = 15) -> None:
    now = datetime.now(UTC)
    took: dict[tuple[str, int], list[float]] = {}
    work: dict[tuple[str, int], int] = {}
    rows: dict[tuple[str, int], int] = {}
    with tempfile.TemporaryDirectory(prefix="taxii-hidden-") as folder:
        nodes = {(layout, n): _node(Path(folder), layout, n, now)
                 for layout in ("after", "among") for n in sizes}
        for key, (_, store) in nodes.items():
            _page(store)
            page, work[key] = _steps(store, partial(_page, store))
            rows[key] = len(page.rows)
        for run in range(rounds):
            order = list(nodes.items())
            for key, (_, store) in order if run % 2 else order[::-1]:
                gc.collect()
                start = time.thread_time_ns()
                _page(store)
                took.setdefault(key, []).append((time.thread_time_ns() - start) / 1e6)
        for node, store in nodes.values():
            store.close()
            node.close()
    for key in nodes:
        print(f"{key[0]:5} {key[1]:6} hidden: {rows[key]:2} rows, {work[key]:8} VM "
              f"instructions, {statistics.median(took[key]):8.2f} ms (thread CPU, median of "
              f"{rounds})")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [0, 1000, 4000])
