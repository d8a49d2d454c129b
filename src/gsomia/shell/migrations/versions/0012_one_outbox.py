"""One outbox: the notices queued to partners move into the outbox beside the deliveries.

Each row keeps its kind ("delivery", or the notice's own kind), its values and the seq of
the event that queued it, so the log's records of both registers still match; no row is
dropped (the notices table is removed only after all its rows were copied).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_ROW = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)
# The columns a notice row brings along, as named in both tables.
_SHARED = ("kind", "recipient", "reference", "item_id", "body", "status", "attempts", "next_at",
           "queued_at", "delivered_at", "last_error", "seq")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("item_id", existing_type=sa.String, nullable=True)
        batch.alter_column("version", existing_type=sa.String, nullable=True)
        batch.add_column(sa.Column("kind", sa.String(32), nullable=False,
                                   server_default="delivery"))
        batch.add_column(sa.Column("reference", sa.String, nullable=True))
        batch.add_column(sa.Column("body", sa.Text, nullable=True))
        batch.create_unique_constraint("uq_outbox_notice", ["kind", "reference", "recipient"])
    columns = ", ".join(_SHARED)
    # Values copied as stored (instants keep their exact text on SQLite), oldest first.
    op.execute(f"INSERT INTO outbox ({columns}) SELECT {columns} FROM notices ORDER BY \"row\"")
    moved = op.get_bind().execute(sa.text(
        "SELECT (SELECT count(*) FROM notices), "
        "(SELECT count(*) FROM outbox WHERE kind <> 'delivery')")).one()
    if moved[0] != moved[1]:  # never drop what was not copied
        raise RuntimeError(f"moved {moved[1]} of {moved[0]} notices into the outbox")
    op.drop_table("notices")


def downgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("row", _ROW, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(3), nullable=False),
        sa.Column("reference", sa.String, nullable=False),
        sa.Column("item_id", sa.String, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", _AT, nullable=False),
        sa.Column("queued_at", _AT, nullable=False),
        sa.Column("delivered_at", _AT, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("kind", "reference", "recipient", name="uq_notices_once"),
        sa.Index("ix_notices_due", "status", "next_at"),
    )
    columns = ", ".join(_SHARED)
    op.execute(f"INSERT INTO notices ({columns}) SELECT {columns} FROM outbox "
               "WHERE kind <> 'delivery' ORDER BY \"row\"")
    op.execute("DELETE FROM outbox WHERE kind <> 'delivery'")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("uq_outbox_notice", type_="unique")
        batch.drop_column("body")
        batch.drop_column("reference")
        batch.drop_column("kind")
        batch.alter_column("item_id", existing_type=sa.String, nullable=False)
        batch.alter_column("version", existing_type=sa.String, nullable=False)
