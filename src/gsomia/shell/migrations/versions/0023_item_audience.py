"""Who may be shown each item version: ``item_audience``, a row per party of the audience of
the national label of the version's latest custody record (its originator, and REL TO
unless NOFORN), with the label's purpose, scheme and level, indexed by them.

The dashboard read every holding and asked the policy about each, so its answer took
longer the more the node held that its user may not read, and a low-cleared user could
time it to count them (dashsql29). It now seeks the versions a person may read by what the
person holds, then asks the policy about those alone. Filled here from the custody records
held; a label that does not parse gives no rows (the version is shown to no one by the
dashboard, and ``audit verify`` names the record).

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from gsomia.core.errors import MalformedInput
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import audience

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "item_audience",
        sa.Column("row", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("party", sa.String(3), nullable=False),
        sa.Column("purpose", sa.String, nullable=False),
        sa.Column("scheme", sa.String(3), nullable=False),
        sa.Column("level", sa.String, nullable=False),
    )
    op.create_index("ix_item_audience_reader", "item_audience",
                    ["party", "purpose", "scheme", "level"])
    op.create_index("ix_item_audience_item", "item_audience", ["item_id", "version"])
    assert table is not None
    custody = sa.table("custody", sa.column("row", sa.BigInteger),
                       sa.column("item_id", sa.String), sa.column("version", sa.String),
                       sa.column("national_label", sa.LargeBinary))
    conn = op.get_bind()
    latest: dict[tuple[str, str], bytes] = {}
    for row in conn.execute(sa.select(custody.c.item_id, custody.c.version,
                                      custody.c.national_label).order_by(custody.c.row)):
        latest[(row[0], row[1])] = bytes(row[2])
    rows: list[dict[str, Any]] = []
    for (item_id, version), data in latest.items():
        try:
            label = SecurityLabel.from_stored(json.loads(data))
        except (MalformedInput, ValueError):
            continue
        rows.extend({"item_id": item_id, "version": version, "party": p,
                     "purpose": label.purpose, "scheme": label.scheme, "level": label.level}
                    for p in sorted(audience(label)))
    for start in range(0, len(rows), 5000):
        conn.execute(table.insert(), rows[start:start + 5000])


def downgrade() -> None:
    op.drop_index("ix_item_audience_item", "item_audience")
    op.drop_index("ix_item_audience_reader", "item_audience")
    op.drop_table("item_audience")
