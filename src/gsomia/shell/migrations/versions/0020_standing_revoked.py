"""Standing consents in force read without the grants revoked: each grant's row says
whether its originator's revocation is held, and the index of grants by end leads with it.

Migration 0018 read the grants whose validity has not ended, then looked up each one's
revocation; a grant revoked long before its end (a year's validity) stayed in that index
and was read and dropped at every commit that queues relays, for ever. The column is set
in the unit of work that keeps the revocation (or the grant, when its revocation came
first), filled here from the revocations held, and checked by ``audit verify`` against
them (each one checked against the event that recorded it). The reads still look up each
grant's revocation: a flag cleared on disk revives nothing.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("standing_consents", sa.Column("revoked", sa.Boolean, nullable=False,
                                                 server_default=sa.false()))
    table = sa.table("standing_consents", sa.column("consent_id", sa.String),
                     sa.column("originator", sa.String), sa.column("kind", sa.String),
                     sa.column("revoked", sa.Boolean))
    revocation = table.alias("revocation")
    op.get_bind().execute(table.update().where(
        table.c.kind == "grant",
        sa.exists().where(revocation.c.consent_id == table.c.consent_id,
                          revocation.c.originator == table.c.originator,
                          revocation.c.kind == "revoke")).values(revoked=True))
    op.drop_index("ix_standing_consents_ends", "standing_consents")
    op.create_index("ix_standing_consents_in_force", "standing_consents",
                    ["kind", "revoked", "not_after"])


def downgrade() -> None:
    op.drop_index("ix_standing_consents_in_force", "standing_consents")
    op.create_index("ix_standing_consents_ends", "standing_consents", ["kind", "not_after"])
    with op.batch_alter_table("standing_consents") as batch:
        batch.drop_column("revoked")
