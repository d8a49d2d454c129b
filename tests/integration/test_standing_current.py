"""Standing consents are read by what is in force (standing20), with the answers the whole
history gave.

The table keeps every grant and revocation for ever; the reads a relay rests on (the
consents the outbox plans under, what an envelope carries, the bound on consents in force
and on revocations of consents not held) took all of it. On a real store, for generated
histories of grants, revocations, ends and unreadable documents, the bounded reads give
exactly what the whole-history reads gave; and the ``not_after`` kept beside a grant, which
no digest covers, is checked by ``audit verify`` against the signed document.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from gsomia.core import crypto
from gsomia.core.custody import StandingConsentRecord
from gsomia.core.errors import MalformedInput
from gsomia.core.types import instant
from gsomia.service import handlers, standing
from gsomia.shell import store as st
from gsomia.shell.node import Node

Factory = Callable[..., Node]
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PARTIES = ("KOR", "USA", "AUS")  # never the recipients, JPN and NZL


@pytest.fixture
def node(node_factory: Factory) -> Node:
    return node_factory("JPN")


# ---- the whole-history reads, as they were before standing20 (the reference) -------------

def old_may_allow(rows: list[StandingConsentRecord], now: datetime) -> list[object]:
    """``standing_held``'s claims that can allow a relay at ``now``: the policy uses none
    revoked or ended."""
    return [c for c in standing.in_force(rows) if not c.revoked and now < c.not_after]


def old_in_force_from(rows: list[StandingConsentRecord], originator: str,
                      now: datetime) -> int:
    revoked = {r.consent_id for r in rows if r.kind == "revoke" and r.originator == originator}
    count = 0
    for r in rows:
        if r.kind != "grant" or r.originator != originator or r.direction != "obtained" \
                or r.consent_id in revoked:
            continue
        try:
            count += now < instant(r.document["not_after"], where="not_after")
        except (KeyError, TypeError, MalformedInput):
            count += 1
    return count


def old_revoked(rows: list[StandingConsentRecord],
                named: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The receive path's read: every revocation held, then those the envelopes name."""
    return {(r.consent_id, r.originator) for r in rows if r.kind == "revoke"} & named


def old_orphans(rows: list[StandingConsentRecord], originator: str, since: datetime) -> int:
    granted = {(r.consent_id, r.originator) for r in rows if r.kind == "grant"}
    return sum(r.kind == "revoke" and r.originator == originator and r.at > since
               and r.direction == "obtained" and r.recipient is None
               and (r.consent_id, r.originator) not in granted for r in rows)


# ---- generated histories -----------------------------------------------------------------

@hs.composite
def histories(draw: hs.DrawFn, now: datetime) -> list[StandingConsentRecord]:
    rows = []
    for _ in range(draw(hs.integers(0, 14))):
        consent_id = f"standing-consent--{draw(hs.integers(0, 5))}"
        originator = draw(hs.sampled_from(PARTIES))
        kind: Literal["grant", "revoke"] = draw(hs.sampled_from(["grant", "grant", "revoke"]))
        direction: Literal["given", "obtained"] = draw(
            hs.sampled_from(["obtained", "obtained", "given"]))
        at = now - timedelta(hours=draw(hs.integers(0, 72)))
        if kind == "revoke":
            document = crypto.revoke_standing_consent(
                consent_id=consent_id, originator=originator, revoked_at=at, key=KEY).to_json()
            recipient = draw(hs.sampled_from([None, "JPN"]))
        else:
            # Ended long ago, just now, just after, or far ahead; some unreadable.
            end = now + timedelta(seconds=draw(hs.sampled_from(
                [-86400 * 30, -1, 0, 1, 86400 * 30])))
            recipient = draw(hs.sampled_from(["JPN", "NZL"]))
            document = crypto.grant_standing_consent(
                consent_id=consent_id, originator=originator, recipient=recipient,
                categories=["sensor-report"], purpose="dprk-missile",
                not_before=now - timedelta(days=60), not_after=end, granted_at=at,
                key=KEY).to_json()
            spoilt = draw(hs.sampled_from([None, None, None, "missing", "garbled"]))
            if spoilt == "missing":
                document.pop("not_after")
            elif spoilt == "garbled":
                document["not_after"] = "not an instant"
        rows.append(StandingConsentRecord(consent_id, originator, recipient, direction,
                                          kind, document, at))
    return rows


