"""The ``Repository`` and ``Outbox`` ports over the unit of work's connection."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from gsomia.core.audit import AuditKind, event_time
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    CreatedCustody,
    CustodyRecord,
    Holding,
    IncidentReport,
    NodeUser,
    ReceiptRecord,
    Release,
    Revocation,
    StandingConsentRecord,
    StoredItem,
)
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import DELIVERY, DeliveryDue, NoticeDue
from gsomia.core.types import instant
from gsomia.service.ports import LoggedHead
from gsomia.shell.store._mapping import (
    _audience_rows,
    _blob,
    _chunks,
    _consent,
    _created_rows,
    _custody,
    _custody_values,
    _incident,
    _item,
    _item_values,
    _label,
    _notice,
    _receipt,
    _standing,
    _user,
    _version_key,
    among,
    courier_columns,
    insert_many,
    insert_rows,
    outbox_row_problem,
    revoked_token,
)
from gsomia.shell.store._tables import (
    _HEAD_PARTNER,
    _HEAD_SIZE,
    _HEADS_ONLY,
    audit_events,
    audit_state,
    classification_notices,
    consent_requests,
    consents,
    custody,
    envelopes_seen,
    exchange_state,
    incidents,
    item_audience,
    items,
    outbox,
    receipts,
    revocations,
    standing_consents,
    users,
)

# Statements of every receive's commit, made once (as ``Store._claim_query``), their values
# bound at each call: made at each call, building them and their cache keys cost more CPU
# than running them, under the write lock.
_NOTICES_OF = classification_notices.select().where(
    classification_notices.c.item_id.in_(sa.bindparam("ids", expanding=True))).order_by(
    classification_notices.c.row)
_CONSENTS_OF = consents.select().where(
    consents.c.item_id.in_(sa.bindparam("ids", expanding=True))).order_by(consents.c.row)
_STANDING_CURRENT: dict[tuple[bool, bool], sa.Select[Any]] = {}
# The audit log's size: every event's seq, and so every item's, is below it.
_LOG_SIZE = sa.select(audit_state.c.size).where(audit_state.c.id == 1).scalar_subquery()
# Read by every receive (the replay register) and every settle (the receipts held).
_SEEN_NONCES = sa.select(envelopes_seen.c.nonce).where(
    envelopes_seen.c.nonce.in_(sa.bindparam("nonces", expanding=True)))
_RECEIPTED = sa.select(receipts.c.item_id, receipts.c.version).where(
    receipts.c.item_id.in_(sa.bindparam("ids", expanding=True)),
    receipts.c.peer == sa.bindparam("peer"), receipts.c.direction == sa.bindparam("direction"))


# The dashboard's reads of what one person may read, made once (it asks on every poll):
# built at each call, the statements cost more CPU than running them.
_ITEMS_OF = items.select().where(items.c.id.in_(sa.bindparam("ids", expanding=True)))
_CUSTODY_OF = custody.select().where(custody.c.item_id.in_(sa.bindparam("ids", expanding=True)))
_READABLE: dict[int, sa.CompoundSelect[Any]] = {}
# The desk's reads about the items its user may read (desk29).
_REQUESTS_ABOUT = consent_requests.select().where(
    consent_requests.c.item_id.in_(sa.bindparam("ids", expanding=True))
).order_by(consent_requests.c.at)
_INCIDENTS_ABOUT = incidents.select().where(
    incidents.c.item_id.in_(sa.bindparam("ids", expanding=True)))
_INCIDENTS_ABOUT_NONE = incidents.select().where(incidents.c.item_id.is_(None))


def _readable_query(schemes: int) -> sa.CompoundSelect[Any]:
    """:meth:`SqlRepository.readable_versions`' select for ``schemes`` schemes, made once.
    One seek per scheme, every term an equality or IN on ix_item_audience_reader's
    columns: an OR of the schemes would let the planner seek (party, purpose) alone and
    step over every level above the person's clearance."""
    query = _READABLE.get(schemes)
    if query is None:
        a = item_audience.c
        query = _READABLE[schemes] = sa.union_all(*(
            sa.select(a.item_id, a.version).where(
                a.party == sa.bindparam("party"),
                a.purpose.in_(sa.bindparam("purposes", expanding=True)),
                a.scheme == sa.bindparam(f"scheme_{n}"),
                a.level.in_(sa.bindparam(f"levels_{n}", expanding=True)))
            for n in range(schemes)))
    return query


def _standing_current_query(to: bool, direction: bool) -> sa.Select[Any]:
    """:meth:`SqlRepository.standing_current`'s select for its shape (a recipient named, a
    direction named), made once."""
    query = _STANDING_CURRENT.get((to, direction))
    if query is not None:
        return query
    t = standing_consents
    revoked = t.alias("revoked")
    # By ix_standing_consents_in_force (the grants not revoked and not ended, those
    # whose end does not read too): none of the rest of the history. Each one's
    # revocation is still looked up by id, so a ``revoked`` cleared on disk revives
    # nothing. The OR spelt out term by term: SQLite then seeks the index for each,
    # where (... AND (end > now OR end IS NULL)) takes every grant not revoked.
    live = (t.c.kind == "grant", t.c.revoked == sa.false(),
            *([t.c.recipient == sa.bindparam("recipient")] if to else ()),
            *([t.c.direction == sa.bindparam("direction")] if direction else ()))
    query = t.select().where(
        sa.or_(sa.and_(*live, t.c.not_after > sa.bindparam("now")),
               sa.and_(*live, t.c.not_after.is_(None))),
        ~sa.exists().where(revoked.c.consent_id == t.c.consent_id,
                           revoked.c.originator == t.c.originator,
                           revoked.c.kind == "revoke")).order_by(t.c.row)
    _STANDING_CURRENT[(to, direction)] = query
    return query


