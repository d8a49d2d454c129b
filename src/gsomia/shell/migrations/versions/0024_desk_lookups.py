"""The consent requests and incidents about an item, by the item: indexes on their
``item_id``.

The operator desk read every consent request and incident, then kept those about items its
user may read, so its answer took longer the more the node held about items above them
(desk29). It now asks for those about the items the user may read, each sought here.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_consent_requests_item", "consent_requests", ["item_id"])
    op.create_index("ix_incidents_item", "incidents", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_incidents_item", "incidents")
    op.drop_index("ix_consent_requests_item", "consent_requests")