NOW = datetime.fromisoformat("2024-03-01T09:00:00+00:00")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories(NOW), window=hs.sampled_from([1, 24, 24 * 365]),
       named=hs.sets(hs.tuples(hs.sampled_from([f"standing-consent--{n}" for n in range(7)]),
                               hs.sampled_from((*PARTIES, "JPN")))))
def test_the_reads_by_what_is_in_force_answer_as_the_whole_history_did(
        node: Node, history: list[StandingConsentRecord], window: int,
        named: set[tuple[str, str]]) -> None:
    uow = node.uow()
    with uow:  # left without a commit: rolled back, the next history starts empty
        for seq, record in enumerate(history):
            uow.repo.add_standing_consent(record, seq=seq)
        everything = uow.repo.standing_consents()
        assert everything == history
        # Each grant marked revoked exactly when its originator's revocation is held,
        # whichever came first; a revocation never (the reads skip what is marked).
        revocations = {(r.consent_id, r.originator) for r in history if r.kind == "revoke"}
        table = st.metadata.tables["standing_consents"]
        assert list(uow.repo.conn.execute(sa.select(table.c.revoked).order_by(
            table.c.row)).scalars()) == [
            r.kind == "grant" and (r.consent_id, r.originator) in revocations for r in history]
        current = uow.repo.standing_current(NOW)
        # What the outbox plans under and an envelope carries: the same claims that can
        # allow a relay, and nothing revoked or ended read at all.
        assert standing.in_force(current) == old_may_allow(everything, NOW)
        assert all(r.kind == "grant" and (r.ends is None or r.ends > NOW) for r in current)
        # A seal's read: those of its recipient obtained from originators, in the query.
        for recipient in ("JPN", "NZL"):
            assert uow.repo.standing_current(NOW, recipient=recipient,
                                             direction="obtained") == \
                [r for r in current if r.recipient == recipient and r.direction == "obtained"]
        since = NOW - timedelta(hours=window)
        for party in PARTIES:
            assert standing._in_force_from(current, party, NOW) == \
                old_in_force_from(everything, party, NOW)
            assert uow.repo.standing_orphans(party, since) == \
                old_orphans(everything, party, since)
        # What a receive reads for the consents its envelopes carry (ids never held and
        # parties that revoked nothing among them): the same revocations, of those only.
        assert uow.repo.revoked_standing(named) == old_revoked(everything, named)


# ---- the column no digest covers is checked against the document ---------------------------

def grant_one(node: Node, now: datetime) -> None:
    standing.grant_standing_consent(
        node.uow(), keys=node.keys, catalogue=node.catalogue, consent_id="standing-consent--1",
        recipient="KOR", categories=["sensor-report"], purpose="dprk-missile",
        not_before=now, not_after=now + timedelta(days=1), now=now)
    standing.revoke_standing_consent(node.uow(), keys=node.keys,
                                     consent_id="standing-consent--1", now=now)


