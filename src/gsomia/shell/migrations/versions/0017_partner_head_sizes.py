"""An index of the log's partner heads by partner and head size (SQLite): a partner asks at
its start for the largest head of it this node holds (``/peer/v1/tree-heads/held/``), and
without it each answer read and parsed every head in the log (linear in the log's history).
Partial, as 0016's: appending any other event costs nothing more. PostgreSQL has no
``json_valid`` to guard a row whose details are not JSON, so it reads the partner's records
by 0016's index and sorts them (see ``SqlRepository.partner_heads_by_size``).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

HEADS_ONLY = "kind IN ('tree-head-exchanged', 'partner-log-inconsistent')"
PARTNER = "CASE WHEN json_valid(details) THEN json_extract(details, '$.partner') END"
SIZE = "CASE WHEN json_valid(details) THEN json_extract(details, '$.head.size') END"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_audit_events_partner_size", "audit_events",
                        [sa.text(PARTNER), sa.text(SIZE), "seq"],
                        sqlite_where=sa.text(HEADS_ONLY))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_audit_events_partner_size", "audit_events")
