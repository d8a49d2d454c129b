"""The node's tables (SQLAlchemy Core) and what ``audit verify`` checks of each."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from gsomia.core.custody import REGISTER_FIELDS
from gsomia.core.types import instant


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:
            value = instant(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None,
                             dialect: sa.Dialect) -> datetime | None:
        return None if value is None else instant(value)


def _id() -> sa.Column[int]:
    # SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid).
    return sa.Column("row", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                     primary_key=True, autoincrement=True)


metadata = sa.MetaData()

node_identity = sa.Table(
    "node_identity", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("party", sa.String(3), nullable=False),
    sa.Column("signing_key", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

items = sa.Table(
    "items", metadata, _id(),
    sa.Column("id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("label", sa.LargeBinary, nullable=False),
    sa.Column("binding", sa.LargeBinary, nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("id", "version", name="uq_items_id_version"),
    sa.Index("ix_items_added_at", "added_at"),
    sa.Index("ix_items_type", "type"),
    # Migration 0015: the outbox's scan watermark reads the items after a seq.
    sa.Index("ix_items_seq", "seq"),
)

custody = sa.Table(
    "custody", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("holder", sa.String(3), nullable=False),
    sa.Column("provider", sa.String(3), nullable=True),
    sa.Column("agreement", sa.String, nullable=True),
    sa.Column("original_label", sa.LargeBinary, nullable=False),
    sa.Column("national_label", sa.LargeBinary, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("envelope_digest", sa.LargeBinary, nullable=True),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_custody_item", "item_id", "version"),
)

# Migration 0023: who may be shown each item version, by the national label of its latest
# custody record: a row per party of its audience (its originator, and REL TO unless
# NOFORN) with the label's purpose, scheme and level, so a person's readable versions are
# sought by what they hold (party, need-to-know, the levels their clearance covers) and
# the versions they may not read are never touched: a scan of every holding made the
# dashboard's answer take longer the more the node held above them (dashsql29). It only
# narrows: what is shown is still decided on the custody record's label.
item_audience = sa.Table(
    "item_audience", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("party", sa.String(3), nullable=False),
    sa.Column("purpose", sa.String, nullable=False),
    sa.Column("scheme", sa.String(3), nullable=False),
    sa.Column("level", sa.String, nullable=False),
    sa.Index("ix_item_audience_reader", "party", "purpose", "scheme", "level"),
    sa.Index("ix_item_audience_item", "item_id", "version"),
)

users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("party", sa.String(3), nullable=False),
    sa.Column("clearance", sa.String, nullable=False),
    sa.Column("need_to_know", sa.Text, nullable=False),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # Migration 0011; the role is in the user's digest unless it is "reader".
    sa.Column("role", sa.String(16), nullable=False, server_default="reader"),
    sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
)

consents = sa.Table(
    "consents", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("recipient", sa.String(3), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_consents_item", "item_id"),
)

# Migration 0014: standing consents and their revocations, one row each, never changed but
# for a grant's ``revoked`` (migration 0020), set when its originator's revocation is kept.
standing_consents = sa.Table(
    "standing_consents", metadata, _id(),
    sa.Column("consent_id", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("recipient", sa.String(3), nullable=True),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # Migration 0018: a grant's end as its document says (StandingConsentRecord.ends, checked
    # by audit verify), so the consents in force are read without the whole history.
    sa.Column("not_after", UTCDateTime, nullable=True),
    # Migration 0020: a grant whose originator's revocation is held (checked by audit
    # verify against the revocations), so the reads of what is in force skip it by index.
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_standing_consents_id", "consent_id"),
    # Migration 0018: a consent's revocation (or grant) by its originator, looked up for each
    # grant in force (or revocation counted) in one step.
    sa.Index("ix_standing_consents_owner", "consent_id", "originator", "kind"),
    sa.Index("ix_standing_consents_in_force", "kind", "revoked", "not_after"),
    sa.Index("ix_standing_consents_revoked", "originator", "kind", "at"),
)

classification_notices = sa.Table(
    "classification_notices", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("originator", sa.String(3), nullable=False),
    sa.Column("old_level", sa.String, nullable=False),
    sa.Column("new_level", sa.String, nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_notices_item", "item_id"),
)

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("reference", sa.String, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("item_id", sa.String, nullable=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("reported_by", sa.String, nullable=False),
    sa.Column("notify", sa.String(3), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # Migration 0024: the desk asks for the incidents about the items its user may read.
    sa.Index("ix_incidents_item", "item_id"),
)

revocations = sa.Table(
    "revocations", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column("by", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("token_hash", name="uq_revocations_token_hash"),
)

receipts = sa.Table(
    "receipts", metadata, _id(),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("peer", sa.String(3), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_receipts_item", "item_id", "version"),
    # A receipt is given or obtained once per (item, version, partner): the handlers check,
    # and the store refuses a second one should a path ever forget to.
    sa.Index("ux_receipts_once", "item_id", "version", "peer", "direction", unique=True),
)

# Storage order (``position``) is kept apart from ``seq`` so that rows moved around in the
# table read back out of order and are reported as reordered.
# The partial index's predicate, written the same in the queries that use it: SQLite uses
# a partial index only for a query whose WHERE holds the index's own terms.
_HEADS_ONLY = "kind IN ('tree-head-exchanged', 'partner-log-inconsistent')"
# The expressions of ix_audit_events_partner_size, written the same in its query.
_HEAD_PARTNER = "CASE WHEN json_valid(details) THEN json_extract(details, '$.partner') END"
_HEAD_SIZE = "CASE WHEN json_valid(details) THEN json_extract(details, '$.head.size') END"

audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("item_id", sa.String, nullable=True),
    sa.Column("item_version", sa.String, nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("seq", name="uq_audit_events_seq"),
    sa.Index("ix_audit_events_item", "item_id"),
    # Partners' heads only (migration 0016): the dashboard reads each partner's newest on
    # every poll, and without it each read scanned the log; a partial index costs the
    # other events' appends nothing.
    sa.Index("ix_audit_events_heads", "kind", "seq",
             sqlite_where=sa.text(_HEADS_ONLY), postgresql_where=sa.text(_HEADS_ONLY)),
    # And ix_audit_events_partner_size, each partner's heads by size (migration 0017, SQLite
    # only, not declared here: Alembic can neither compare an index of expressions nor
    # leave one out on PostgreSQL): the largest head a partner signed is asked for by the
    # partner at its start (held_head_of), and without it each answer read and parsed every
    # head in the log. Guarded by json_valid, so a row whose details are not JSON is left
    # out of it, never refused.
)

tree_heads = sa.Table(
    "tree_heads", metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("timestamp", sa.String(32), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
)

# The Merkle frontier (one hash per set bit of size) so appends never reread the log.
audit_state = sa.Table(
    "audit_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),
)

# The exchange (migration 0002; used by gsomia.shell.exchange): what the node owes its
# partners (one outbox, migration 0012), envelope nonces seen (replay), the outbox scan
# watermark, consent requests.
#
# The outbox holds deliveries (``kind`` "delivery": an item version owed to ``recipient``)
# and notices (``kind`` "incident" or "classification-notice": ``body`` posted, named by
# ``reference``), queued in the commit of the event that causes them and sent by one
# courier. Each row is one of two registers of the log, by kind: a delivery is an "outbox"
# record, a notice a "notices" record (the names the log has always used).
outbox = sa.Table(
    "outbox", metadata,
    _id(),
    sa.Column("item_id", sa.String, nullable=True),
    sa.Column("version", sa.String, nullable=True),
    sa.Column("recipient", sa.String(3), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False, server_default="delivery"),
    sa.Column("reference", sa.String, nullable=True),
    sa.Column("body", sa.Text, nullable=True),
    # The partner's "not now"s (429) in a row, its last answers to this row: what its next
    # try's wait doubles with (gsomia.core.outbox.next_try); 0 after any other outcome.
    sa.Column("not_now", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("item_id", "version", "recipient", name="uq_outbox_delivery"),
    sa.UniqueConstraint("kind", "reference", "recipient", name="uq_outbox_notice"),
    sa.Index("ix_outbox_due", "status", "recipient", "next_at"),
    # Migrations 0021-0022: the notices alone (partial), by recipient and next try; a query
    # must say ``NOTICE_ROWS`` as written here for SQLite to read this index.
    sa.Index("ix_outbox_notices", "status", "recipient", "next_at",
             sqlite_where=sa.text("kind != 'delivery'"),
             postgresql_where=sa.text("kind != 'delivery'")),
)
# What ix_outbox_notices holds, as a query's term (a literal: SQLite matches a partial
# index's condition to the query's as written, which a bound value is not).
NOTICE_ROWS = outbox.c.kind != sa.literal_column("'delivery'")
envelopes_seen = sa.Table(
    "envelopes_seen", metadata,
    sa.Column("nonce", sa.String, primary_key=True),
    sa.Column("sender", sa.String(3), nullable=False),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=True),
)
exchange_state = sa.Table(
    "exchange_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("scanned_seq", sa.BigInteger, nullable=False),
)
consent_requests = sa.Table(
    "consent_requests", metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("holder", sa.String(3), nullable=False),
    sa.Column("recipient", sa.String(3), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    # Migration 0024: the desk asks for the requests about the items its user may read.
    sa.Index("ix_consent_requests_item", "item_id"),
)

# Which table holds each register the log records rows of (the registers are the log's
# names; deliveries and notices share the outbox since migration 0012).
REGISTER_TABLES = {name: "outbox" if name == "notices" else name for name in REGISTER_FIELDS}

RECORD_TABLES = ("custody", "users", "consents", "classification_notices", "incidents",
                 "receipts", "revocations", "standing_consents")

# How ``audit verify`` answers for every table of the store (tests/unit check none is left
# out): "logged" rows carry their event's seq and digest; "log" is the log itself; the
# others are checked against the log as their entry says.
TABLE_COVERAGE: dict[str, str] = {
    "node_identity": "party and key checked against event 0 and the node's key",
    "items": "content hash, type, originator, time added bound by the storing event",
    "custody": "logged", "users": "logged", "consents": "logged",
    "classification_notices": "logged", "incidents": "logged", "receipts": "logged",
    "revocations": "logged", "standing_consents": "logged",
    "audit_events": "log", "tree_heads": "signatures and roots against the log",
    "audit_state": "frontier recomputed from the log",
    "outbox": "logged (deliveries and notices, each by its kind's register); a delivery "
              "delivered needs a receipt obtained, refused a logged refusal; a notice "
              "delivered or refused its logged outcome; the courier's bookkeeping "
              "(attempts, not_now) only scales a wait the next try's bound holds",
    "envelopes_seen": "logged (the replay register)",
    "exchange_state": "watermark equals the last one logged",
    "consent_requests": "logged (status is the operator's view only)",
    "alembic_version": "checked when the node opens (an unknown revision does not open)",
    # gsomia.shell.taxii_store, made on first use by the API: the answer to a TAXII POST,
    # kept for its poster to read again. Not a record of custody (the items and their
    # events are); its values' kinds are checked.
    "taxii_statuses": "kinds checked; the answer to a POST, not a record of custody",
    "item_audience": "kinds checked; an index of custody's current labels that only "
                     "narrows the dashboard's reads (each version shown is decided on its "
                     "custody label): a row lost hides a version, never shows one",
}
