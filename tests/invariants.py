"""What no fault may leave behind, checked in the database after a fault test:
nothing half written. Each check names the rows that break it."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text

from app.cli import unit_of_work

# Each query lists what would be a half-written change; all must come back empty.
HALF_WRITTEN = {
    "users without their data key": """
        SELECT u.id FROM users u
        LEFT JOIN user_data_keys k ON k.user_id = u.id WHERE k.user_id IS NULL""",
    "users without their consent decisions": """
        SELECT u.id FROM users u
        WHERE NOT EXISTS (SELECT 1 FROM consent_records c WHERE c.user_id = u.id)""",
    # Proving the second code creates the account and deletes the flow at once.
    "registrations with both codes proven still open": """
        SELECT f.id FROM registration_flows f
        WHERE f.email_verified_at IS NOT NULL AND f.phone_verified_at IS NOT NULL""",
    "tokens without their grant": """
        SELECT t.id FROM oauth_tokens t
        LEFT JOIN oauth_grants g ON g.id = t.grant_id WHERE g.id IS NULL""",
    # A rotation marks the old refresh token used and adds the new one in one
    # transaction: half of it would leave a live grant with none or two.
    "live grants without exactly one live refresh token": """
        SELECT g.id FROM oauth_grants g
        JOIN oauth_tokens t ON t.grant_id = g.id AND t.kind = 'refresh'
        WHERE g.revoked_at IS NULL
        GROUP BY g.id
        HAVING SUM(CASE WHEN t.used_at IS NULL AND t.revoked_at IS NULL THEN 1 ELSE 0 END) != 1""",
}


def assert_nothing_half_written(app: Flask) -> None:
    engine = app.extensions["privid.engine"]
    with engine.connect() as connection:
        broken = {
            what: [row[0] for row in connection.execute(text(query))]
            for what, query in HALF_WRITTEN.items()
        }
    assert {what: rows for what, rows in broken.items() if rows} == {}
    # Every consent decision and audit event is in its keyed chain.
    with app.app_context(), unit_of_work() as svc:
        consent = svc.consent.verify_chain()
        audit = svc.audit.verify()
    assert consent.intact, consent.problems
    assert audit.intact, audit.problems
