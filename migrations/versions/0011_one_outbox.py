"""one outbox for every message: sealed payloads, messages without a user

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "sent_at IS NULL AND abandoned_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column("reference_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("payload_encrypted", sa.LargeBinary(), nullable=True))
        # Claims look among pending messages only, not a year of finished ones.
        batch_op.drop_index("ix_outbox_messages_next_attempt_at")
        batch_op.create_index(
            "ix_outbox_messages_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=sa.text(PENDING),
            sqlite_where=sa.text(PENDING),
        )


def downgrade() -> None:
    # Sealed messages cannot live in the old shape (no user, no reference).
    op.execute("DELETE FROM outbox_messages WHERE kind <> 'incident'")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_due")
        batch_op.create_index(
            "ix_outbox_messages_next_attempt_at", ["next_attempt_at"], unique=False
        )
        batch_op.drop_column("payload_encrypted")
        batch_op.drop_column("wrapped_key")
        batch_op.drop_column("key_id")
        batch_op.alter_column("reference_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.alter_column("user_id", existing_type=sa.String(length=36), nullable=False)
