"""Revoked user tokens: a register the audit log records, read on every authentication.

Revision ID: 0007
Revises: 0004_receipts_once
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004_receipts_once"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("token_hash", sa.LargeBinary, nullable=False),
        sa.Column("by", sa.String, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_revocations_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("revocations")
