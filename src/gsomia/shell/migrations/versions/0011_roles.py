"""Users' roles at the dashboard's desk (reader, operator, admin); existing users are readers.

A reader's digest names no role, so the digests the log recorded for existing users still
match.

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False,
                                   server_default="reader"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("role")
