"""Production refuses development keys and embedded defaults, naming each setting."""

from __future__ import annotations

import base64
import os

import pytest

from app import create_app
from app.settings import Environment, Settings, SettingsError


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": Environment.PRODUCTION,
        "secret_key": _key(),
        "blind_index_key": _key(),
        "signing_key": _key(),
        "key_encryption_keys": f"k1:{_key()}",
        "active_key_id": "k1",
        "database_url": "postgresql+psycopg://privid@127.0.0.1:5432/privid",
        "ratelimit_storage_uri": "redis://127.0.0.1:6379/0",
        "public_url": "https://id.example.com",
        "email_backend": "smtp",
        "sms_backend": "http",
        "sms_http_url": "https://sms.example.com/send",
        "verification_provider": "http",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_complete_production_settings_pass():
    production().check()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"secret_key": Settings().secret_key}, "PRIVID_SECRET_KEY"),
        ({"blind_index_key": Settings().blind_index_key}, "PRIVID_BLIND_INDEX_KEY"),
        ({"signing_key": Settings().signing_key}, "PRIVID_SIGNING_KEY"),
        # The ledger's chain key, set to what development derives: anyone could forge rows.
        (
            {"chain_key": base64.b64encode(Settings().chain_key_bytes).decode()},
            "PRIVID_CHAIN_KEY",
        ),
        (
            {"key_encryption_keys": Settings().key_encryption_keys, "active_key_id": "dev1"},
            "PRIVID_KEY_ENCRYPTION_KEYS",
        ),
        ({"database_url": "sqlite:///x.db"}, "PRIVID_DATABASE_URL"),
        ({"ratelimit_storage_uri": "memory://"}, "PRIVID_RATELIMIT_STORAGE_URI"),
        ({"email_backend": "console"}, "PRIVID_EMAIL_BACKEND"),
        ({"sms_backend": "console"}, "PRIVID_SMS_BACKEND"),
        ({"sms_http_url": ""}, "PRIVID_SMS_HTTP_URL"),
        # The sandbox confirms its test identities to anyone.
        ({"verification_provider": "sandbox"}, "PRIVID_VERIFICATION_PROVIDER"),
        ({"public_url": "http://id.example.com"}, "PRIVID_PUBLIC_URL"),
        # A send that outlives its claim could be sent again by another worker.
        ({"outbox_claim_seconds": 20}, "PRIVID_OUTBOX_CLAIM_SECONDS"),
        # A guessable metrics token opens the service's counts to anyone.
        ({"metrics_token": "short"}, "PRIVID_METRICS_TOKEN"),
    ],
)
def test_production_refuses_development_values(override, named):
    with pytest.raises(SettingsError, match=named):
        production(**override).check()


def test_create_app_refuses_to_start_with_dev_keys_in_production():
    with pytest.raises(SettingsError, match="PRIVID_SECRET_KEY"):
        create_app(production(secret_key=Settings().secret_key))


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRIVID_PASSWORD_MIN_LENGTH", "12")
    monkeypatch.setenv("PRIVID_ARGON2_MEMORY_KIB", "65536")
    settings = Settings()
    assert settings.password_min_length == 12
    assert settings.argon2_memory_kib == 65536


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"key_encryption_keys": "k1:bm90LWEta2V5", "active_key_id": "k1"}, "32 bytes"),
        ({"key_encryption_keys": f"k1:{_key()}", "active_key_id": "k2"}, "PRIVID_ACTIVE_KEY_ID"),
        ({"secret_key": "***"}, "PRIVID_SECRET_KEY must be base64"),
    ],
)
def test_malformed_keys_are_named(override, message):
    with pytest.raises(SettingsError, match=message):
        Settings(**override).check()  # type: ignore[arg-type]