def test_a_not_after_or_revoked_edited_on_disk_is_named_by_audit_verify(
        node_factory: Factory, now: datetime) -> None:
    """An end moved earlier (hides the consent from the reads), later than the document,
    emptied, or set on a revocation (which has no end); a revoked grant's mark cleared, or
    a revocation marked: each named; the node is put back between edits, one node for
    all."""
    granted = node_factory("USA")
    grant_one(granted, now)

    def verdict() -> Any:
        with granted.store.reader() as reader:
            return handlers.verify_audit(reader, public_key=granted.keys.public_signing_key())

    def set_end(kind: str, value: object, column: str = "not_after") -> None:
        db = sqlite3.connect(granted.store.engine.url.database or "")
        try:
            db.execute(f"UPDATE standing_consents SET {column} = ? WHERE kind = ?",
                       (value, kind))
            db.commit()
        finally:
            db.close()

    db = sqlite3.connect(granted.store.engine.url.database or "")
    (kept,) = db.execute("SELECT not_after FROM standing_consents WHERE kind = 'grant'"
                         ).fetchone()
    db.close()
    assert verdict().ok
    for kind, value in (("grant", "2024-03-01 09:00:00.000000"),
                        ("grant", "2099-01-01 00:00:00.000000"), ("grant", None),
                        ("revoke", "2099-01-01 00:00:00.000000")):
        set_end(kind, value)
        result = verdict()
        assert not result.ok, (kind, value)
        assert any("standing_consents" in p.where for p in result.problems), result.problems
        set_end(kind, kept if kind == "grant" else None)
        assert verdict().ok
    for kind, flag in (("grant", 0), ("revoke", 1)):
        set_end(kind, flag, "revoked")
        result = verdict()
        assert not result.ok, (kind, flag)
        assert any("standing_consents" in p.where for p in result.problems), result.problems
        set_end(kind, 1 - flag, "revoked")
        assert verdict().ok


# ---- migrations 0018 and 0020 fill the columns from the documents and revocations held -----

