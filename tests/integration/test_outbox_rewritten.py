"""The host's disk turned against the node: an outbox row names a recipient and an item only
as the database file says now. The release decision was taken when the delivery was queued;
rewrite the row (its recipient, its item, its version, or a row inserted) and, before
sealcheck23, the courier sealed whatever it named: an item marked REL TO KOR, JPN encrypted
to USA's key and posted to USA, which reads it even if its receiver then refuses to keep
it. The courier now asks the release policy again as it seals; a row the policy refuses
carries nothing, is marked refused with the policy's reasons (the audit log's
``delivery-refused``, ``gsomia doctor``'s deliveries), and the other rows go.

Real nodes (SQLite files), each partner's real peer API in process; what KOR posted to a
partner is read off the wire (:class:`Wire`), the partner's app answering as ever."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as hs

from federating import TestClient
from gsomia import bootstrap
from gsomia.bootstrap import app_for_node
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.doctor import delivery_checks
from gsomia.shell.node import Node

SECRET = "군사II급비밀"
JPN_ONLY, WITH_USA = ("KOR", "JPN"), ("KOR", "JPN", "USA")


class Wire(TestClient):
    """``node``'s peer API as ``caller`` reaches it, keeping the header of every envelope
    posted to it: what left the caller, whatever the partner then made of it."""

    def __init__(self, node: Node, caller: Node) -> None:
        super().__init__(app_for_node(node, peer_identity=lambda scope: caller.party),
                         base_url=f"https://{node.party.lower()}.test")
        self.posted: list[tuple[str, str]] = []  # (item_id, recipient) of each envelope

    def post(self, url: Any, *args: Any, **kwargs: Any) -> Any:
        if str(url).endswith("/peer/v1/envelopes/"):
            self.posted += [(e["item_id"], e["recipient"])
                            for e in json.loads(kwargs["content"])["envelopes"]]
        return super().post(url, *args, **kwargs)


@contextmanager
def trio(node_factory: Callable[..., Node]
         ) -> Iterator[tuple[Node, dict[str, Node], dict[str, exchange.Sender],
                             dict[str, Wire]]]:
    """KOR delivering to JPN and USA (each delivering back to KOR), one courier per link."""
    kor, jpn, usa = (node_factory(p) for p in ("KOR", "JPN", "USA"))
    peers = {n.party: exchange.Peer(n.party, f"https://{n.party.lower()}.test",
                                    n.keys.public_signing_key(),
                                    n.keys.envelope_key().public_key())
             for n in (kor, jpn, usa)}
    exchange.Partners("KOR", "direct", peers, ("JPN", "USA")).write(kor.folder)
    for partner in (jpn, usa):
        exchange.Partners(partner.party, "direct", peers, ("KOR",)).write(partner.folder)
    partners = {"JPN": jpn, "USA": usa}
    wires = {p: Wire(n, kor) for p, n in partners.items()}
    couriers = {p: exchange.Sender(kor, link=p, client=wires[p]) for p in partners}
    try:
        yield kor, partners, couriers, wires
    finally:
        for courier in couriers.values():
            courier.close()


def publish(kor: Node, rel_to: tuple[str, ...], n: int,
            make_indicator: Callable[..., dict[str, Any]]) -> tuple[str, str]:
    [stored] = handlers.publish_many(
        kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=datetime.now(UTC),
        entries=[(make_indicator(n), handlers.LabelRequest(SECRET, rel_to, "dprk-missile"))])
    return stored.item_id, stored.version


def sql(kor: Node, statement: str, *params: Any) -> list[Any]:
    with kor.store.engine.begin() as conn:
        result = conn.exec_driver_sql(statement, params)
        return list(result) if result.returns_rows else []


def rows_of(kor: Node) -> dict[int, dict[str, Any]]:
    with kor.store.engine.connect() as conn:
        return {r.row: dict(r._mapping) for r in conn.exec_driver_sql(
            "SELECT * FROM outbox WHERE kind = 'delivery'")}


def insert_as(kor: Node, item_id: str, recipient: str) -> int:
    """A row of ``item_id``'s copied with another recipient, as anyone with the file can."""
    columns = [c for (_, c, *_) in sql(kor, "PRAGMA table_info(outbox)") if c != "row"]
    chosen = ", ".join("?" if c == "recipient" else c for c in columns)
    sql(kor, f"INSERT INTO outbox ({', '.join(columns)}) SELECT {chosen} FROM outbox "
             "WHERE item_id = ? AND kind = 'delivery' LIMIT 1", recipient, item_id)
    return int(sql(kor, "SELECT max(row) FROM outbox")[0][0])


def drain(kor: Node, couriers: dict[str, exchange.Sender]) -> None:
    """Passes until no delivery to a partner is pending and nothing is in flight."""
    def done() -> bool:
        flying = sum(c.step().in_flight for c in couriers.values())
        with kor.store.repository() as repo:
            return flying == 0 and all(repo.deliveries_pending(p) == 0 for p in couriers)

    assert exchange.wait_until(done, 30)


def held_at(node: Node, item_id: str) -> bool:
    with node.store.repository() as repo:
        return repo.get_item(item_id) is not None