class SqlRepository:
    """The ``Repository`` port over one connection (inside the unit of work's transaction)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.revoked = False

    # items and custody
    def add_item(self, item: StoredItem, *, seq: int) -> None:
        self.conn.execute(items.insert(), _item_values(item, seq))

    def add_items(self, batch: list[tuple[StoredItem, int]]) -> None:
        # _item_values of each, in the table's column order: no mapping made per row.
        insert_rows(self.conn, items, [
            (i.item_id, i.version, i.stix_type, i.originator, i.content, i.label, i.binding,
             i.added_at, s) for i, s in batch])

    def get_item(self, item_id: str, version: str | None = None) -> StoredItem | None:
        if version is not None:
            row = self.conn.execute(items.select().where(
                items.c.id == item_id, items.c.version == version)).first()
            return None if row is None else _item(row)
        versions = self.item_versions(item_id)
        return versions[-1] if versions else None

    def item_versions(self, item_id: str) -> list[StoredItem]:
        rows = self.conn.execute(items.select().where(items.c.id == item_id)
                                 .order_by(items.c.row)).all()
        return sorted((_item(r) for r in rows), key=lambda i: _version_key(i.version))

    def held_versions(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        wanted = set(keys)
        return {(row[0], row[1]) for row in among(
            self.conn, "SELECT id, version FROM items WHERE id IN :among",
            {k[0] for k in wanted}) if (row[0], row[1]) in wanted}

    def versions_held(self, item_ids: list[str]) -> set[tuple[str, str]]:
        return {(row[0], row[1]) for row in among(
            self.conn, "SELECT id, version FROM items WHERE id IN :among", item_ids)}

    def labels_stored_after(self, seq: int, *, originator: str,
                            stix_type: str) -> list[tuple[str, bytes]]:
        c = items.c
        return [(str(row.id), bytes(row.label)) for row in self.conn.execute(
            sa.select(c.id, c.label).where(c.seq > seq, c.originator == originator,
                                           c.type == stix_type).order_by(c.seq))]

    def item_seq(self, item_id: str) -> int | None:
        seqs = [r[0] for r in self.conn.execute(
            sa.select(items.c.seq).where(items.c.id == item_id))]
        if not seqs:
            return None
        # A seq the log has not given (retyped on the host's disk, as the outbox scan meets
        # them: scanseq29) tells nothing of when the item came: read, one past the log's size
        # put every output of the centre "before" a raised source, and text raised out of
        # the notice's handling. Before every seq, so that everything stored counts as after.
        size = self.conn.execute(sa.select(_LOG_SIZE)).scalar()
        return min(seqs) if all(_given(s, size) for s in seqs) else -1

    def reclassified_up_to(self, seq: int, *, stix_type: str
                           ) -> list[tuple[str, bytes, list[SecurityLabel]]]:
        # The notices first (a handful in a node's life, none in most): the warning centre
        # asks at every publish, and the items up to its mark are every item held.
        noticed = [str(r[0]) for r in self.conn.execute(
            sa.select(classification_notices.c.item_id).distinct())]
        if not noticed:
            return []
        size = self.conn.execute(sa.select(_LOG_SIZE)).scalar()
        # An item whose seq the log has not given (retyped on the host's disk) may have been
        # stored, and fed, before the mark: counted as such, its notice narrows the centre's
        # label (left out, a raised source was ignored by everything made after).
        rows = [r for r in among(self.conn, "SELECT id, label, seq, type FROM items "
                                 "WHERE id IN :among", noticed)
                if r[3] == stix_type and (not _given(r[2], size) or r[2] <= seq)]
        current = self.current_labels(sorted({str(r[0]) for r in rows})) if rows else {}
        return [(str(r[0]), bytes(r[1]), current.get(str(r[0]), []))
                for r in sorted(rows, key=lambda r: (0, r[2]) if _given(r[2], size)
                                else (1, 0))]

    def current_labels(self, item_ids: list[str]) -> dict[str, list[SecurityLabel]]:
        latest: dict[tuple[str, str], bytes] = {}
        for row in among(self.conn, 'SELECT item_id, version, national_label FROM custody '
                         'WHERE item_id IN :among ORDER BY "row"', item_ids):
            latest[(row[0], row[1])] = bytes(row[2])
        out: dict[str, list[SecurityLabel]] = {}
        for (item_id, _), label in latest.items():
            out.setdefault(item_id, []).append(_label(label))
        return out

    def current_contents(self, item_ids: list[str]) -> dict[str, bytes]:
        newest: dict[str, tuple[tuple[int, datetime | str], bytes]] = {}
        for row in among(self.conn, "SELECT id, version, content FROM items WHERE id IN :among",
                         item_ids):
            key = _version_key(row[1])
            if row[0] not in newest or key > newest[row[0]][0]:
                newest[row[0]] = (key, bytes(row[2]))
        return {item_id: content for item_id, (_, content) in newest.items()}

    def add_custody(self, record: CustodyRecord, *, seq: int) -> None:
        self.conn.execute(custody.insert(), _custody_values(record, seq))
        self._set_audience([record])

    def add_custody_many(self, batch: list[tuple[CustodyRecord, int]]) -> None:
        insert_many(self.conn, custody, [_custody_values(r, s) for r, s in batch])
        self._set_audience([r for r, _ in batch])

    def add_created_custody(self, batch: CreatedCustody, *, seq: int) -> None:
        insert_rows(self.conn, custody, _created_rows(batch, seq))
        # New versions: nothing of theirs to replace in item_audience.
        insert_rows(self.conn, item_audience, [
            row for item_id, version, label, _ in batch.items
            for row in _audience_rows(item_id, version, label)])

    def _set_audience(self, records: Sequence[CustodyRecord]) -> None:
        """Each version's ``item_audience`` rows made those of its latest record's label
        (``records`` in the order added: the last of a version is its current one)."""
        latest = {(r.item_id, r.version): r.national_label for r in records}
        # A version's first record ("created", "received") has no rows to replace yet.
        replaced = sorted({(r.item_id, r.version) for r in records
                           if r.event not in ("created", "received")})
        a = item_audience.c
        for item_id, version in replaced:
            self.conn.execute(item_audience.delete().where(a.item_id == item_id,
                                                           a.version == version))
        insert_rows(self.conn, item_audience, [
            row for (item_id, version), label in latest.items()
            for row in _audience_rows(item_id, version, label)])

    def custody_of(self, item_id: str, version: str) -> list[CustodyRecord]:
        rows = self.conn.execute(custody.select().where(
            custody.c.item_id == item_id, custody.c.version == version)
            .order_by(custody.c.row)).all()
        return [_custody(r) for r in rows]

    def count_items(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(items)).scalar()
                   or 0)

    def count_users(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(users)).scalar()
                   or 0)

    def newest_item_seq(self) -> int:
        """The seq of the event that stored the newest item (0 when none is held)."""
        return int(self.conn.execute(sa.select(sa.func.max(items.c.seq))).scalar() or 0)

    def items_stored_after(self, seq: int, *, originator: str,
                           stix_type: str) -> list[tuple[str, bytes]]:
        """(id, stored content) of the items of ``stix_type`` from ``originator`` stored by
        events after ``seq``, in the order stored."""
        c = items.c
        return [(str(row.id), bytes(row.content)) for row in self.conn.execute(
            sa.select(c.id, c.content).where(c.seq > seq, c.originator == originator,
                                             _type_in_seq_range(self.conn) == stix_type)
            .order_by(c.seq))]

    def readable_versions(self, party: str, purposes: Collection[str],
                          levels: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
        """The versions whose current label lets a person of ``party`` with need-to-know for
        ``purposes``, cleared for ``levels`` (scheme -> level names), read them, sought in
        ``ix_item_audience_reader``: the versions they may not read are not touched. A
        candidate list only; the policy decides on each one's custody label."""
        if not purposes or not levels:
            return []
        params: dict[str, Any] = {"party": party, "purposes": sorted(purposes)}
        for n, (scheme, names) in enumerate(sorted(levels.items())):
            params[f"scheme_{n}"], params[f"levels_{n}"] = scheme, sorted(names)
        rows = self.conn.execute(_readable_query(len(levels)), params)
        return sorted({(str(r[0]), str(r[1])) for r in rows})

    def holdings_of(self, keys: Collection[tuple[str, str]]) -> list[Holding]:
        """The holdings of these versions (those held), in the order stored, each looked up
        by its id: what is not asked for is not read."""
        wanted = set(keys)
        ids = sorted({k[0] for k in wanted})
        found: list[tuple[int, StoredItem]] = []
        history: dict[tuple[str, str], list[tuple[int, CustodyRecord]]] = {}
        for chunk in _chunks(ids):
            for row in self.conn.execute(_ITEMS_OF, {"ids": chunk}):
                if (row.id, row.version) in wanted:
                    found.append((row.row, _item(row)))
            for row in self.conn.execute(_CUSTODY_OF, {"ids": chunk}):
                if (row.item_id, row.version) in wanted:
                    history.setdefault((row.item_id, row.version), []).append(
                        (row.row, _custody(row)))
        found.sort(key=lambda f: f[0])
        return [Holding(item, tuple(r for _, r in sorted(
            history.get((item.item_id, item.version), []), key=lambda h: h[0])))
            for _, item in found]

    def holdings(self) -> list[Holding]:
        history: dict[tuple[str, str], list[CustodyRecord]] = {}
        for row in self.conn.execute(custody.select().order_by(custody.c.row)):
            history.setdefault((row.item_id, row.version), []).append(_custody(row))
        out = []
        for row in self.conn.execute(items.select().order_by(items.c.row)):
            item = _item(row)
            out.append(Holding(item, tuple(history.get((item.item_id, item.version), ()))))
        return out

    # registers
    def add_user(self, user: NodeUser, *, seq: int) -> None:
        self.conn.execute(users.insert(), {
            "name": user.name, "party": user.party, "clearance": user.clearance,
            "need_to_know": json.dumps(sorted(user.need_to_know)),
            "token_hash": user.token_hash, "created_at": user.created_at, "seq": seq,
            "role": user.role})

    def user_named(self, name: str) -> NodeUser | None:
        row = self.conn.execute(users.select().where(users.c.name == name)).first()
        return None if row is None else _user(row)

    def user_by_token(self, token_hash: bytes) -> NodeUser | None:
        """The user holding this token; None if nobody does or the token is revoked."""
        row = self.conn.execute(users.select().where(
            users.c.token_hash == token_hash, ~revoked_token(users.c.token_hash))).first()
        return None if row is None else _user(row)

    def users(self) -> list[NodeUser]:
        return [_user(r) for r in self.conn.execute(users.select().order_by(users.c.name))]

    def add_revocation(self, revocation: Revocation, *, seq: int) -> None:
        self.revoked = True  # the unit of work tells token caches once this commits
        self.conn.execute(revocations.insert(), {
            "name": revocation.name, "token_hash": revocation.token_hash,
            "by": revocation.by, "at": revocation.at, "seq": seq})

    def revoked_names(self) -> set[str]:
        return set(self.conn.execute(sa.select(revocations.c.name)).scalars())

    def add_consent(self, record: ConsentRecord, *, seq: int) -> None:
        self.conn.execute(consents.insert(), {
            "item_id": record.item_id, "originator": record.originator,
            "recipient": record.recipient, "direction": record.direction,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq})

    def consents_for(self, item_id: str) -> list[ConsentRecord]:
        return [_consent(r) for r in self.conn.execute(
            consents.select().where(consents.c.item_id == item_id).order_by(consents.c.row))]

    def add_standing_consent(self, record: StandingConsentRecord, *, seq: int) -> None:
        t = standing_consents
        owner = (t.c.consent_id == record.consent_id, t.c.originator == record.originator)
        # A grant's ``revoked`` says whether its originator's revocation is held (it may
        # have come first), a revocation sets it on the grants it ends: in this unit of
        # work, so the reads of what is in force skip those by index from its commit on.
        revoked = record.kind == "grant" and self.conn.execute(sa.select(
            sa.exists().where(*owner, t.c.kind == "revoke"))).scalar_one()
        self.conn.execute(t.insert(), {
            "consent_id": record.consent_id, "originator": record.originator,
            "recipient": record.recipient, "direction": record.direction, "kind": record.kind,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq, "not_after": record.ends, "revoked": revoked})
        if record.kind == "revoke":
            self.conn.execute(t.update().where(*owner, t.c.kind == "grant",
                                               t.c.revoked == sa.false()).values(revoked=True))

    def versions_from(self, originator: str) -> list[tuple[str, str]]:
        return [(r.id, r.version) for r in self.conn.execute(
            sa.select(items.c.id, items.c.version).where(items.c.originator == originator)
            .order_by(items.c.seq))]

    def standing_consents(self) -> list[StandingConsentRecord]:
        return [_standing(r) for r in self.conn.execute(
            standing_consents.select().order_by(standing_consents.c.row))]

    def standing_consents_named(self, consent_id: str) -> list[StandingConsentRecord]:
        t = standing_consents
        return [_standing(r) for r in self.conn.execute(
            t.select().where(t.c.consent_id == consent_id).order_by(t.c.row))]

    def standing_current(self, now: datetime, *, recipient: str | None = None,
                         direction: str | None = None) -> list[StandingConsentRecord]:
        query = _standing_current_query(recipient is not None, direction is not None)
        return [_standing(r) for r in self.conn.execute(
            query, {"now": now, "recipient": recipient, "direction": direction})]

    def standing_orphans(self, originator: str, since: datetime) -> int:
        t = standing_consents
        granted = t.alias("granted")
        query = sa.select(sa.func.count()).select_from(t).where(
            t.c.originator == originator, t.c.kind == "revoke", t.c.at > since,
            t.c.direction == "obtained", t.c.recipient.is_(None),
            ~sa.exists().where(granted.c.consent_id == t.c.consent_id,
                               granted.c.originator == t.c.originator,
                               granted.c.kind == "grant"))
        return int(self.conn.execute(query).scalar_one())

    def add_notice(self, notice: ClassificationNotice, *, seq: int) -> None:
        self.conn.execute(classification_notices.insert(), {
            "item_id": notice.item_id, "originator": notice.originator,
            "old_level": notice.old_level, "new_level": notice.new_level,
            "issued_at": notice.issued_at, "key": notice.key, "signature": notice.signature,
            "seq": seq})

    def notices_for(self, item_id: str) -> list[ClassificationNotice]:
        t = classification_notices
        return [_notice(r) for r in self.conn.execute(
            t.select().where(t.c.item_id == item_id).order_by(t.c.row))]

    def notices_of(self, item_ids: Collection[str]) -> dict[str, list[ClassificationNotice]]:
        out: dict[str, list[ClassificationNotice]] = {}
        for chunk in _chunks(sorted(set(item_ids))):
            for row in self.conn.execute(_NOTICES_OF, {"ids": chunk}):
                out.setdefault(row.item_id, []).append(_notice(row))
        return out

    def notices_from(self, sender: str, since: datetime, originator: str | None = None) -> int:
        t, a = classification_notices, audit_events
        mine = [t.c.originator == originator] if originator is not None else []
        # An event's ``at`` is text with or without milliseconds, so text order holds to the
        # second only: the rows from ``since``'s second on are read and the rest compared
        # as instants.
        times = self.conn.execute(
            sa.select(a.c.at).select_from(t.join(a, a.c.seq == t.c.seq))
            .where(a.c.actor == sender, a.c.at >= event_time(since)[:19], *mine)).scalars()
        return sum(instant(at) > since for at in times)

    def add_incident(self, report: IncidentReport, *, seq: int) -> None:
        self.conn.execute(incidents.insert(), {
            "reference": report.reference, "kind": report.kind, "item_id": report.item_id,
            "description": report.description, "reported_by": report.reported_by,
            "notify": report.notify, "at": report.at, "seq": seq})

    def incidents(self) -> list[IncidentReport]:
        return [_incident(r) for r in self.conn.execute(
            incidents.select().order_by(incidents.c.seq))]

    def add_receipt(self, record: ReceiptRecord, *, seq: int) -> None:
        self.conn.execute(receipts.insert(), {
            "item_id": record.item_id, "version": record.version, "peer": record.peer,
            "direction": record.direction,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq})

    def add_receipts(self, batch: list[tuple[ReceiptRecord, int]]) -> None:
        # One statement for a batch: one insert per receipt is a tenth of a delivery's cost.
        insert_many(self.conn, receipts, [_receipt_values(r, s) for r, s in batch])

    def receipts_for(self, item_id: str) -> list[ReceiptRecord]:
        return [_receipt(r) for r in self.conn.execute(
            receipts.select().where(receipts.c.item_id == item_id).order_by(receipts.c.row))]

    def receipts_by_version(self, item_id: str | None = None
                            ) -> dict[tuple[str, str], list[ReceiptRecord]]:
        """Every receipt given or obtained (of one item, if named), per item version."""
        query = receipts.select().order_by(receipts.c.row)
        if item_id is not None:
            query = query.where(receipts.c.item_id == item_id)
        out: dict[tuple[str, str], list[ReceiptRecord]] = {}
        for row in self.conn.execute(query):
            out.setdefault((row.item_id, row.version), []).append(_receipt(row))
        return out

    def releases_by_version(self, item_id: str | None = None
                            ) -> dict[tuple[str, str], list[Release]]:
        """The deliveries the release policy queued for partners (the outbox), of one item
        if named, per item version, in the order queued."""
        query = outbox.select().where(outbox.c.kind == DELIVERY).order_by(outbox.c.row)
        if item_id is not None:
            query = query.where(outbox.c.item_id == item_id)
        out: dict[tuple[str, str], list[Release]] = {}
        for row in self.conn.execute(query):
            out.setdefault((row.item_id, row.version), []).append(
                Release(row.recipient, row.status, row.queued_at, row.delivered_at))
        return out

    def receipted(self, item_ids: Collection[str], peer: str,
                  direction: str) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for chunk in _chunks(sorted(set(item_ids))):
            found.update((r.item_id, r.version) for r in self.conn.execute(
                _RECEIPTED, {"ids": chunk, "peer": peer, "direction": direction}))
        return found

    def consents_of(self, item_ids: Collection[str]) -> dict[str, list[ConsentRecord]]:
        out: dict[str, list[ConsentRecord]] = {}
        for chunk in _chunks(sorted(set(item_ids))):
            for row in self.conn.execute(_CONSENTS_OF, {"ids": chunk}):
                out.setdefault(row.item_id, []).append(_consent(row))
        return out

    # the exchange's registers
    # Read at each seal of every link (twice a report at a node of two partners): made
    # once, its ids bound at each read, as the claim's (``Store._claim_query``).
    _BOUND_VERSIONS = sa.select(items.c.id, items.c.version, items.c.content, items.c.label,
                                items.c.binding).where(
        items.c.id.in_(sa.bindparam("ids", expanding=True)))

    def bound_versions(self, item_ids: Collection[str]
                       ) -> Iterator[tuple[str, str, bytes, bytes, bytes]]:
        for chunk in _chunks(sorted(set(item_ids))):
            yield from self.conn.execute(self._BOUND_VERSIONS, {"ids": chunk})

    def add_envelopes_seen(self, rows: Sequence[Any], *, seq: int) -> None:
        insert_many(self.conn, envelopes_seen, [{**r.row(), "seq": seq} for r in rows])

    def seen_nonces(self, nonces: Collection[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(nonces))):
            found.update(self.conn.execute(_SEEN_NONCES, {"nonces": chunk}).scalars())
        return found

    def revoked_standing(self, named: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        t = standing_consents
        wanted = set(named)
        found: set[tuple[str, str]] = set()
        # By consent id (ix_standing_consents_owner's first column); the originator is
        # matched here, so a revocation another party signed for the id revokes nothing.
        for chunk in _chunks(sorted({consent_id for consent_id, _ in wanted})):
            found.update(pair for pair in ((r[0], r[1]) for r in self.conn.execute(
                sa.select(t.c.consent_id, t.c.originator).distinct().where(
                    t.c.consent_id.in_(chunk), t.c.kind == "revoke")))
                if pair in wanted)
        return found

    def add_consent_request(self, request: Any, *, seq: int) -> None:
        self.conn.execute(consent_requests.insert(), {**request.row(), "seq": seq})

    def pending_consent_requests(self, direction: str, *, holder: str | None = None,
                                 item_id: str | None = None) -> int:
        t = consent_requests
        query = sa.select(sa.func.count()).select_from(t).where(
            t.c.direction == direction, t.c.status == "pending")
        if holder is not None:
            query = query.where(t.c.holder == holder)
        if item_id is not None:
            query = query.where(t.c.item_id == item_id)
        return int(self.conn.execute(query).scalar_one())

    def pending_outgoing_request(self, item_id: str, recipient: str) -> str | None:
        t = consent_requests
        return self.conn.execute(
            sa.select(t.c.id).where(t.c.direction == "outgoing", t.c.status == "pending",
                                    t.c.item_id == item_id, t.c.recipient == recipient)
            .order_by(t.c.at).limit(1)).scalar()

    def answer_consent_requests(self, item_id: str, recipient: str | None, status: str,
                                at: datetime, *, request_id: str | None = None) -> None:
        t = consent_requests
        if request_id is not None:
            # Only a request still pending: the originator's answer may have come first.
            query = t.update().where(t.c.id == request_id, t.c.status == "pending")
        else:
            query = t.update().where(t.c.item_id == item_id, t.c.direction == "outgoing",
                                     t.c.status == "pending")
            if recipient is not None:
                query = query.where(t.c.recipient == recipient)
        self.conn.execute(query.values(status=status, decided_at=at))

    # What the operator, the dashboard, the warning centre and the scenarios read. The rows
    # are the driver's named tuples, not copied: these reads are polled (the dashboard's
    # mark every second, the centre's notes after every commit) and are as cheap as the SQL.
    def holdings_mark(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.conn.execute(_HOLDINGS_MARK).one())

    def contents_stored_after(self, seq: int, *, stix_type: str, limit: int
                              ) -> list[tuple[int, str, bytes, datetime | None, bytes]]:
        """Items of ``stix_type`` stored after ``seq``, in order (the warning centre's feed,
        read every pass), each with its originator's label (what the centre may derive from
        it). A row whose values were retyped on the host's disk never stops
        the reader: a seq that is not a whole number is never read (in SQL: it would sort
        after every seq, or hold the mark back, every pass), nor one the log has not given
        (read, it would move the mark past every later item's), a time that reads as none
        is None, content or label not bytes is its bytes; ``audit verify`` names the row."""
        c = items.c
        sqlite = self.conn.dialect.name == "sqlite"
        added = sa.type_coerce(c.added_at, sa.String).label("added_at") if sqlite \
            else c.added_at
        rows = self.conn.execute(
            sa.select(c.seq, c.originator, c.content, added, c.label)
            .where(c.seq > seq, c.seq < _LOG_SIZE, sa.cast(c.seq, sa.BigInteger) == c.seq,
                   _type_in_seq_range(self.conn) == stix_type)
            .order_by(c.seq).limit(limit))
        return [(s, str(originator), _blob(content), _time_or_none(at), _blob(label))
                for s, originator, content, at, label in rows if type(s) is int]

    def contents_held(self, stix_type: str) -> list[tuple[str, bytes, datetime]]:
        c = items.c
        return _rows(self.conn.execute(
            sa.select(c.originator, c.content, c.added_at).where(c.type == stix_type)
            .order_by(c.seq)))

    def added_from(self, originator: str) -> list[tuple[str, datetime]]:
        return _rows(self.conn.execute(
            sa.select(items.c.id, items.c.added_at).where(items.c.originator == originator)))

    def received_since(self, row: int) -> list[tuple[int, str, str | None, bytes]]:
        c = custody.c
        return _rows(self.conn.execute(
            sa.select(c.row, c.item_id, c.provider, c.original_label)
            .where(c.row > row, c.event == "received").order_by(c.row)))

    def incident_records(self, item_ids: Collection[str] | None = None
                         ) -> list[dict[str, Any]]:
        if item_ids is None:
            return [dict(r._mapping) for r in self.conn.execute(
                sa.select(incidents).order_by(incidents.c.seq))]
        # Sought by item (ix_incidents_item): those about other items are not touched.
        found = list(self.conn.execute(_INCIDENTS_ABOUT_NONE))
        for chunk in _chunks(sorted(set(item_ids))):
            found.extend(self.conn.execute(_INCIDENTS_ABOUT, {"ids": chunk}))
        return [dict(r._mapping) for r in sorted(found, key=lambda r: r.seq)]

    def consent_request_count(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count())
                                     .select_from(consent_requests)).scalar() or 0)

    def consent_request_rows(self, item_ids: Collection[str] | None = None
                             ) -> list[dict[str, Any]]:
        if item_ids is None:
            return [dict(r._mapping) for r in self.conn.execute(
                sa.select(consent_requests).order_by(consent_requests.c.at))]
        # Sought by item (ix_consent_requests_item): those about other items are not touched.
        found: list[sa.Row[Any]] = []
        for chunk in _chunks(sorted(set(item_ids))):
            found.extend(self.conn.execute(_REQUESTS_ABOUT, {"ids": chunk}))
        return [dict(r._mapping) for r in sorted(found, key=lambda r: r.at)]

    def consent_request_row(self, request_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(sa.select(consent_requests)
                                .where(consent_requests.c.id == request_id)).first()
        return None if row is None else dict(row._mapping)

    def head_records(self, kinds: Collection[str],
                     limit: int | None = None) -> list[LoggedHead]:
        t = audit_events
        query = (sa.select(t.c.seq, t.c.kind, t.c.at, t.c.details)
                 .where(t.c.kind.in_(kinds)).order_by(t.c.seq.desc()))
        if limit is not None:
            query = query.limit(limit)
        return _rows(self.conn.execute(query))

    def newest_of(self, kinds: Collection[str], limit: int) -> list[tuple[str, str, str, Any]]:
        """(kind, at, actor, details) of the newest ``limit`` events of ``kinds``."""
        t = audit_events
        return _rows(self.conn.execute(
            sa.select(t.c.kind, t.c.at, t.c.actor, t.c.details)
            .where(t.c.kind.in_(kinds)).order_by(t.c.seq.desc()).limit(limit)))

    def newest_head_after(self, after: int) -> int | None:
        return self.conn.execute(_NEWEST_HEAD, {"after": after}).scalar()

    def partner_head_records(self, partner: str, after: int = 0) -> list[LoggedHead]:
        if not partner.isalnum():
            return []  # a party code: nothing a LIKE pattern would read as a wildcard
        # Canonical JSON (RFC 8785): no spaces, and a quote inside a string is escaped, so
        # the pattern matches the event's own member only (the caller checks it parsed).
        named = f'%"partner":"{partner}"%'

        def newest(kind: AuditKind, also: str = "%", limit: int = 1) -> list[Any]:
            return _rows(self.conn.execute(_PARTNER_HEADS, {
                "kind": kind.value, "after": after, "named": named, "also": also,
                "limit": limit}))

        inconsistent = newest(AuditKind.PARTNER_LOG_INCONSISTENT, limit=2 ** 62)
        exchanged = newest(AuditKind.TREE_HEAD_EXCHANGED)
        checked = [] if inconsistent else newest(AuditKind.TREE_HEAD_EXCHANGED,
                                                 '%"consistent":true%')
        rows = {r.seq: r for r in (*inconsistent, *exchanged, *checked)}
        return [rows[seq] for seq in sorted(rows, reverse=True)]

    def partner_heads_by_size(self, partner: str) -> Iterator[tuple[Any, LoggedHead]]:
        if self.conn.dialect.name == "sqlite":
            for row in self.conn.execute(_HEADS_BY_SIZE, {"partner": partner}):
                yield row.size, row
            return
        # Elsewhere without an index of its own: the partner's records (the partial index
        # and a pattern), sorted here as SQLite's index sorts them.
        rows = self._partner_rows(partner) if partner.isalnum() else \
            self.head_records(_HEAD_KINDS)
        keyed = [(_recorded_head_size(r.details), r) for r in rows]
        keyed.sort(key=lambda k: (k[0] is not None, k[0] or 0, k[1].seq), reverse=True)
        yield from keyed

    def partner_heads_newest(self, partner: str, kind: AuditKind,
                             also: str = "%") -> Iterator[LoggedHead]:
        if not partner.isalnum():
            yield from (r for r in self.head_records((kind.value,)))
            return
        yield from self.conn.execute(_PARTNER_HEADS_ALL, {
            "kind": kind.value, "after": 0, "named": f'%"partner":"{partner}"%',
            "also": also})

    def _partner_rows(self, partner: str) -> list[LoggedHead]:
        return _rows(self.conn.execute(
            sa.text(f"SELECT seq, kind, at, details FROM audit_events WHERE {_HEADS_ONLY} "
                    "AND details LIKE :named ORDER BY seq DESC"),
            {"named": f'%"partner":"{partner}"%'}))

    def newest_events(self, limit: int) -> list[tuple[int, str]]:
        """The newest events' (seq, kind), newest first; an event whose seq was retyped on
        the host's disk is left out (the head exchange reads these every pass; ``audit
        verify`` names the event)."""
        t = audit_events
        return [(seq, kind) for seq, kind in self.conn.execute(
            sa.select(t.c.seq, t.c.kind).order_by(t.c.seq.desc()).limit(limit))
            if type(seq) is int]

    # the outbox, as the operator reads it
    def queued_recipients(self, kind: str, reference: str) -> list[str]:
        return list(self.conn.execute(sa.select(outbox.c.recipient).where(
            outbox.c.kind == kind, outbox.c.reference == reference)
            .order_by(outbox.c.row)).scalars())

    def notice_rows(self, kind: str | None = None,
                    references: Collection[str] | None = None) -> list[dict[str, Any]]:
        """The notices of the outbox as the operator reads them; a time retyped on the
        host's disk is shown as stored (``unreadable: ...``), never a failed read."""
        dialect = self.conn.dialect.name
        query = sa.select(*[_stored_time(c, dialect) for c in outbox.c
                            if c.name != "version"]).order_by(outbox.c.row)
        if kind is None or references is None:
            found = list(self.conn.execute(query.where(
                outbox.c.kind != DELIVERY if kind is None else outbox.c.kind == kind)))
        else:
            # Sought by (kind, reference) in uq_outbox_notice: no other notice is touched.
            found = []
            for chunk in _chunks(sorted(set(references))):
                found.extend(self.conn.execute(query.where(
                    outbox.c.kind == kind, outbox.c.reference.in_(chunk))))
            found.sort(key=lambda r: r.row)
        return [{k: _shown_time(v) if k in _TIMES else v for k, v in r._mapping.items()}
                for r in found]

    def notices_in(self, status: str) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.kind != DELIVERY, outbox.c.status == status)).scalar() or 0)

    def held_back(self) -> list[tuple[str, str, int, int, int]]:
        return _rows(self.conn.execute(
            sa.select(outbox.c.recipient, outbox.c.kind, sa.func.count(),
                      sa.func.max(outbox.c.attempts), sa.func.max(outbox.c.not_now))
            .where(outbox.c.status == "pending", outbox.c.last_error.like("HTTP 429%"))
            .group_by(outbox.c.recipient, outbox.c.kind)
            .order_by(outbox.c.recipient, outbox.c.kind)))

    def unreadable_outbox(self) -> list[tuple[int, str, str, str]]:
        """Pending outbox rows the courier does not take because a value it computes with
        was written behind the node's back (:func:`outbox_row_problem`): (row, kind,
        recipient, why), oldest first."""
        found = []
        query = sa.select(*courier_columns(self.conn.dialect.name)).where(sa.or_(
            outbox.c.status == "pending",
            outbox.c.status.notin_(["pending", "delivered", "refused"]))
        ).order_by(outbox.c.row)
        for row in self.conn.execute(query.execution_options(yield_per=2000)):
            why = outbox_row_problem(row._mapping)
            if why is not None:
                found.append((int(row.row), repr(row.kind), repr(row.recipient), why))
        return found

    def deliveries_by_status(self) -> dict[str, int]:
        return {str(status): int(n) for status, n in self.conn.execute(
            sa.select(outbox.c.status, sa.func.count())
            .where(outbox.c.kind == DELIVERY).group_by(outbox.c.status))}

    def deliveries_refused(self, limit: int) -> list[tuple[str, str, str | None]]:
        return _rows(self.conn.execute(
            sa.select(outbox.c.item_id, outbox.c.recipient, outbox.c.last_error)
            .where(outbox.c.kind == DELIVERY, outbox.c.status == "refused")
            .order_by(outbox.c.row.desc()).limit(limit)))

    def delivered(self) -> list[tuple[str, str, datetime | None]]:
        return _rows(self.conn.execute(
            sa.select(outbox.c.item_id, outbox.c.recipient, outbox.c.delivered_at)
            .where(outbox.c.status == "delivered")))

    def deliveries_pending(self, recipient: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.kind == DELIVERY, outbox.c.status == "pending")
        if recipient is not None:
            query = query.where(outbox.c.recipient == recipient)
        return int(self.conn.execute(query).scalar() or 0)

    def delivery_rows(self) -> list[dict[str, Any]]:
        """The deliveries of the outbox, times as :meth:`notice_rows` shows them."""
        dialect = self.conn.dialect.name
        return [{k: _shown_time(v) if k in _TIMES else v for k, v in r._mapping.items()}
                for r in self.conn.execute(
                    sa.select(*[_stored_time(c, dialect) for c in outbox.c
                                if c.name not in _NOTICE_ONLY])
                    .where(outbox.c.kind == DELIVERY).order_by(outbox.c.row))]

    def stored_since_scan(self) -> bool:
        mark, newest, size = self.conn.execute(_SCAN_LOOK).one()
        if newest is None:
            return False
        # Either retyped on the host's disk, or a mark the log has not given (moved past its
        # size, it would hide every item for good): the scan looks, and passes over what is
        # not a seq the log has given.
        return not _given(mark, size) or type(newest) is not int or newest > mark


