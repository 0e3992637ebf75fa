"""keyed ledger chains: HMAC row hashes, per-account consent chains, seals,
TRUNCATE refused

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence
from datetime import UTC
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows stay append-only; the one change allowed is the sealer writing `seal`
# once (NULL to a number), everything else in the row unchanged.
LEDGER_FUNCTION = """
CREATE FUNCTION ledger_rows_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seal IS NULL AND NEW.seal IS NOT NULL
           AND to_jsonb(NEW) - 'seal' = to_jsonb(OLD) - 'seal' THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""
LEDGER_TABLES = ("audit_events", "consent_records")


def _row_triggers(function: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        for table in LEDGER_TABLES
    ]


# consent_records_append_only() (migration 0002) refuses whatever it is asked.
TRUNCATE_AND_SEAL_TRIGGERS = [
    *(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION consent_records_append_only()"
        for table in (*LEDGER_TABLES, "chain_seals")
    ),
    "CREATE TRIGGER chain_seals_append_only BEFORE UPDATE OR DELETE ON chain_seals "
    "FOR EACH ROW EXECUTE FUNCTION consent_records_append_only()",
]


def _drop_row_triggers() -> None:
    for table in LEDGER_TABLES:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        _drop_row_triggers()  # back below, once existing rows are re-keyed

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_prev_hash"), type_="unique")
        batch_op.drop_column("prev_hash")
        batch_op.add_column(sa.Column("seal", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_events_seal"), ["seal"], unique=False)
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seal", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_consent_records_seal"), ["seal"], unique=False)
    with op.batch_alter_table("chain_heads", schema=None) as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=32), type_=sa.String(length=64)
        )
    # The global heads go: consent chains are per account now, the audit trail has none.
    op.execute("DELETE FROM chain_heads")
    op.create_table(
        "chain_seals",
        sa.Column("chain", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sealed_at", sa.DateTime(), nullable=False),
        sa.Column("row_ids", sa.JSON(), nullable=False),
        sa.Column("prev_mac", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", "seq", name=op.f("pk_chain_seals")),
    )
    _rekey_existing_rows()

    if postgres:
        op.execute(LEDGER_FUNCTION)
        for statement in (*_row_triggers("ledger_rows_append_only"), *TRUNCATE_AND_SEAL_TRIGGERS):
            op.execute(statement)


def _rekey_existing_rows() -> None:
    """Rows written before this revision get keyed hashes (and consent records
    their per-account links) under the chain key of the environment running
    the migration: the service's own. Run the old verify commands first."""
    bind = op.get_bind()
    meta = sa.MetaData()
    audit = sa.Table("audit_events", meta, autoload_with=bind)
    consent = sa.Table("consent_records", meta, autoload_with=bind)
    count = sa.select(sa.func.count())
    if (
        not bind.execute(count.select_from(audit)).scalar()
        and not bind.execute(count.select_from(consent)).scalar()
    ):
        return
    from app.services.audit import AUDIT_LEDGER
    from app.services.consent import CONSENT_LEDGER, account_genesis, head_name
    from app.settings import Settings

    key = Settings().chain_key_bytes

    def as_row(row: sa.Row) -> SimpleNamespace:
        values = dict(row._mapping)
        values["occurred_at"] = values["occurred_at"].replace(tzinfo=UTC)
        return SimpleNamespace(**values)

    for row in bind.execute(sa.select(audit).order_by(audit.c.id)).all():
        new_hash = AUDIT_LEDGER.row_hash(key, as_row(row))
        bind.execute(audit.update().where(audit.c.id == row.id).values(hash=new_hash))
    heads: dict[str, str] = {}
    for row in bind.execute(sa.select(consent).order_by(consent.c.id)).all():
        record = as_row(row)
        record.prev_hash = heads.get(record.user_id) or account_genesis(key, record.user_id)
        heads[record.user_id] = CONSENT_LEDGER.row_hash(key, record)
        bind.execute(
            consent.update()
            .where(consent.c.id == row.id)
            .values(prev_hash=record.prev_hash, hash=heads[record.user_id])
        )
    if heads:
        op.bulk_insert(
            sa.table("chain_heads", sa.column("name"), sa.column("last_hash")),
            [{"name": head_name(user), "last_hash": last} for user, last in heads.items()],
        )


def downgrade() -> None:
    """Back to one global chain per ledger, linked in id order; the hashes stay
    keyed, so the old verify commands will not accept rows written since 0010."""
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for table in (*LEDGER_TABLES, "chain_seals"):
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER chain_seals_append_only ON chain_seals")
        _drop_row_triggers()
        op.execute("DROP FUNCTION ledger_rows_append_only()")
    op.drop_table("chain_seals")
    bind = op.get_bind()
    heads = []
    for table in LEDGER_TABLES:
        # {table} is one of two constants, never input.
        rows = bind.execute(sa.text(f"SELECT id, hash FROM {table} ORDER BY id")).all()  # noqa: S608
        if table == "consent_records":  # clear the way: prev_hash is unique
            op.execute("UPDATE consent_records SET prev_hash = 'was-' || CAST(id AS VARCHAR(20))")
        if table == "audit_events":
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        prev = "0" * 64
        for row in rows:
            bind.execute(
                sa.text(f"UPDATE {table} SET prev_hash = :p WHERE id = :id"),  # noqa: S608
                {"p": prev, "id": row.id},
            )
            prev = row.hash
        heads.append({"name": table.split("_")[0], "last_hash": prev})
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_seal"))
            batch_op.drop_column("seal")
            if table == "audit_events":
                batch_op.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
                batch_op.create_unique_constraint(
                    batch_op.f("uq_audit_events_prev_hash"), ["prev_hash"]
                )
    op.execute("DELETE FROM chain_heads")
    with op.batch_alter_table("chain_heads", schema=None) as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=64), type_=sa.String(length=32)
        )
    op.bulk_insert(sa.table("chain_heads", sa.column("name"), sa.column("last_hash")), heads)
    if postgres:
        for statement in _row_triggers("consent_records_append_only"):
            op.execute(statement)
