"""synced passkeys bind nothing: undo bindings made by backup-eligible passkeys

Before this revision a backup-eligible (synced) passkey registered as a platform
credential bound the device it was created on, and signing in with it anywhere
was taken as that device. Such a passkey lives in a cloud account, so it proves
no device: those devices go back to merely recognised. No schema change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE devices SET binding_method = 'none', trust_state = 'recognised', "
            "credential_ref = NULL "
            "WHERE binding_method = 'webauthn' AND credential_ref IN "
            "(SELECT id FROM webauthn_credentials WHERE backup_eligible = :synced)"
        ).bindparams(synced=True)
    )


def downgrade() -> None:
    # The bindings were wrong; nothing to restore.
    pass