# The columns of the outbox only its notices fill: a delivery's row is shown without them.
_NOTICE_ONLY = ("kind", "reference", "body")
# Polled (the dashboard's state): built once, not on every call.
# Each part the newest key of its table, read at one end of its primary key: the rows are
# never deleted, so it moves with every one added. count(*) stepped over every row, twice a
# second for every open dashboard, so the stream's check took longer the more the node held,
# readable or not (desk29).
_HOLDINGS_MARK = sa.text(
    'SELECT (SELECT coalesce(max("row"), 0) FROM items),'
    ' (SELECT coalesce(max("row"), 0) FROM custody),'
    ' (SELECT coalesce(max("row"), 0) FROM receipts),'
    ' (SELECT coalesce(max(size), 0) FROM tree_heads)')
# Built once (the dashboard asks on every poll); with the partial index's own predicate.
_PARTNER_HEADS = sa.text(
    f"SELECT seq, kind, at, details FROM audit_events WHERE {_HEADS_ONLY} AND kind = :kind "
    "AND seq > :after AND details LIKE :named AND details LIKE :also "
    "ORDER BY seq DESC LIMIT :limit")
_PARTNER_HEADS_ALL = sa.text(
    f"SELECT seq, kind, at, details FROM audit_events WHERE {_HEADS_ONLY} AND kind = :kind "
    "AND seq > :after AND details LIKE :named AND details LIKE :also ORDER BY seq DESC")
