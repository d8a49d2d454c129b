"""One receipt per (item, version, partner, direction), enforced by the store.

Revision ID: 0004_receipts_once
Revises: 0003_notices
"""

from __future__ import annotations

from alembic import op

revision = "0004_receipts_once"
down_revision = "0003_notices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ux_receipts_once", "receipts",
                    ["item_id", "version", "peer", "direction"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_receipts_once", table_name="receipts")
