"""An index on ``items.seq``: the outbox's scan watermark (``advance_scan``, ``unscanned``)
asks for the items stored after a seq on every commit that stores items at a node with
partners; without it, each such commit read the whole ``items`` table (2.5 s at 1,000,000
items, and growing with the store).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_seq", "items", ["seq"])


def downgrade() -> None:
    op.drop_index("ix_items_seq", "items")
