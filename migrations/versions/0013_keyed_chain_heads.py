"""chain_heads.records and .mac: keyed consent chain heads

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chain_heads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("records", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    _key_existing_heads()
    with op.batch_alter_table("chain_heads", schema=None) as batch_op:
        batch_op.alter_column("records", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("mac", existing_type=sa.String(length=64), nullable=False)


def _key_existing_heads() -> None:
    """Each existing head gets the count of its account's records and a MAC
    under the chain key of the environment running the migration (the
    service's own). The stored newest hash is kept as it is, so a head that
    did not fit its records before still does not: run consent-verify first."""
    bind = op.get_bind()
    heads = bind.execute(
        sa.text("SELECT name, last_hash FROM chain_heads WHERE name LIKE 'consent:%'")
    ).all()
    if not heads:
        return
    from app.services.consent import head_mac
    from app.settings import Settings

    key = Settings().chain_key_bytes
    for head in heads:
        user_id = head.name.partition(":")[2]
        records = bind.execute(
            sa.text("SELECT count(*) FROM consent_records WHERE user_id = :u"), {"u": user_id}
        ).scalar_one()
        bind.execute(
            sa.text("UPDATE chain_heads SET records = :r, mac = :m WHERE name = :n"),
            {"r": records, "m": head_mac(key, user_id, records, head.last_hash), "n": head.name},
        )


def downgrade() -> None:
    with op.batch_alter_table("chain_heads", schema=None) as batch_op:
        batch_op.drop_column("mac")
        batch_op.drop_column("records")
