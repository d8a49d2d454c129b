"""Notices to partners: incident reports and classification notices, queued and retried.

Revision ID: 0003_notices
Revises: 0002_exchange
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_notices"
down_revision = "0002_exchange"
branch_labels = None
depends_on = None

_ROW = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("row", _ROW, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(3), nullable=False),
        sa.Column("reference", sa.String, nullable=False),
        sa.Column("item_id", sa.String, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", _AT, nullable=False),
        sa.Column("queued_at", _AT, nullable=False),
        sa.Column("delivered_at", _AT, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("kind", "reference", "recipient", name="uq_notices_once"),
        sa.Index("ix_notices_due", "status", "next_at"),
    )


def downgrade() -> None:
    op.drop_table("notices")
