"""lockout and tickets: throttle rows know their subject; spent sign-in tickets

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=80), nullable=True))
        batch_op.create_index(batch_op.f("ix_login_throttles_subject"), ["subject"])
    op.create_table(
        "spent_tickets",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_spent_tickets")),
    )
    with op.batch_alter_table("spent_tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spent_tickets_expires_at"), ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("spent_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spent_tickets_expires_at"))
    op.drop_table("spent_tickets")
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_throttles_subject"))
        batch_op.drop_column("subject")
