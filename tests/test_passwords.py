"""Passwords: the policy (length, common passwords, the user's own data), how
they are hashed, and what a user sees when registering, signing in and changing
a password."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import build_runtime, create_app
from app.clock import SystemClock
from app.models import User
from app.security.passwords import (
    Argon2Passwords,
    PasswordPolicy,
    PasswordRejected,
    PersonalData,
    is_common_password,
)
from app.settings import Settings
from tests.helpers import (
    GOOD_PASSWORD,
    Person,
    bearer,
    login,
    new_person,
    register,
    start_registration,
)

STRONG = "velvet-orbit-canyon-42"
NEW_PASSWORD = "quartz-lantern-meadow-77"
COMMON_REASON = "common"
OWN_DATA_REASON = "own email, phone number or name"


# -- helpers -------------------------------------------------------------------


def rejection(policy: PasswordPolicy, password: str, personal: PersonalData | None = None) -> str:
    with pytest.raises(PasswordRejected) as info:
        policy.check(password, personal or PersonalData())
    return info.value.reason


def field_errors(response: Any) -> list[tuple[str, str]]:
    assert response.mimetype == "application/problem+json"
    return [(e["pointer"], e["detail"]) for e in response.get_json()["errors"]]


def refused_at(response: Any, pointer: str) -> str:
    assert response.status_code == 422, response.get_data(as_text=True)
    [(where, detail)] = field_errors(response)
    assert where == pointer
    return detail


def person_with(password: str, full_name: str = "李小龙") -> Person:
    person = new_person(full_name)
    person.password = password
    return person


def change_password(client, token: str, current: str, new: str) -> Any:
    return client.post(
        "/api/v1/me/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(token),
    )


def stored_hash(app: Flask) -> str:
    with app.extensions["privid.engine"].connect() as connection:
        [value] = connection.execute(select(User.__table__.c.password_hash)).scalars().all()
    return str(value)


def argon2_parameters(encoded: str) -> str:
    # $argon2id$v=19$m=1024,t=1,p=1$salt$hash
    return encoded.split("$")[3]


# -- policy: unit tests ------------------------------------------------------------


@pytest.fixture
def policy() -> PasswordPolicy:
    return PasswordPolicy(min_length=8, max_length=256)


def test_policy_minimum_length(policy):
    assert "at least 8" in rejection(policy, "k7#qv9!")
    policy.check("k7#qv9!m", PersonalData())


def test_policy_minimum_length_follows_setting():
    strict = PasswordPolicy(min_length=12, max_length=256)
    assert "at least 12" in rejection(strict, "k7#qv9!mz2x")
    strict.check("k7#qv9!mz2xw", PersonalData())


def test_policy_maximum_length(policy):
    policy.check("k7#qv9!m" * 32, PersonalData())  # 256
    assert "at most 256" in rejection(policy, "k7#qv9!m" * 32 + "x")


def test_policy_counts_characters_not_bytes(policy):
    # Eight emoji are 32 UTF-8 bytes but eight characters: long enough, not too long.
    policy.check("🔐🦄🌈🎸🍕🚀🐉🌙", PersonalData())
    policy.check("我的密码非常安全很长", PersonalData())
    assert "at least 8" in rejection(policy, "🔐🦄🌈🎸🍕🚀🐉")
    policy.check("密" * 256, PersonalData())
    assert "at most" in rejection(policy, "密" * 257)


@pytest.mark.parametrize(
    "password",
    ["password1", "iloveyou", "Password1", "PASSWORD1", "qwerty123", "sunshine", "trustno1"],
)
def test_policy_refuses_common_passwords(policy, password):
    assert is_common_password(password)
    assert COMMON_REASON in rejection(policy, password).lower()


@pytest.mark.parametrize(
    "password", [STRONG, "correct horse battery staple", "我的密码非常安全很长"]
)
def test_policy_accepts_uncommon_passwords(policy, password):
    assert not is_common_password(password)
    policy.check(password, PersonalData())


PERSONAL = PersonalData(
    email="zhang.weiming@example.com",
    phone_e164="+8613912345678",
    phone_national="13912345678",
    full_name="Zhang Weiming",
)


def test_personal_tokens_cover_email_phone_and_name():
    tokens = PERSONAL.tokens()
    for expected in (
        "zhang.weiming",
        "zhang",
        "weiming",
        "example",
        "8613912345678",
        "13912345678",
        "zhangweiming",
    ):
        assert expected in tokens
    assert all(len(t) >= 2 for t in tokens)
    assert tokens == sorted(tokens, key=len, reverse=True)


def test_personal_tokens_of_chinese_name_keep_two_character_pieces():
    tokens = PersonalData(full_name="王 芳").tokens()
    assert "王芳" in tokens
    assert "王" not in tokens


def test_personal_tokens_use_composed_name():
    assert "amélie" in PersonalData(full_name="Ame\u0301lie").tokens()


@pytest.mark.parametrize(
    "password",
    [
        "zhang.weiming@example.com",
        "zhang.weiming2024",
        "ZhangWeiming!!",
        "weimingzhang",
        "13912345678",
        "+8613912345678",
        "13912345678abc",
        "example13912345678",
    ],
)
def test_policy_refuses_passwords_built_from_own_data(policy, password):
    assert OWN_DATA_REASON in rejection(policy, password, PERSONAL)


def test_policy_refuses_password_built_from_chinese_name(policy):
    personal = PersonalData(full_name="欧阳娜娜")
    assert OWN_DATA_REASON in rejection(policy, "欧阳娜娜欧阳娜娜", personal)
    assert OWN_DATA_REASON in rejection(policy, "欧阳娜娜12345", personal)


def test_policy_refuses_own_data_padded_with_a_common_password(policy):
    assert OWN_DATA_REASON in rejection(policy, "zhangpassword1", PERSONAL)


def test_policy_accepts_own_data_inside_an_otherwise_strong_password(policy):
    policy.check("zhang-" + STRONG, PERSONAL)
    policy.check("欧阳-" + STRONG, PersonalData(full_name="欧阳娜娜"))


def test_policy_own_data_rule_needs_personal_data(policy):
    policy.check("zhang.weiming2024", PersonalData())


# -- hashing: unit tests ---------------------------------------------------------------


@pytest.fixture
def hasher() -> Argon2Passwords:
    return Argon2Passwords(memory_kib=1024, time_cost=1, parallelism=1)


def test_hash_is_argon2id_with_configured_parameters(hasher):
    encoded = hasher.hash(STRONG)
    assert encoded.startswith("$argon2id$")
    assert argon2_parameters(encoded) == "m=1024,t=1,p=1"
    assert STRONG not in encoded
    assert hasher.hash(STRONG) != encoded  # salted


def test_verify_accepts_only_the_exact_password(hasher):
    encoded = hasher.hash(STRONG)
    assert hasher.verify(encoded, STRONG)
    assert not hasher.verify(encoded, STRONG.upper())
    assert not hasher.verify(encoded, STRONG + " ")
    assert not hasher.verify(encoded, STRONG[:-1])


def test_verify_without_account_never_succeeds(hasher):
    before = hasher.verifications
    assert not hasher.verify(None, "privid-dummy-password")
    assert not hasher.verify(None, STRONG)
    # The miss still did the hashing work, like a real account would.
    assert hasher.verifications == before + 2


def test_verify_of_garbage_or_foreign_hash_is_false(hasher):
    assert not hasher.verify("not-a-hash", STRONG)
    assert not hasher.verify("", STRONG)
    bcrypt_like = "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5F3l1J7C5Zq7Q1V0m0pQe7C0dQ9b6cS"
    assert not hasher.verify(bcrypt_like, STRONG)


def test_needs_rehash_when_parameters_differ(hasher):
    weak = hasher.hash(STRONG)
    assert not hasher.needs_rehash(weak)
    stronger = Argon2Passwords(memory_kib=2048, time_cost=2, parallelism=1)
    assert stronger.needs_rehash(weak)
    assert stronger.verify(weak, STRONG)  # old hashes still verify


# -- API: length ---------------------------------------------------------------------


def test_registration_refuses_seven_characters_and_accepts_eight(client):
    short = start_registration(client, person_with("k7#qv9!"))
    assert "at least 8" in refused_at(short, "#/password")
    assert start_registration(client, person_with("k7#qv9!m")).status_code == 202


class TestMinimumLengthSetting:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"password_min_length": 12}

    def test_registration_uses_configured_minimum(self, client):
        short = start_registration(client, person_with("k7#qv9!mz2x"))
        assert "at least 12" in refused_at(short, "#/password")
        assert start_registration(client, person_with("k7#qv9!mz2xw")).status_code == 202

    def test_password_change_uses_configured_minimum(self, client, mailbox, sms):
        person, session = register(client, mailbox, sms)
        response = change_password(client, session["token"], person.password, "k7#qv9!mz2x")
        assert "at least 12" in refused_at(response, "#/new_password")


def test_256_characters_accepted_and_sign_in(client, mailbox, sms):
    longest = ("k7#Qv9!m" * 32)[:256]
    person, _ = register(client, mailbox, sms, person_with(longest))
    assert login(client, person.email, longest).status_code == 200


def test_257_characters_refused(client):
    response = start_registration(client, person_with("k7#Qv9!m" * 32 + "x"))
    assert "at most 256" in refused_at(response, "#/password")


def test_257_characters_refused_on_change(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    response = change_password(client, session["token"], person.password, "k7#Qv9!m" * 32 + "x")
    assert "at most 256" in refused_at(response, "#/new_password")


# -- API: the password is used exactly as typed ----------------------------------------


def test_no_truncation_after_72_characters(client, mailbox, sms):
    head = ("k7#Qv9!m" * 9)[:72]
    password = head + "-tail-one"
    person, _ = register(client, mailbox, sms, person_with(password))
    assert login(client, person.email, head + "-tail-two").status_code == 401
    assert login(client, person.email, head).status_code == 401
    assert login(client, person.email, password).status_code == 200


def test_no_truncation_near_the_maximum(client, mailbox, sms):
    password = ("k7#Qv9!m" * 32)[:255] + "a"
    person, _ = register(client, mailbox, sms, person_with(password))
    assert login(client, person.email, password[:255] + "b").status_code == 401
    assert login(client, person.email, password).status_code == 200


def test_passwords_are_case_sensitive(client, mailbox, sms):
    password = "Velvet-Orbit-Canyon-42"
    person, _ = register(client, mailbox, sms, person_with(password))
    assert login(client, person.email, password.lower()).status_code == 401
    assert login(client, person.email, password.upper()).status_code == 401
    assert login(client, person.email, password.swapcase()).status_code == 401
    assert login(client, person.email, password).status_code == 200


def test_spaces_are_part_of_the_password(client, mailbox, sms):
    password = "  velvet orbit canyon  "
    person, _ = register(client, mailbox, sms, person_with(password))
    assert login(client, person.email, password.strip()).status_code == 401
    assert login(client, person.email, password).status_code == 200


@pytest.mark.parametrize(
    "password",
    [
        "🔐🦄🌈🎸🍕🚀🐉🌙",
        "我的密码非常安全很长",
        "пароль-для-входа-42",
        "كلمة-مرور-قوية-٤٢",
        "Zoë+Ångström→∞",
    ],
)
def test_any_unicode_password_works(client, mailbox, sms, password):
    person, _ = register(client, mailbox, sms, person_with(password, full_name="Grace Hopper"))
    assert login(client, person.email, password).status_code == 200
    assert login(client, person.phone, password).status_code == 200
    assert login(client, person.email, password[:-1] + "x").status_code == 401


# -- API: common passwords and own data ------------------------------------------------


@pytest.mark.parametrize("password", ["password1", "iloveyou", "Password1", "qwerty123"])
def test_registration_refuses_common_passwords(client, runtime, mailbox, password):
    person = person_with(password)
    detail = refused_at(start_registration(client, person), "#/password")
    assert COMMON_REASON in detail.lower()
    runtime.dispatcher.drain()
    assert mailbox.to(person.email) == []


def test_registration_refuses_password_from_own_email(client):
    person = new_person()
    local, _, domain = person.email.partition("@")
    person.password = f"{local}@{domain}"
    assert OWN_DATA_REASON in refused_at(start_registration(client, person), "#/password")


def test_registration_refuses_password_from_own_phone(client):
    person = new_person()
    national = person.phone.removeprefix("+86")
    person.password = f"{national}!!"
    assert OWN_DATA_REASON in refused_at(start_registration(client, person), "#/password")
    person.password = person.phone
    assert OWN_DATA_REASON in refused_at(start_registration(client, person), "#/password")


def test_registration_refuses_password_from_phone_typed_nationally(client):
    # The number is typed without +86; its national digits still count as own data.
    person = new_person()
    national = person.phone.removeprefix("+86")
    body = {
        "email": person.email,
        "phone": national,
        "full_name": person.full_name,
        "password": f"86{national}",
    }
    response = client.post("/api/v1/registration", json=body)
    assert OWN_DATA_REASON in refused_at(response, "#/password")


def test_registration_refuses_password_from_own_name(client):
    latin = person_with("zhangweiming88", full_name="Zhang Weiming")
    assert OWN_DATA_REASON in refused_at(start_registration(client, latin), "#/password")
    chinese = person_with("欧阳娜娜欧阳娜娜", full_name="欧阳娜娜")
    assert OWN_DATA_REASON in refused_at(start_registration(client, chinese), "#/password")


def test_registration_accepts_name_inside_strong_password(client):
    person = person_with("zhang-" + STRONG, full_name="Zhang Weiming")
    assert start_registration(client, person).status_code == 202


def test_change_refuses_common_and_own_data(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    common = change_password(client, session["token"], person.password, "iloveyou")
    assert COMMON_REASON in refused_at(common, "#/new_password").lower()
    local = person.email.split("@")[0]
    own = change_password(client, session["token"], person.password, f"{local}{local}")
    assert OWN_DATA_REASON in refused_at(own, "#/new_password")
    assert login(client, person.email, person.password).status_code == 200


# -- API: changing the password ----------------------------------------------------------


def test_change_requires_the_current_password(client, mailbox, sms, runtime):
    person, session = register(client, mailbox, sms)
    response = change_password(client, session["token"], "not-my-password-9", NEW_PASSWORD)
    assert "not correct" in refused_at(response, "#/current_password")
    assert login(client, person.email, NEW_PASSWORD).status_code == 401
    assert login(client, person.email, person.password).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(session["token"])).status_code == 200
    runtime.dispatcher.drain()
    assert len(mailbox.to(person.email)) == 1  # no "password changed" notice


def test_change_needs_a_signed_in_caller(client):
    response = client.post(
        "/api/v1/me/password",
        json={"current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 401


def test_change_ends_other_sessions_but_not_this_one(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    others = [login(client, person.email, person.password).json["token"] for _ in range(2)]
    for token in others:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200

    response = change_password(client, session["token"], person.password, NEW_PASSWORD)
    assert response.status_code == 200
    assert response.json == {"revoked": 2}

    assert client.get("/api/v1/me", headers=bearer(session["token"])).status_code == 200
    for token in others:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert login(client, person.email, person.password).status_code == 401
    assert login(client, person.email, NEW_PASSWORD).status_code == 200
    notice = mailbox.wait_for(person.email, count=2)
    assert "password was changed" in notice["Subject"].lower()


def test_change_from_cookie_session_needs_csrf_and_keeps_the_session(client, mailbox, sms):
    person, session = register(client, mailbox, sms, token_delivery="cookie")
    body = {"current_password": person.password, "new_password": NEW_PASSWORD}
    assert client.post("/api/v1/me/password", json=body).status_code == 403
    response = client.post(
        "/api/v1/me/password", json=body, headers={"X-CSRF-Token": session["csrf_token"]}
    )
    assert response.status_code == 200
    assert client.get("/api/v1/me").status_code == 200
    assert login(client, person.email, NEW_PASSWORD).status_code == 200


def test_refused_new_password_changes_nothing(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    other = login(client, person.email, person.password).json["token"]
    response = change_password(client, session["token"], person.password, "short")
    assert "at least 8" in refused_at(response, "#/new_password")
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 200
    assert login(client, person.email, person.password).status_code == 200


# -- API: rehash when argon2 parameters change --------------------------------------------


@pytest.fixture
def stronger_client(settings: Settings) -> Iterator[tuple[Flask, FlaskClient]]:
    """A second app on the same database, configured with stronger argon2 parameters."""
    values = settings.model_dump()
    values.update(argon2_memory_kib=2048, argon2_time_cost=2, argon2_parallelism=1)
    stronger = Settings(**values)
    runtime = build_runtime(stronger, clock=SystemClock())
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    yield app, client
    app.extensions["privid.engine"].dispose()


def test_login_rehashes_when_argon2_parameters_change(app, client, mailbox, sms, stronger_client):
    person, _ = register(client, mailbox, sms)
    before = stored_hash(app)
    assert argon2_parameters(before) == "m=1024,t=1,p=1"
    _, new_client = stronger_client

    # A failed sign-in leaves the hash alone.
    assert login(new_client, person.email, "not-my-password-9").status_code == 401
    assert stored_hash(app) == before

    assert login(new_client, person.email, person.password).status_code == 200
    after = stored_hash(app)
    assert argon2_parameters(after) == "m=2048,t=2,p=1"
    assert after.startswith("$argon2id$")

    # The new hash still holds the same password, and is not redone needlessly.
    assert login(new_client, person.phone, person.password).status_code == 200
    assert stored_hash(app) == after
    assert login(new_client, person.email, "not-my-password-9").status_code == 401
