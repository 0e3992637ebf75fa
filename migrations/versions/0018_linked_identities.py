"""linked identities (WeChat); email and password become optional

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# An account made through WeChat has no email or password until it adds them.
OPTIONAL = (
    ("email_index", sa.String(length=64)),
    ("email_encrypted", sa.LargeBinary()),
    ("email_verified_at", sa.DateTime()),
    ("password_hash", sa.String(length=255)),
    ("password_changed_at", sa.DateTime()),
)


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table, copying every row.
    with op.batch_alter_table("users") as batch:
        for name, kind in OPTIONAL:
            batch.alter_column(name, existing_type=kind, nullable=True)
    op.create_table(
        "linked_identities",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("openid_index", sa.String(length=64), nullable=False),
        sa.Column("unionid_index", sa.String(length=64), nullable=True),
        sa.Column("openid_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("unionid_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("nickname_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_linked_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_linked_identities")),
        sa.UniqueConstraint("openid_index", name=op.f("uq_linked_identities_openid_index")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_linked_identities_user_id"), "linked_identities", ["user_id"], unique=False
    )
    op.create_index(
        op.f("ix_linked_identities_unionid_index"),
        "linked_identities",
        ["unionid_index"],
        unique=False,
    )


def downgrade() -> None:
    # Refused up front, saying why, rather than failing in the middle with a
    # NOT NULL error about a temporary table.
    without = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM users WHERE email_index IS NULL OR email_encrypted IS NULL "
                "OR email_verified_at IS NULL OR password_hash IS NULL "
                "OR password_changed_at IS NULL"
            )
        )
        .scalar()
    )
    if without:
        raise RuntimeError(
            f"Cannot downgrade below 0018: {without} account(s) without an email address or a "
            "password (made through WeChat, or password removed). They need both first."
        )
    op.drop_index(op.f("ix_linked_identities_unionid_index"), table_name="linked_identities")
    op.drop_index(op.f("ix_linked_identities_user_id"), table_name="linked_identities")
    op.drop_table("linked_identities")
    with op.batch_alter_table("users") as batch:
        for name, kind in reversed(OPTIONAL):
            batch.alter_column(name, existing_type=kind, nullable=False)
