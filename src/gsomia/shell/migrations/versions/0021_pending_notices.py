"""The pending notices by next try, apart from the deliveries: an index of the outbox's
notice rows alone (partial: a delivery's row is not in it, and costs its writes nothing).

When a courier's next row is due (``Store.next_due``, each link's idle or backoff pass)
read the notices' earliest on ``ix_outbox_due``, walking every pending delivery's row to
find the few notices among them: with a partner down and 50,000 deliveries queued, a scan
on every pass. The deliveries' earliest is read on ``ix_outbox_due`` by recipient.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notices = sa.text("kind != 'delivery'")
    op.create_index("ix_outbox_notices", "outbox", ["status", "next_at"],
                    sqlite_where=notices, postgresql_where=notices)


def downgrade() -> None:
    op.drop_index("ix_outbox_notices", "outbox")