def test_migrations_0018_and_0020_fill_each_grants_end_and_revoked_mark(db_url: str) -> None:
    import json

    from test_one_outbox import at_revision

    revocation = crypto.revoke_standing_consent(consent_id="standing-consent--9",
                                                originator="KOR", revoked_at=NOW, key=KEY)
    history = [StandingConsentRecord("standing-consent--9", "KOR", None, "obtained", "revoke",
                                     revocation.to_json(), NOW)] + [
        StandingConsentRecord(f"standing-consent--{n}", "KOR", "JPN", "obtained", "grant",
                              crypto.grant_standing_consent(
                                  consent_id=f"standing-consent--{n}", originator="KOR",
                                  recipient="JPN", categories=["sensor-report"],
                                  purpose="dprk-missile", not_before=NOW,
                                  not_after=NOW + timedelta(days=n), granted_at=NOW,
                                  key=KEY).to_json(), NOW) for n in (1, 2)]
    unreadable = dict(history[-1].document, not_after="not an instant")
    history[-1] = StandingConsentRecord(history[-1].consent_id, "KOR", "JPN", "obtained",
                                        "grant", unreadable, NOW)
    # The grant the revocation held ends (it came after), and another party's of that id.
    history += [StandingConsentRecord("standing-consent--9", who, "JPN", "obtained", "grant",
                                      crypto.grant_standing_consent(
                                          consent_id="standing-consent--9", originator=who,
                                          recipient="JPN", categories=["sensor-report"],
                                          purpose="dprk-missile", not_before=NOW,
                                          not_after=NOW + timedelta(days=3), granted_at=NOW,
                                          key=KEY).to_json(), NOW) for who in ("KOR", "USA")]
    engine = at_revision(db_url, "0017")
    try:
        old = sa.Table("standing_consents", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(old.insert(), [
                {"consent_id": r.consent_id, "originator": r.originator,
                 "recipient": r.recipient, "direction": r.direction, "kind": r.kind,
                 "document": json.dumps(dict(r.document)), "at": r.at, "seq": seq}
                for seq, r in enumerate(history)])
        st.migrate(engine)
        with engine.connect() as conn, conn.begin():
            table = st.metadata.tables["standing_consents"]
            ends, revoked = zip(*conn.execute(
                sa.select(table.c.not_after, table.c.revoked).order_by(table.c.row)),
                                strict=True)
            digests = [r.digest for r in st.SqlAuditReader(conn, None).record_rows()
                       if r.table == "standing_consents"]
    finally:
        engine.dispose()
    assert list(ends) == [r.ends for r in history]
    assert ends[1] == NOW + timedelta(days=1) and ends[0] is None and ends[2] is None
    assert revoked == (False, False, False, True, False)
    # Each row still matches what its event recorded: verify finds the columns as filled
    # (in the order the table gives: PostgreSQL's moves the rows it updated).
    assert sorted(digests) == sorted(r.digest() for r in history)


# ---- the reads seek the indexes, never the whole table -----------------------------------

def test_the_reads_seek_what_is_in_force_by_index(node: Node) -> None:
    """SQLite's own query plan: the grants not ended are sought by their end (a plan
    that seeks ``kind = 'grant'`` alone reads every grant ever made, and did until the OR
    was spelt out term by term), each revocation by consent and originator, and the
    revocations counted by originator and time."""
    sent: list[tuple[str, object]] = []

    def keep(*args: object) -> None:
        sent.append((str(args[2]), args[3]))

    sa.event.listen(node.store.engine, "before_cursor_execute", keep)
    try:
        with node.store.repository() as repo:
            repo.standing_current(NOW)
            repo.standing_orphans("KOR", NOW - timedelta(hours=24))
    finally:
        sa.event.remove(node.store.engine, "before_cursor_execute", keep)
    plans = []
    db = sqlite3.connect(node.store.engine.url.database or "")
    try:
        for statement, parameters in sent:
            if "standing_consents" in statement:
                plans.append([str(r[3]) for r in db.execute(
                    "EXPLAIN QUERY PLAN " + statement, parameters)])  # type: ignore[arg-type]
    finally:
        db.close()
    current, orphans = plans
    assert not any(line.startswith("SCAN") for line in current + orphans), plans
    assert any("ix_standing_consents_in_force (kind=? AND revoked=? AND not_after>?)"
               in line for line in current), current
    assert any("ix_standing_consents_owner (consent_id=? AND originator=? AND kind=?)" in line
               for line in current), current
    assert any("ix_standing_consents_revoked (originator=? AND kind=? AND at>?)" in line
               for line in orphans), orphans


def test_a_seal_reads_what_is_on_disk_now_whatever_it_parsed_before(node: Node) -> None:
    """The documents a courier keeps parsed between seals never outlive the disk: a grant
    marked revoked, or revoked by a revocation row, is not read at the next seal; one whose
    document was rewritten is read as it now says (a cache keyed by the consent alone
    would still say sensor-report)."""
    grant = crypto.grant_standing_consent(
        consent_id="standing-consent--1", originator="KOR", recipient="JPN",
        categories=["sensor-report"], purpose="dprk-missile",
        not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=1),
        granted_at=NOW, key=KEY).to_json()
    other = dict(grant, id="standing-consent--2", recipient="NZL")
    parsed: standing.Parsed = {}
    table = st.metadata.tables["standing_consents"]

    def sealed(uow: Any) -> list[tuple[str, frozenset[str]]]:
        return [(c.id, c.categories) for c, _ in standing.with_documents(
            uow.repo.standing_current(NOW, recipient="JPN", direction="obtained"), parsed)]

    uow = node.uow()
    with uow:  # never committed: rolled back at the end
        for seq, (doc, to) in enumerate(((grant, "JPN"), (other, "NZL"))):
            uow.repo.add_standing_consent(StandingConsentRecord(
                doc["id"], "KOR", to, "obtained", "grant", doc, NOW), seq=seq)
        assert sealed(uow) == [("standing-consent--1", frozenset({"sensor-report"}))]
        assert len(parsed) == 1  # the consent to NZL neither read nor parsed
        rewritten = dict(grant, categories=["flight-path"])
        uow.repo.conn.execute(table.update().where(table.c.consent_id == grant["id"])
                              .values(document=json.dumps(rewritten)))
        assert sealed(uow) == [("standing-consent--1", frozenset({"flight-path"}))]
        uow.repo.conn.execute(table.update().where(table.c.consent_id == grant["id"])
                              .values(revoked=True))
        assert sealed(uow) == []
        uow.repo.conn.execute(table.update().where(table.c.consent_id == grant["id"])
                              .values(revoked=False))
        assert sealed(uow) == [("standing-consent--1", frozenset({"flight-path"}))]
        revocation = crypto.revoke_standing_consent(
            consent_id=grant["id"], originator="KOR", revoked_at=NOW, key=KEY).to_json()
        uow.repo.add_standing_consent(StandingConsentRecord(
            grant["id"], "KOR", "JPN", "obtained", "revoke", revocation, NOW), seq=3)
        assert sealed(uow) == []
