"""Personal data at rest: never in clear anywhere in the database, and gone for
good once the user's data key is deleted (crypto-shredding)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, inspect, select, update

from app.models import User, UserDataKey
from app.security.envelope import DecryptionError
from app.services.container import Services
from tests.helpers import (
    Person,
    bearer,
    dump_tables,
    file_bytes,
    login,
    new_person,
    register,
    start_registration,
)

NAME_TYPED = "Zoe\u0308 Ångström 王小明"  # decomposed ë; stored composed
HEX_ONLY = re.compile(r"[0-9a-fA-F]+")


# -- helpers -------------------------------------------------------------------


def encodings(secret: str) -> Iterable[bytes]:
    for form in {
        secret,
        unicodedata.normalize("NFC", secret),
        unicodedata.normalize("NFD", secret),
    }:
        yield form.encode("utf-8")
        yield form.encode("utf-16-le")
        yield form.lower().encode("utf-8")


def assert_nowhere(blob: bytes, secrets: dict[str, str], where: str) -> None:
    for label, secret in secrets.items():
        for encoded in encodings(secret):
            assert encoded not in blob, f"{label} ({secret!r}) found in clear in {where}"


def secrets_of(person: Person) -> dict[str, str]:
    national = person.phone.removeprefix("+86")
    local = person.email.partition("@")[0]
    found = {
        "email": person.email,
        "email local part": local,
        "phone E.164": person.phone,
        "phone digits": person.phone.lstrip("+"),
        "phone national": national,
        "full name": person.full_name,
        "password": person.password,
    }
    for i, part in enumerate(unicodedata.normalize("NFC", person.full_name).split()):
        # Short or hex-only pieces turn up by chance in ids, hashes and ciphertext.
        if len(part.encode("utf-8")) >= 5 and not HEX_ONLY.fullmatch(part):
            found[f"name part {i}"] = part
    return found


def user_id(client, token: str) -> str:
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200
    return str(response.json["user_id"])


# -- nothing in clear ------------------------------------------------------------


def test_personal_data_is_nowhere_in_clear(app, client, mailbox, sms, runtime):
    person = new_person(NAME_TYPED)
    person.password = "velvet-orbit-canyon-42"
    # Typed as people type: email in capitals, phone without the country code.
    typed = Person(
        person.email.upper(), person.phone.removeprefix("+86"), person.full_name, person.password
    )
    started = start_registration(client, typed)
    assert started.status_code == 202
    flow = started.json["flow_id"]
    client.post(
        f"/api/v1/registration/{flow}/verify",
        json={"channel": "email", "code": mailbox.last_code(person.email)},
    )
    done = client.post(
        f"/api/v1/registration/{flow}/verify",
        json={"channel": "phone", "code": sms.last_code(person.phone), "token_delivery": "bearer"},
    )
    assert done.status_code == 201
    token = done.json["session"]["token"]
    profile = client.get("/api/v1/me", headers=bearer(token)).json
    assert profile["full_name"] == unicodedata.normalize("NFC", NAME_TYPED)
    assert profile["phone"] == person.phone

    # Exercise every path that stores something about the person.
    assert login(client, person.email, "wrong-password-123").status_code == 401
    assert login(client, person.phone, person.password).status_code == 200
    assert client.post("/api/v1/login/sms/code", json={"phone": person.phone}).status_code == 202
    assert (
        client.post("/api/v1/password-reset", json={"identifier": person.email}).status_code == 202
    )
    new_email = new_person().email
    change = client.post(
        "/api/v1/me/email",
        json={"email": new_email, "current_password": person.password},
        headers=bearer(token),
    )
    assert change.status_code == 202
    # Someone else: a pending registration, a try on a taken address, an unknown sign-in.
    pending = new_person("Augusta Lovelace")
    assert start_registration(client, pending).status_code == 202
    squatter = Person(person.email, new_person().phone, "Mallory Mallet")
    assert start_registration(client, squatter).status_code == 202
    stranger = new_person()
    assert login(client, stranger.email, "whatever-password-1").status_code == 401
    runtime.dispatcher.drain()

    secrets = {
        **secrets_of(person),
        "new email": new_email,
        **{f"pending {k}": v for k, v in secrets_of(pending).items()},
        "squatter phone": squatter.phone,
        "squatter name": squatter.full_name,
        "stranger email": stranger.email,
    }

    blob, tables, rows = dump_tables(app)
    expected = {"users", "user_data_keys", "registration_flows", "one_time_codes", "sessions"}
    assert expected <= tables
    assert rows >= 10  # the dump really saw data
    # The models cover every table the database holds (besides Alembic's own).
    in_database = set(inspect(app.extensions["privid.engine"]).get_table_names())
    assert in_database - {"alembic_version"} <= tables
    assert_nowhere(blob, secrets, "a table")

    assert_nowhere(file_bytes(app), secrets, "the database files")
    app.extensions["privid.engine"].dispose()  # checkpoint the WAL into the main file
    assert_nowhere(file_bytes(app), secrets, "the checkpointed database file")


def test_dump_would_catch_clear_text(app, client, mailbox, sms):
    """The detector itself works: a value written in clear is found."""
    person, _ = register(client, mailbox, sms, new_person(NAME_TYPED))
    with app.extensions["privid.engine"].begin() as connection:
        connection.execute(
            update(User.__table__).values(password_hash=f"leak {person.phone} {person.full_name}")
        )
    blob, _, _ = dump_tables(app)
    with pytest.raises(AssertionError, match=r"phone E\.164"):
        assert_nowhere(blob, {"phone E.164": person.phone}, "a table")
    with pytest.raises(AssertionError, match="full name"):
        assert_nowhere(blob, {"full name": person.full_name}, "a table")
    with pytest.raises(AssertionError):
        assert_nowhere(file_bytes(app), {"phone national": person.phone[3:]}, "files")


def test_encrypted_fields_differ_between_users_with_equal_names(app, client, mailbox, sms):
    register(client, mailbox, sms, new_person("王芳"))
    register(client, mailbox, sms, new_person("王芳"))
    with app.extensions["privid.engine"].connect() as connection:
        names = connection.execute(select(User.__table__.c.full_name_encrypted)).scalars().all()
    assert len(names) == 2
    assert names[0] != names[1]


# -- crypto-shredding ---------------------------------------------------------------


def shred(app: Flask, uid: str) -> None:
    with app.extensions["privid.engine"].begin() as connection:
        removed = connection.execute(
            delete(UserDataKey.__table__).where(UserDataKey.__table__.c.user_id == uid)
        ).rowcount
    assert removed == 1


def profile_through_vault(app: Flask, runtime, uid: str) -> Any:
    factory = app.extensions["privid.session_factory"]
    with factory() as db:
        services = Services(db, runtime)
        user = db.get(User, uid)
        assert user is not None
        try:
            return services.vault.profile(user)
        finally:
            db.rollback()


def test_deleting_the_data_key_makes_the_profile_undecryptable(app, client, mailbox, sms, runtime):
    owner, owner_session = register(client, mailbox, sms)
    other, other_session = register(client, mailbox, sms)
    owner_id = user_id(client, owner_session["token"])
    other_id = user_id(client, other_session["token"])
    assert profile_through_vault(app, runtime, owner_id).email == owner.email

    shred(app, owner_id)

    with pytest.raises(DecryptionError):
        profile_through_vault(app, runtime, owner_id)
    # The ciphertext is still there; only the key is gone.
    with app.extensions["privid.engine"].connect() as connection:
        row = (
            connection.execute(select(User.__table__).where(User.__table__.c.id == owner_id))
            .mappings()
            .one()
        )
    assert row["email_encrypted"] and row["full_name_encrypted"]

    # Through the API: an error, never the data.
    answer = client.get("/api/v1/me", headers=bearer(owner_session["token"]))
    assert answer.status_code >= 400
    assert answer.mimetype == "application/problem+json"
    assert_nowhere(answer.get_data(), secrets_of(owner), "the error response")

    # Other users are untouched.
    assert profile_through_vault(app, runtime, other_id).email == other.email
    still = client.get("/api/v1/me", headers=bearer(other_session["token"]))
    assert still.status_code == 200
    assert still.json["email"] == other.email


def test_shredded_profile_cannot_be_opened_with_another_key(app, client, mailbox, sms, runtime):
    _, owner_session = register(client, mailbox, sms)
    _, other_session = register(client, mailbox, sms)
    owner_id = user_id(client, owner_session["token"])
    other_id = user_id(client, other_session["token"])
    table = UserDataKey.__table__
    engine = app.extensions["privid.engine"]
    with engine.connect() as connection:
        other_key = (
            connection.execute(select(table).where(table.c.user_id == other_id)).mappings().one()
        )
    shred(app, owner_id)

    # Another user's wrapped key is bound to that user: it does not unwrap for the owner.
    with engine.begin() as connection:
        connection.execute(
            table.insert().values(
                user_id=owner_id,
                key_id=other_key["key_id"],
                wrapped_key=other_key["wrapped_key"],
                created_at=other_key["created_at"],
            )
        )
    with pytest.raises(DecryptionError):
        profile_through_vault(app, runtime, owner_id)

    # A brand-new data key for the owner does not open the old ciphertext either.
    _, wrapped = runtime.key_ring.new_data_key(owner_id)
    with engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.user_id == owner_id)
            .values(key_id=wrapped.key_id, wrapped_key=wrapped.wrapped)
        )
    with pytest.raises(DecryptionError):
        profile_through_vault(app, runtime, owner_id)