def test_a_row_rewritten_on_disk_seals_nothing_to_a_party_the_policy_refuses(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Before: each of the three JPN-only items below was sealed to USA's key and posted to
    USA (USA's receiver refused to keep it, having decrypted it)."""
    with trio(node_factory) as (kor, partners, couriers, wires):
        retargeted, swapped_in, inserted = (publish(kor, JPN_ONLY, n, make_indicator)
                                            for n in range(3))
        carrier, other = (publish(kor, WITH_USA, n, make_indicator) for n in (3, 4))
        [retargeted_row] = [r for r, v in rows_of(kor).items()
                            if v["item_id"] == retargeted[0]]
        sql(kor, "UPDATE outbox SET recipient = 'USA' WHERE row = ?", retargeted_row)
        [swapped_row] = [r for r, v in rows_of(kor).items()
                         if v["item_id"] == carrier[0] and v["recipient"] == "USA"]
        sql(kor, "UPDATE outbox SET item_id = ?, version = ? WHERE row = ?",
            *swapped_in, swapped_row)
        inserted_row = insert_as(kor, inserted[0], "USA")
        drain(kor, {"USA": couriers["USA"]})

        jpn_only = {retargeted[0], swapped_in[0], inserted[0]}
        assert wires["USA"].posted == [(other[0], "USA")]
        assert held_at(partners["USA"], other[0])
        assert not any(held_at(partners["USA"], i) for i in jpn_only)
        rows = rows_of(kor)
        for row in (retargeted_row, swapped_row, inserted_row):
            assert rows[row]["status"] == exchange.REFUSED
            assert rows[row]["last_error"].startswith("not released to USA as it was sealed")
            assert "USA is not in REL TO JPN, KOR" in rows[row]["last_error"]
        refused = {(i, json.loads(d)["recipient"]) for i, d in sql(
            kor, "SELECT item_id, details FROM audit_events WHERE kind = 'delivery-refused'")}
        assert refused == {(i, "USA") for i in jpn_only}
        [check] = [c for c in delivery_checks(kor.folder, bootstrap.catalogue)
                   if c.name == "deliveries"]
        assert not check.ok and "3 refused" in check.detail
        assert f"{inserted[0]} to USA: not released to USA" in check.detail
        # And the rewrite itself is on record against the log, as any row's.
        with kor.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=kor.keys.public_signing_key(),
                                            now=datetime.now(UTC))
        named = {p["where"] for p in verdict.to_json()["problems"]}
        assert not verdict.ok and named >= {f"outbox {i}@{v} to USA"
                                            for i, v in (retargeted, swapped_in, inserted)}


def test_any_rewrite_of_a_pending_row_releases_nothing_the_policy_does_not(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Security invariant: whatever a pending delivery's recipient, item or version is
    rewritten to (another partner, another held item or version, this node, a stranger),
    no envelope reaches a partner the item's label does not release it to, and the rows
    left as queued are delivered. One trio of nodes for every example."""
    numbers = itertools.count()
    released_to: dict[str, frozenset[str]] = {}
    with trio(node_factory) as (kor, _, couriers, wires):

        @settings(max_examples=8, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(pick=hs.integers(0, 2), column=hs.sampled_from(
                   ["recipient", "item_id", "version", "item_id+version"]),
               value=hs.integers(0, 7))
        @example(pick=0, column="recipient", value=1)  # JPN-only item's row to USA
        @example(pick=2, column="item_id+version", value=0)  # USA's row carries it
        def one(pick: int, column: str, value: int) -> None:
            n = next(numbers) * 2
            jpn_only = publish(kor, JPN_ONLY, n, make_indicator)
            with_usa = publish(kor, WITH_USA, n + 1, make_indicator)
            released_to[jpn_only[0]] = frozenset({"JPN"})
            released_to[with_usa[0]] = frozenset({"JPN", "USA"})
            fresh = sorted(r for r, v in rows_of(kor).items()
                           if v["item_id"] in (jpn_only[0], with_usa[0]))
            assert len(fresh) == 3  # jpn_only to JPN; with_usa to JPN and to USA
            row = fresh[pick]
            recipients = ["JPN", "USA", "KOR", "CHN"]
            held = sorted(released_to)
            try:
                if column == "recipient":
                    sql(kor, "UPDATE outbox SET recipient = ? WHERE row = ?",
                        recipients[value % 4], row)
                elif column == "item_id":
                    sql(kor, "UPDATE outbox SET item_id = ? WHERE row = ?",
                        [*jpn_only, *with_usa, *held][value % (4 + len(held))], row)
                elif column == "version":
                    sql(kor, "UPDATE outbox SET version = ? WHERE row = ?",
                        [jpn_only[1], with_usa[1], "1999-01-01T00:00:00.000Z"][value % 3],
                        row)
                else:
                    sql(kor, "UPDATE outbox SET item_id = ?, version = ? WHERE row = ?",
                        *[jpn_only, with_usa][value % 2], row)
            except sa.exc.IntegrityError:
                assume(False)  # another row holds that (item, version, recipient) already
            drain(kor, couriers)
            for party, wire in wires.items():
                leaked = [i for i, to in wire.posted
                          if to != party or party not in released_to.get(i, ())]
                assert leaked == [], (party, column, value)
            rows = rows_of(kor)
            assert all(rows[r]["status"] == "delivered" for r in fresh if r != row)

        one()
