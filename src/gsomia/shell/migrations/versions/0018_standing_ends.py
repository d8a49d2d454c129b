"""Standing consents read by what is in force: each grant's ``not_after`` beside its row,
indexed, and an index of each originator's revocations by time.

The table keeps every grant and revocation for ever (the audit log holds the history too),
and every commit that queues relayed items read all of it to find the consents it may
relay under, as did each envelope sealed for a relay and each consent or revocation a
partner sent. A revoked or expired consent never allows a relay, so those reads now take
only the grants whose validity has not ended (``ix_standing_consents_ends``) and look up
their revocations by id and originator (``ix_standing_consents_owner``); the bound on
revocations of consents not held counts a window of time by
``ix_standing_consents_revoked``. The column is filled here from the signed documents (a
grant whose end does not read is left NULL and read as in force, as the bound counted it
before) and checked against them by ``audit verify``.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa
from alembic import op

from gsomia.core.errors import MalformedInput
from gsomia.core.types import instant

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def _end(document: str) -> datetime | None:
    # Read as gsomia.core.custody.StandingConsentRecord.ends reads it (the one parser of
    # instants), so ``audit verify`` finds every filled value equal to its document's.
    try:
        return instant(json.loads(document)["not_after"], where="not_after")
    except (ValueError, KeyError, TypeError, MalformedInput):
        return None


def upgrade() -> None:
    op.add_column("standing_consents",
                  sa.Column("not_after", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    table = sa.table("standing_consents", sa.column("row", sa.BigInteger),
                     sa.column("kind", sa.String), sa.column("document", sa.Text),
                     sa.column("not_after", sa.DateTime(timezone=True)))
    sqlite = bind.dialect.name == "sqlite"
    ends = []
    for row, document in bind.execute(sa.select(table.c.row, table.c.document)
                                      .where(table.c.kind == "grant")):
        end = _end(document)
        if end is not None:
            ends.append({"r": row, "e": end.replace(tzinfo=None) if sqlite else end})
    if ends:
        bind.execute(table.update().where(table.c.row == sa.bindparam("r"))
                     .values(not_after=sa.bindparam("e")), ends)
    op.create_index("ix_standing_consents_ends", "standing_consents", ["kind", "not_after"])
    op.create_index("ix_standing_consents_owner", "standing_consents",
                    ["consent_id", "originator", "kind"])
    op.create_index("ix_standing_consents_revoked", "standing_consents",
                    ["originator", "kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_standing_consents_revoked", "standing_consents")
    op.drop_index("ix_standing_consents_owner", "standing_consents")
    op.drop_index("ix_standing_consents_ends", "standing_consents")
    op.drop_column("standing_consents", "not_after")
