"""The exchange: the delivery outbox, envelope nonces seen, consent requests.

Revision ID: 0002_exchange
Revises: 0001_node_store
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_exchange"
down_revision = "0001_node_store"
branch_labels = None
depends_on = None

_ROW = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("row", _ROW, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("recipient", sa.String(3), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", _AT, nullable=False),
        sa.Column("queued_at", _AT, nullable=False),
        sa.Column("delivered_at", _AT, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("item_id", "version", "recipient", name="uq_outbox_delivery"),
        sa.Index("ix_outbox_due", "status", "recipient", "next_at"),
    )
    op.create_table(
        "envelopes_seen",
        sa.Column("nonce", sa.String, primary_key=True),
        sa.Column("sender", sa.String(3), nullable=False),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("at", _AT, nullable=False),
    )
    op.create_table(
        "exchange_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("scanned_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "consent_requests",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("holder", sa.String(3), nullable=False),
        sa.Column("recipient", sa.String(3), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("decided_at", _AT, nullable=True),
    )


def downgrade() -> None:
    for name in ("consent_requests", "exchange_state", "envelopes_seen", "outbox"):
        op.drop_table(name)
