"""oauth_clients: first_party, subject_type, sector_identifier

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_clients = sa.table(
    "oauth_clients",
    sa.column("client_id", sa.String),
    sa.column("redirect_uris", sa.JSON),
    sa.column("first_party", sa.Boolean),
    sa.column("subject_type", sa.String),
    sa.column("sector_identifier", sa.String),
)


def _sector(redirect_uris: list[str]) -> str | None:
    # Clients registered so far are partners with pairwise subjects, and no
    # subject has been issued yet. Their sector is the host of their first
    # redirect URI (the only one, unless an operator registered several hosts
    # before sectors existed); none for clients without redirect URIs.
    for uri in redirect_uris or []:
        host = urlsplit(uri).hostname
        if host:
            return host[:253]
    return None


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_party", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("subject_type", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("sector_identifier", sa.String(length=253), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(_clients.c.client_id, _clients.c.redirect_uris)).all()
    for client_id, redirect_uris in rows:
        connection.execute(
            _clients.update()
            .where(_clients.c.client_id == client_id)
            .values(
                first_party=False,
                subject_type="pairwise",
                sector_identifier=_sector(redirect_uris),
            )
        )
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.alter_column("first_party", existing_type=sa.Boolean(), nullable=False)
        batch_op.alter_column("subject_type", existing_type=sa.String(length=8), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("sector_identifier")
        batch_op.drop_column("subject_type")
        batch_op.drop_column("first_party")
