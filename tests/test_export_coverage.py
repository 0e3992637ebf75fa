"""The export covers every table that can identify a user: found by foreign key,
by naming convention and by each column's own declaration (app/models/identifying.py),
and checked against what a real account actually leaves in the database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Column, ForeignKey, MetaData, String, Table, select

from app.models import Base, User
from app.models.identifying import identifies_user, identifying_columns
from app.services.export import NOT_EXPORTED, SECTIONS
from tests.helpers import HIGH_LIMITS, baseline_consent, bearer, login, register, table_rows

NEW_PHONE = "+8613700001234"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {**HIGH_LIMITS, "code_resend_cooldown_seconds": 0}


def covered_tables() -> set[str]:
    return {table for section in SECTIONS for table in section.tables}


def test_every_table_that_can_identify_a_user_is_exported_or_left_out_with_a_reason():
    identifying = identifying_columns(Base.metadata)
    missing = set(identifying) - covered_tables() - set(NOT_EXPORTED)
    assert not missing, "the export leaves out: " + ", ".join(
        f"{table} ({', '.join(identifying[table])})" for table in sorted(missing)
    )
    for table, reason in NOT_EXPORTED.items():
        assert table in identifying, f"{table} is declared left out but identifies nobody"
        assert table not in covered_tables(), f"{table} is both exported and left out"
        assert len(reason) > 20, f"{table} needs a real reason to be left out"


def test_the_walk_finds_identifying_columns_by_key_name_and_declaration():
    """The walk is what guards the next table, so it must see each kind of column."""
    metadata = MetaData()
    Table("users", metadata, Column("id", String(36), primary_key=True))
    Table("by_key", metadata, Column("owner", ForeignKey("users.id")))
    Table("by_name", metadata, Column("reviewed_by", String(36)))
    Table("by_index", metadata, Column("phone_index", String(64)))
    Table("by_pseudonym", metadata, Column("subject_pseudonym", String(64)))
    Table("declared", metadata, Column("k", String(80), info=identifies_user("blind index")))
    Table("opted_out", metadata, Column("page_index", String(8), info=identifies_user(None)))
    Table("unrelated", metadata, Column("title", String(80)))
    found = identifying_columns(metadata)
    assert set(found) == {"by_key", "by_name", "by_index", "by_pseudonym", "declared"}


def _identifiers(app, user_id: str) -> dict[str, str]:
    with app.extensions["privid.session_factory"]() as db:
        user = db.execute(select(User).where(User.id == user_id)).scalar_one()
        return {
            "user id": user.id,
            "email index": user.email_index,
            "phone index": user.phone_index,
        }


def test_every_column_where_an_account_leaves_its_identifiers_is_known_to_the_walk(
    app, client, mailbox, sms
):
    """What a real account writes: wherever its id or blind indexes turn up,
    the walk must have flagged that column, and its table must be covered."""
    person, session = register(client, mailbox, sms, consent=baseline_consent(security="granted"))
    auth = bearer(session["token"])
    user_id = client.get("/api/v1/me", headers=auth).json["user_id"]
    assert login(client, person.email, "not-the-password-x").status_code == 401
    assert login(client, person.phone, "not-the-password-x").status_code == 401
    client.post("/api/v1/password-reset", json={"identifier": person.email})
    client.post("/api/v1/login/sms/code", json={"phone": person.phone})
    client.post(
        "/api/v1/me/phone",
        json={"phone": NEW_PHONE, "current_password": person.password},
        headers=auth,
    )
    assert client.post("/api/v1/me/export", headers=auth).status_code == 200

    identifiers = _identifiers(app, user_id)
    identifying = identifying_columns(Base.metadata)
    seen: set[tuple[str, str]] = set()
    rows = table_rows(app)
    for table in Base.metadata.sorted_tables:
        names = [c.name for c in table.columns]
        for row in rows[table.name]:
            for name, value in zip(names, row, strict=True):
                text = json.dumps(value, default=str) if not isinstance(value, str) else value
                if any(identifier in text for identifier in identifiers.values()):
                    seen.add((table.name, name))
    # The flows above left codes and throttle counters; the walk must know where.
    assert ("one_time_codes", "user_id") in seen and ("login_throttles", "subject") in seen
    # users.id is the identifier itself; every other place must be known to the walk.
    unknown = {(t, c) for t, c in seen if c not in identifying.get(t, {})} - {("users", "id")}
    assert not unknown, f"columns holding a user's identifiers that the walk misses: {unknown}"
    uncovered = {t for t, _ in seen} - covered_tables() - set(NOT_EXPORTED)
    assert not uncovered, f"tables holding the user's identifiers, not exported: {uncovered}"


def test_export_holds_pending_codes_decrypted_and_throttle_state_but_no_code_hashes(
    app, client, mailbox, sms
):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    for _ in range(2):
        assert login(client, person.email, "not-the-password-x").status_code == 401
    assert client.post("/api/v1/password-reset", json={"identifier": person.email}).status_code in (
        200,
        202,
        204,
    )
    changing = client.post(
        "/api/v1/me/phone",
        json={"phone": NEW_PHONE, "current_password": person.password},
        headers=auth,
    )
    assert changing.status_code in (200, 202, 204), changing.json
    change_code = sms.last_code(NEW_PHONE)

    document = client.post("/api/v1/me/export", headers=auth).json
    codes = {c["purpose"]: c for c in document["one_time_codes"]}
    assert codes["change_phone"]["pending_value"] == NEW_PHONE
    assert codes["change_phone"]["status"] == "pending"
    assert codes["change_phone"]["expires_at"]
    assert codes["password_reset"]["sent_to"] == "your email address"
    throttles = document["sign_in_throttles"]
    by_email = [t for t in throttles if t["applies_to"] == "your email address"]
    assert by_email and by_email[0]["failures"] == 2

    raw = json.dumps(document)
    with app.extensions["privid.engine"].connect() as connection:
        hashes = [
            h
            for (h,) in connection.execute(
                select(Base.metadata.tables["one_time_codes"].c.code_hash)
            )
        ]
        blind = connection.execute(
            select(User.email_index, User.phone_index).where(
                User.id == document["profile"]["user_id"]
            )
        ).one()
    assert hashes and not any(h in raw for h in hashes if h)
    assert change_code not in raw
    assert blind.email_index not in raw and blind.phone_index not in raw
