"""The plan SQLite makes for a store's read of items: shared by the tests that hold such a
read to the range of seqs after a mark (SQLite, with no statistics, chose ix_items_type)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from gsomia.shell.store import SqlRepository, Store


def items_read_plan(store: Store, read: Callable[[SqlRepository], Any]) -> tuple[Any, str]:
    """What ``read`` answers on a repository of ``store``, and the plan SQLite makes for the
    first statement it sent that reads ``items`` (its lines joined by spaces)."""
    ran: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        ran.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.repository() as repo:
            answer = read(repo)
            statement, parameters = next(r for r in ran if "FROM items" in r[0])
            plan = " ".join(str(row[-1]) for row in repo.conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters))
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    return answer, plan
