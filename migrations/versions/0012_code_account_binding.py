"""one_time_codes.user_id: every code is bound to the account it was issued for

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("one_time_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_one_time_codes_user_id"), ["user_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_one_time_codes_user_id_users"), "users", ["user_id"], ["id"],
            ondelete="CASCADE",
        )  # fmt: skip
    # Codes about a signed-in user's account already name it; codes keyed by an
    # address cannot tell which holder they were sent to, and live minutes
    # only: they go (the owner asks again).
    op.execute(
        "UPDATE one_time_codes SET user_id = subject "
        "WHERE purpose IN ('change_email', 'change_phone', 'login_email') "
        "AND subject IN (SELECT id FROM users)"
    )
    op.execute(
        "DELETE FROM one_time_codes WHERE purpose IN ('password_reset', 'login_sms') "
        "OR (purpose IN ('change_email', 'change_phone', 'login_email') AND user_id IS NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("one_time_codes", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_one_time_codes_user_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_one_time_codes_user_id"))
        batch_op.drop_column("user_id")
