"""consent ledger, policy versions, operator role

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


REFUSE_CHANGES_FUNCTION = """
CREATE FUNCTION consent_records_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""
REFUSE_CHANGES_TRIGGER = """
CREATE TRIGGER consent_records_append_only
BEFORE UPDATE OR DELETE ON consent_records
FOR EACH ROW EXECUTE FUNCTION consent_records_append_only()
"""
# The audit trail is append-only too (the same function: it names the table).
AUDIT_TRIGGER = """
CREATE TRIGGER audit_events_append_only
BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION consent_records_append_only()
"""


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("policy_sha256", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("ip_prefix", sa.String(length=64), nullable=False),
        sa.Column("user_agent_hash", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
        sa.UniqueConstraint("hash", name=op.f("uq_consent_records_hash")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_consent_records_prev_hash")),
    )
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_records_user_id"), ["user_id"], unique=False)

    op.create_table(
        "policy_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("effective_at", sa.DateTime(), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.Column("published_by", sa.String(length=36), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("material", sa.Boolean(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("affected_purposes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_policy_versions_version")),
    )
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_policy_versions_effective_at"), ["effective_at"], unique=False
        )

    op.execute(
        sa.text("INSERT INTO chain_heads (name, last_hash) VALUES ('consent', :h)").bindparams(
            h="0" * 64
        )
    )
    if op.get_bind().dialect.name == "postgresql":
        # The ledger is append-only at the database too, whoever connects.
        op.execute(REFUSE_CHANGES_FUNCTION)
        op.execute(REFUSE_CHANGES_TRIGGER)
        op.execute(AUDIT_TRIGGER)

    with op.batch_alter_table("registration_flows", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent", sa.JSON(), nullable=True))

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("consent_pending", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="user", nullable=False)
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP TRIGGER consent_records_append_only ON consent_records")
        op.execute("DROP FUNCTION consent_records_append_only()")
    op.execute("DELETE FROM chain_heads WHERE name = 'consent'")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("role")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("consent_pending")

    with op.batch_alter_table("registration_flows", schema=None) as batch_op:
        batch_op.drop_column("consent")

    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_versions_effective_at"))

    op.drop_table("policy_versions")
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_records_user_id"))

    op.drop_table("consent_records")
