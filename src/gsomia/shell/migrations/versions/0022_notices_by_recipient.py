"""The pending notices by recipient, then next try: ``ix_outbox_notices`` (migration 0021)
rebuilt with the recipient after the status, still partial (a delivery's row is not in it).

A link's idle pass (``Store.next_due``) read the notices in order of next try and kept
those to its partner in Python: with a partner down and thousands of notices queued to it,
every other link streamed them all, on every pass. Keyed by recipient, a link reads its
own notices alone, from the earliest on; the recipients with notices pending are read on
the same index, one entry each (the notices to anyone a link does not post to).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def _notices_index(columns: list[str]) -> None:
    notices = sa.text("kind != 'delivery'")
    op.create_index("ix_outbox_notices", "outbox", columns,
                    sqlite_where=notices, postgresql_where=notices)


def upgrade() -> None:
    # Only from 0021's index: dropping and making it again would also "succeed" on a
    # database already at 0022 whose alembic_version was rewritten behind the node's back,
    # and the node would open as if nothing were amiss (every other migration fails there).
    found = {i["name"]: i["column_names"]
             for i in sa.inspect(op.get_bind()).get_indexes("outbox")}
    if found.get("ix_outbox_notices") != ["status", "next_at"]:
        raise RuntimeError("ix_outbox_notices is not migration 0021's "
                           f"({found.get('ix_outbox_notices')!r}): the schema is not at 0021")
    op.drop_index("ix_outbox_notices", "outbox")
    _notices_index(["status", "recipient", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_notices", "outbox")
    _notices_index(["status", "next_at"])
