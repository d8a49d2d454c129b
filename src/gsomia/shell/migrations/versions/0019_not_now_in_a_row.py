"""The partner's "not now"s (429) in a row, by outbox row: the wait before a row's next try
doubles with those alone (``gsomia.core.outbox.next_try``), not with every try the row had;
a row whose tries were lost to a partner down for seconds waited an hour at its first "not
now". Rows queued before start at none: their next "not now" waits the bound, 60 s.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("not_now", sa.Integer, nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("not_now")
