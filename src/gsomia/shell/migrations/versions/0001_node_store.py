"""The node store: items, custody, registers, the audit log and its signed tree heads.

Revision ID: 0001_node_store
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_node_store"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types at this revision (a migration must not change with the code).
_ROW = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def _row() -> sa.Column[int]:
    return sa.Column("row", _ROW, primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "node_identity",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("party", sa.String(3), nullable=False),
        sa.Column("signing_key", sa.String(64), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
    )
    op.create_table(
        "items", _row(),
        sa.Column("id", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("label", sa.LargeBinary, nullable=False),
        sa.Column("binding", sa.LargeBinary, nullable=False),
        sa.Column("added_at", _AT, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("id", "version", name="uq_items_id_version"),
    )
    op.create_index("ix_items_added_at", "items", ["added_at"])
    op.create_index("ix_items_type", "items", ["type"])
    op.create_table(
        "custody", _row(),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(3), nullable=False),
        sa.Column("provider", sa.String(3), nullable=True),
        sa.Column("agreement", sa.String, nullable=True),
        sa.Column("original_label", sa.LargeBinary, nullable=False),
        sa.Column("national_label", sa.LargeBinary, nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("envelope_digest", sa.LargeBinary, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_custody_item", "custody", ["item_id", "version"])
    op.create_table(
        "users",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("party", sa.String(3), nullable=False),
        sa.Column("clearance", sa.String, nullable=False),
        sa.Column("need_to_know", sa.Text, nullable=False),
        sa.Column("token_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
    )
    op.create_table(
        "consents", _row(),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("recipient", sa.String(3), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_consents_item", "consents", ["item_id"])
    op.create_table(
        "classification_notices", _row(),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("old_level", sa.String, nullable=False),
        sa.Column("new_level", sa.String, nullable=False),
        sa.Column("issued_at", _AT, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_notices_item", "classification_notices", ["item_id"])
    op.create_table(
        "incidents",
        sa.Column("reference", sa.String, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String, nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("reported_by", sa.String, nullable=False),
        sa.Column("notify", sa.String(3), nullable=True),
        sa.Column("at", _AT, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "receipts", _row(),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("peer", sa.String(3), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_receipts_item", "receipts", ["item_id", "version"])
    op.create_table(
        "audit_events",
        sa.Column("position", _ROW, primary_key=True, autoincrement=True),
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
    )
    op.create_index("ix_audit_events_item", "audit_events", ["item_id"])
    op.create_table(
        "tree_heads",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("timestamp", sa.String(32), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in ("audit_state", "tree_heads", "audit_events", "receipts", "incidents",
                  "classification_notices", "consents", "users", "custody", "items",
                  "node_identity"):
        op.drop_table(table)
