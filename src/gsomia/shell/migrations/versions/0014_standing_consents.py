"""Standing consents: an originator's signed consent to relays of a category of its items,
for one purpose, to one recipient, for a validity period; revocations are rows of their own.

Revision ID: 0014
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "standing_consents",
        sa.Column("row", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("consent_id", sa.String, nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("recipient", sa.String(3), nullable=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_standing_consents_id", "standing_consents", ["consent_id"])


def downgrade() -> None:
    op.drop_index("ix_standing_consents_id", "standing_consents")
    op.drop_table("standing_consents")