# One partner's head records, largest head first (newest first among equals), by
# ix_audit_events_partner_size; a size that is not a JSON number sorts as SQLite sorts it.
_HEADS_BY_SIZE = sa.text(
    f"SELECT seq, kind, at, details, {_HEAD_SIZE} AS size FROM audit_events "
    f"WHERE {_HEADS_ONLY} AND {_HEAD_PARTNER} = :partner ORDER BY {_HEAD_SIZE} DESC, seq DESC")
_HEAD_KINDS = ("tree-head-exchanged", "partner-log-inconsistent")


def _recorded_head_size(details: str) -> int | None:
    """The head's size a record names, if a whole number (as the caller's check wants)."""
    try:
        size = json.loads(details)["head"]["size"]
    except (ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


_NEWEST_HEAD = sa.text(
    f"SELECT seq FROM audit_events WHERE {_HEADS_ONLY} AND seq > :after "
    "ORDER BY seq DESC LIMIT 1")


_TIMES = ("next_at", "queued_at", "delivered_at")


def _stored_time(column: Any, dialect: str) -> Any:
    """A time column as SQLite keeps it (text, parsed by :func:`_shown_time`)."""
    return sa.type_coerce(column, sa.String).label(column.name) \
        if column.name in _TIMES and dialect == "sqlite" else column


def _shown_time(value: Any) -> datetime | str | None:
    if value is None:
        return None
    at = _time_or_none(value)
    return at if at is not None else f"unreadable: {value!r}"


def _time_or_none(value: Any) -> datetime | None:
    """A time as the store keeps it (a datetime, or SQLite's text), or None if it reads as
    no time (retyped on the host's disk)."""
    if isinstance(value, datetime):
        return instant(value)
    try:
        return instant(datetime.fromisoformat(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _rows(result: sa.Result[Any]) -> list[Any]:
    """The rows of ``result`` as the driver gave them: named tuples, typed by the caller."""
    return cast("list[Any]", result.all())


def _receipt_values(record: ReceiptRecord, seq: int) -> dict[str, Any]:
    return {"item_id": record.item_id, "version": record.version, "peer": record.peer,
            "direction": record.direction,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq}


# The outbox scan's watermark (:meth:`SqlOutbox.advance_scan`, at every commit that stores
# an item): made once, as the statements above.
# A seq the audit log has not given (an item's or the mark, retyped on the host's disk past
# the log's size) is neither read nor trusted, as the warning centre's (finalreview28b):
# read, the mark moved to it and every item stored after was skipped for good. In a unit of
# work the size is the log's as it appends (its events are written at the commit), bound.
_GIVEN = sa.and_(items.c.seq < sa.bindparam("size"),
                 sa.cast(items.c.seq, sa.BigInteger) == items.c.seq)
_SCAN_MARK = sa.select(exchange_state.c.scanned_seq).where(exchange_state.c.id == 1)
_NEWER = sa.and_(items.c.seq > exchange_state.c.scanned_seq, _GIVEN)
_SCAN_MARK_AND_NEWER = sa.select(
    exchange_state.c.scanned_seq,
    sa.select(sa.func.count()).select_from(items).where(_NEWER).scalar_subquery(),
    sa.select(sa.func.max(items.c.seq)).where(_NEWER).scalar_subquery(),
).where(exchange_state.c.id == 1)
# The start-up scan's first look: the mark, the newest item the log has given, its size.
_SCAN_LOOK = sa.select(
    sa.select(exchange_state.c.scanned_seq).where(exchange_state.c.id == 1).scalar_subquery(),
    sa.select(sa.func.max(items.c.seq)).where(items.c.seq < _LOG_SIZE).scalar_subquery(),
    _LOG_SIZE)


def _type_in_seq_range(conn: sa.Connection) -> sa.ColumnElement[Any]:
    """``items.type`` for a read of the seqs after a mark: SQLite (no statistics) read
    ``type =`` by ix_items_type, every item of that type held, then sorted (10 ms of CPU
    with 10,000 notes); ``+type`` leaves it ix_items_seq's range after the mark (0.05 ms).
    The same comparison: a unary plus changes no value."""
    if conn.dialect.name == "sqlite":
        return sa.literal_column("+items.type", sa.String)
    return items.c.type


def _given(seq: Any, size: Any) -> bool:
    """Whether ``seq`` (a mark as stored) is a whole number the log of ``size`` has given."""
    return type(seq) is int and type(size) is int and seq < size
_SET_SCAN_MARK = exchange_state.update().where(exchange_state.c.id == 1).values(
    scanned_seq=sa.bindparam("seq"))


# The statements of every report's way, made once, their values bound at each call (as
# ``_CONSENTS_OF``): made at each call, building one and its cache key cost 35-70 us of
# CPU, six of them a report (publish, receive, settle), GIL time the node's other loops
# wait for. The lists go in expanding parameters, a chunk of ``_chunks`` at a time.
_QUEUED_DELIVERIES = sa.select(outbox.c.item_id, outbox.c.version, outbox.c.recipient).where(
    outbox.c.kind == DELIVERY, outbox.c.item_id.in_(sa.bindparam("ids", expanding=True)))
_STILL_PENDING = sa.select(outbox.c.row).where(
    outbox.c.row.in_(sa.bindparam("rows", expanding=True)), outbox.c.status == "pending")
_MARK_DELIVERED = outbox.update().where(outbox.c.row == sa.bindparam("r")).values(
    status="delivered", delivered_at=sa.bindparam("at"), attempts=sa.bindparam("n"))
_MARK_REFUSED = outbox.update().where(outbox.c.row == sa.bindparam("r")).values(
    status="refused", last_error=sa.bindparam("e"), attempts=sa.bindparam("n"))
# A batch to a partner that is down goes back one row at a time: one statement for all.
_RETRY = outbox.update().where(outbox.c.row == sa.bindparam("r"),
                               outbox.c.status == "pending").values(
    attempts=sa.bindparam("n"), not_now=sa.bindparam("nn"), next_at=sa.bindparam("next"),
    last_error=sa.bindparam("e"))


class SqlOutbox:
    """The ``Outbox`` port over the ``outbox`` table (deliveries and notices), in the unit
    of work's transaction."""

    def __init__(self, conn: sa.Connection, log_size: Callable[[], int]) -> None:
        self.conn = conn
        self.log_size = log_size  # the audit log's, with the events this transaction appended
        self.queued_to: set[str] = set()  # recipients of the rows this transaction added

    def queued_deliveries(self, keys: Collection[tuple[str, str, str]]
                          ) -> set[tuple[str, str, str]]:
        wanted = set(keys)
        held: set[tuple[str, str, str]] = set()
        for chunk in _chunks(sorted({k[0] for k in wanted})):
            held.update(k for k in ((r.item_id, r.version, r.recipient) for r in self.conn.execute(
                _QUEUED_DELIVERIES, {"ids": chunk})) if k in wanted)
        return held

    def add_deliveries(self, rows: Sequence[DeliveryDue], *, now: datetime, seq: int) -> None:
        self.queued_to.update(d.recipient for d in rows)
        insert_many(self.conn, outbox, [
            {"kind": DELIVERY, "item_id": d.item_id, "version": d.version,
             "recipient": d.recipient, "reference": None, "body": None, "status": "pending",
             "attempts": 0, "next_at": now, "queued_at": now, "delivered_at": None,
             "last_error": None, "seq": seq, "not_now": 0} for d in rows])

    def queued_notices(self, keys: Collection[tuple[str, str, str]]
                       ) -> set[tuple[str, str, str]]:
        wanted = set(keys)
        if not wanted:
            return set()
        return {k for k in ((r.kind, r.reference, r.recipient) for r in self.conn.execute(
            sa.select(outbox.c.kind, outbox.c.reference, outbox.c.recipient)
            .where(outbox.c.reference.in_(sorted({k[1] for k in wanted}))))) if k in wanted}

    def add_notices(self, rows: Sequence[NoticeDue], *, now: datetime, seq: int) -> None:
        self.queued_to.update(n.recipient for n in rows)
        insert_many(self.conn, outbox, [
            {"kind": n.kind, "recipient": n.recipient, "reference": n.reference,
             "item_id": n.item_id, "version": None, "body": n.body, "status": "pending",
             "attempts": 0, "next_at": now, "queued_at": now, "delivered_at": None,
             "last_error": None, "seq": seq, "not_now": 0} for n in rows])

    def _mark(self) -> int | None:
        found = self.conn.execute(_SCAN_MARK).first()
        if found is None:
            return None
        # Not a seq the log has given (retyped on the host's disk): every item is looked at
        # again, as if none were, and queued once each (what is queued is not queued again).
        return found[0] if _given(found[0], self.log_size()) else -1

    def advance_scan(self, added: int) -> int | None:
        # The mark and the items stored after it, read at once (every receive's commit
        # comes here under the write lock): the mark as :meth:`_mark` reads it.
        size = self.log_size()
        found = self.conn.execute(_SCAN_MARK_AND_NEWER, {"size": size}).first() \
            if added > 0 else None
        if found is not None and _given(found[0], size):
            if found[1] == added and found[2] is not None:
                self.conn.execute(_SET_SCAN_MARK, {"seq": int(found[2])})
                return int(found[2])
            return None
        mark = self._mark()
        if mark is None:
            # No watermark yet: a node's first scan found its store empty and set none. Set
            # it now if this commit's items are all the store holds (each is queued in this
            # commit), else the first restart re-plans every item ever stored, two reads
            # each (1.2 s of CPU per 2,000 items). Other than ``added`` items: left to the scan.
            if added <= 0:
                return None
            nth = sa.select(items.c.seq).order_by(items.c.seq).limit(1)
            if self.conn.execute(nth.offset(added - 1)).first() is None or \
                    self.conn.execute(nth.offset(added)).first() is not None:
                return None
            newest = self.conn.execute(sa.select(sa.func.max(items.c.seq))).scalar()
            if newest is None:
                return None
            self.conn.execute(exchange_state.insert(), {"id": 1, "scanned_seq": int(newest)})
            return int(newest)
        newer = self.conn.execute(sa.select(sa.func.count(), sa.func.max(items.c.seq))
                                  .where(items.c.seq > mark, _GIVEN), {"size": size}).one()
        if newer[0] == added and newer[1] is not None:
            self.set_scan_mark(int(newer[1]))
            return int(newer[1])
        return None

    def unscanned(self) -> list[tuple[str, str, int]]:
        mark = self._mark()
        if mark is None:
            self.conn.execute(exchange_state.insert(), {"id": 1, "scanned_seq": -1})
            mark = -1
        # An item whose seq is not one the log has given (retyped on disk) is left: `audit
        # verify` names it.
        return [(r.id, r.version, r.seq) for r in self.conn.execute(
            sa.select(items.c.id, items.c.version, items.c.seq)
            .where(items.c.seq > mark, _GIVEN).order_by(items.c.seq),
            {"size": self.log_size()}) if type(r.seq) is int]

    def set_scan_mark(self, seq: int) -> None:
        self.conn.execute(_SET_SCAN_MARK, {"seq": seq})

    def still_pending(self, rows: Collection[int]) -> set[int]:
        found: set[int] = set()
        for chunk in _chunks(sorted(set(rows))):
            found.update(self.conn.execute(_STILL_PENDING, {"rows": chunk}).scalars())
        return found

    def mark_delivered(self, rows: Sequence[tuple[int, int]], at: datetime) -> None:
        if rows:
            self.conn.execute(_MARK_DELIVERED, [{"r": r, "n": n, "at": at} for r, n in rows])

    def mark_refused(self, rows: Sequence[tuple[int, int, str]]) -> None:
        if rows:
            self.conn.execute(_MARK_REFUSED, [{"r": r, "n": n, "e": e} for r, n, e in rows])

    def retry_deliveries(self, rows: Sequence[tuple[int, int, int, datetime, str]]) -> None:
        if rows:
            self.conn.execute(_RETRY, [{"r": row, "n": attempts, "nn": not_now,
                                        "next": next_at, "e": error}
                                       for row, attempts, not_now, next_at, error in rows])

    def update_notices(self, rows: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        for key, values in rows:
            self.conn.execute(outbox.update().where(outbox.c.row == key,
                                                    outbox.c.kind != DELIVERY)
                              .values(**values))
