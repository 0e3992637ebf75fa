"""devices: device records, sessions tied to a device and a key

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("binding_method", sa.String(length=16), nullable=False),
        sa.Column("trust_state", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("cookie_hash", sa.String(length=64), nullable=True),
        sa.Column("key_thumbprint", sa.String(length=64), nullable=True),
        sa.Column("public_jwk", sa.JSON(), nullable=True),
        sa.Column("credential_ref", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_devices_user_id_users"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["credential_ref"], ["webauthn_credentials.id"],
            name=op.f("fk_devices_credential_ref_webauthn_credentials"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )  # fmt: skip
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_user_id"), ["user_id"])
        batch_op.create_index(batch_op.f("ix_devices_cookie_hash"), ["cookie_hash"])
        batch_op.create_index(batch_op.f("ix_devices_key_thumbprint"), ["key_thumbprint"])

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_sessions_device_id"), ["device_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_sessions_device_id_devices"), "devices", ["device_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sessions_device_id_devices"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_sessions_device_id"))
        batch_op.drop_column("dpop_jkt")
        batch_op.drop_column("device_id")
    op.drop_table("devices")
