"""The exchange's registers name the audit event that recorded each row (``seq``).

``audit verify`` checks every row of the replay register (``envelopes_seen``), the outbox,
the notices queue and the consent requests against the digest its event recorded, so a row
deleted, inserted or rewritten behind the log's back is caught. Rows written before this
revision have no event (``seq`` NULL) and are reported as unlogged.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLES = ("envelopes_seen", "outbox", "notices", "consent_requests")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("seq", sa.BigInteger, nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("seq")
