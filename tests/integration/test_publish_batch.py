"""The batched publish path stores exactly what the one-row-at-a-time path stores.

``insert_many`` (SQLite: the driver's executemany, values bound by SQLAlchemy's own type
processors) must write the very rows Core writes; a batch published with one label made once
must give the items, custody rows and audit events that publishing each alone gives; and the
details column must hold the RFC 8785 text of the event's details.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.audit import AuditEvent, AuditKind, leaf_details
from gsomia.core.crypto import canonical
from gsomia.core.custody import CreatedCustody, StoredItem
from gsomia.core.labels import SecurityLabel
from gsomia.service import handlers
from gsomia.shell.node import Node
from gsomia.shell.store import SqlRepository, audit_events, custody, insert_many, items
from gsomia.shell.store._mapping import _CREATED_COLUMNS, _in_column_order

Factory = Callable[..., Node]
LABEL = handlers.LabelRequest("秘", ("JPN", "KOR"), "dprk-missile")


def _rows(node: Node, table: sa.Table, *skip: str) -> list[dict[str, Any]]:
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {table.name} ORDER BY 1")).mappings()
        return [{k: v for k, v in r.items() if k not in skip} for r in rows]


def written(node: Node, write: Callable[[sa.Connection], Any]) -> None:
    """``write`` done in one write transaction of ``node``'s store."""
    with node.store.engine.connect().execution_options(gsomia_write=True) as conn, \
            conn.begin():
        write(conn)


def test_insert_many_writes_what_core_writes(node_factory: Factory) -> None:
    fast, core = node_factory("JPN"), node_factory("JPN")
    at = datetime(2024, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
    rows: list[dict[str, Any]] = [{"id": f"indicator--{n}", "version": "2024-03-01T08:00:00.000Z",
             "type": "indicator", "originator": "JPN", "content": b'{"n":%d}' % n,
             "label": b"{}", "binding": b"{}", "added_at": at + timedelta(seconds=n),
             "seq": n} for n in range(3)]
    rows[0]["added_at"] = at.replace(microsecond=0)  # text without a fraction, as the driver's
    written(fast, lambda c: insert_many(c, items, rows))
    written(core, lambda c: c.execute(items.insert(), rows))
    assert _rows(fast, items) == _rows(core, items)
    with fast.store.engine.connect() as conn:
        back = conn.execute(sa.select(items.c.added_at).order_by(items.c.row)).scalars().all()
    assert back == [r["added_at"] for r in rows]
    # A batch's items, written from tuples, are the rows Core writes of them.
    more = [{**r, "id": f"indicator--more-{n}", "label": b'{"l":%d}' % n,
             "binding": b'{"b":%d}' % n, "seq": 10 + n} for n, r in enumerate(rows)]
    stored = [(StoredItem(r["id"], r["version"], r["type"], r["originator"], r["content"],
                          r["label"], r["binding"], r["added_at"]), r["seq"]) for r in more]
    written(fast, lambda c: SqlRepository(c).add_items(stored))
    written(core, lambda c: c.execute(items.insert(), more))
    assert _rows(fast, items) == _rows(core, items)
    assert len(_rows(fast, items)) == len(rows) + len(more)
    # A batch's created custody, written from tuples, is the rows Core writes of its records.
    label = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile",
                          policy="gsomia-2016", created=at)
    batch = CreatedCustody("JPN", at, [(str(r["id"]), str(r["version"]), label,
                                        canonical(label.to_json())) for r in rows])
    written(fast, lambda c: SqlRepository(c).add_created_custody(batch, seq=9))
    def one_by_one(c: sa.Connection) -> None:
        for record in batch.records():
            SqlRepository(c).add_custody(record, seq=9)

    written(core, one_by_one)
    assert _rows(fast, custody) == _rows(core, custody)
    assert len(_rows(fast, custody)) == len(rows)


def test_created_rows_are_laid_out_in_the_custody_tables_column_order() -> None:
    # Rows given as tuples go into the columns by position: a table whose columns moved
    # must stop the import, not put one value into another column.
    assert tuple(c.name for c in custody.columns if c.name != "row") == _CREATED_COLUMNS
    moved = list(_CREATED_COLUMNS)
    moved[6], moved[7] = moved[7], moved[6]   # the original and national labels swapped
    for wrong in (tuple(moved), _CREATED_COLUMNS[:-1], (*_CREATED_COLUMNS, "extra")):
        with pytest.raises(RuntimeError, match="custody"):
            _in_column_order(custody, wrong)


def test_a_batch_stores_what_single_publishes_store(node_factory: Factory,
                                                    make_indicator: Callable[..., Any],
                                                    now: datetime) -> None:
    batch, single = node_factory("JPN"), node_factory("JPN")
    objs = [make_indicator(n) for n in range(4)]
    done = handlers.publish_many(batch.uow(), keys=batch.keys, catalogue=batch.catalogue,
                                 entries=[(o, LABEL) for o in objs], now=now)
    assert [d.item_id for d in done] == [o["id"] for o in objs]
    for o in objs:  # the same key signs both, so the bindings must come out byte for byte
        handlers.publish(single.uow(), keys=batch.keys, catalogue=single.catalogue, obj=o,
                         label=LABEL, now=now)
    assert _rows(batch, items, "row", "seq") == _rows(single, items, "row", "seq")
    assert _rows(batch, custody, "row", "seq") == _rows(single, custody, "row", "seq")
    kinds = [(r["kind"], r["item_id"], r["details"], r["content_hash"])
             for r in _rows(batch, audit_events) if r["kind"] != "node-initialised"]
    assert kinds == [(r["kind"], r["item_id"], r["details"], r["content_hash"])
                     for r in _rows(single, audit_events) if r["kind"] != "node-initialised"]
    for node in (batch, single):
        with node.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        assert verdict.ok, verdict.problems


_JSON = st.recursive(st.none() | st.booleans() | st.text() | st.integers(-2**53 + 1, 2**53 - 1),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _JSON, max_size=4),
       st.text(min_size=1, max_size=12), st.none() | st.text(min_size=1, max_size=12))
def test_the_details_cut_from_a_leaf_are_their_canonical_text(details: dict[str, Any],
                                                              actor: str,
                                                              item: str | None) -> None:
    event = AuditEvent(3, AuditKind.ACCESS_GRANTED, datetime(2024, 3, 1, tzinfo=UTC), actor,
                       item_id=item, details=details)
    assert leaf_details(event) == canonical(details).decode("utf-8")
