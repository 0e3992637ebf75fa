"""The full document number and the name pass through memory to the provider
and nowhere else: after verifications (matched, mismatched, refused, provider
down, a child with a guardian), none of them is in the database (every table,
and the files on disk, SQLite's WAL included), the rate limiter's storage
(Redis keys and values, or memory), the outbox, the messages sent or the logs,
in any encoding."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from app.extensions import limiter
from tests.helpers import bearer, dump_tables, file_bytes, register
from tests.verification_helpers import CHILD, ZHANG_NUMBER, grant
from verification.sandbox import UNAVAILABLE_NAME

URL = "/api/v1/me/identity-verification"
REFUSED_NUMBER = "110105194912310021"  # wrong check character


def _base64_forms(raw: bytes) -> set[bytes]:
    """The value's base64 at each of the three alignments it can have inside a
    longer encoded string, less the characters that mix with its neighbours."""
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + raw)
        start = 4 if shift else 0
        forms.add(encoded[start:-4])
        forms.add(base64.urlsafe_b64encode(b"\x00" * shift + raw)[start:-4])
    return {form for form in forms if len(form) >= 8}


def encodings(secret: str) -> set[bytes]:
    forms: set[bytes] = set()
    for text in {secret, secret.lower(), secret.upper()}:
        raw = text.encode("utf-8")
        forms |= {
            raw,
            text.encode("utf-16-le"),
            text.encode("utf-16-be"),
            raw.hex().encode(),
            raw.hex().upper().encode(),
            quote(text).encode(),
            quote_plus(text).encode(),
            json.dumps(text).strip('"').encode(),
            json.dumps(text, ensure_ascii=False).strip('"').encode("utf-8"),
        }
        forms |= _base64_forms(raw)
    return forms


def assert_nowhere(blob: bytes, secrets: dict[str, str], where: str) -> None:
    for label, secret in secrets.items():
        for form in encodings(secret):
            assert form not in blob, f"{label} found in {where} as {form!r}"


def limiter_contents(app: Any, uri: str) -> bytes:
    if uri.startswith("redis"):
        import redis

        connection = redis.Redis.from_url(uri)
        try:
            chunks = []
            for key in connection.scan_iter("*"):
                chunks += [key, connection.dump(key) or b""]
            return b"\x00".join(chunks)
        finally:
            connection.close()
    with app.app_context():
        storages = [limiter.storage, app.extensions["privid.runtime"].replay_cache]
        return repr([vars(storage) for storage in storages]).encode("utf-8")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        "limit_verification_per_account": "100/day",
        "limit_verification_per_document": "100/day",
    }


def test_the_number_and_name_are_nowhere(app, client, mailbox, sms, settings, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    _, session = register(client, mailbox, sms)
    token = session["token"]
    grant(client, token)
    base = {"full_name": "张三", "document_type": "cn_resident_id_card"}

    def verify(**body: object) -> int:
        answer = client.post(URL, json={**base, **body}, headers=bearer(token))
        return answer.status_code

    assert verify(document_number=REFUSED_NUMBER) == 422
    assert verify(document_number=ZHANG_NUMBER, full_name="李四") == 422
    assert verify(document_number=ZHANG_NUMBER, full_name=UNAVAILABLE_NAME) == 503
    assert verify(document_number=ZHANG_NUMBER) == 201
    guardian = {**base, "document_number": ZHANG_NUMBER}
    assert verify(**CHILD, guardian=guardian) == 201
    assert client.post("/api/v1/me/export", headers=bearer(token)).status_code == 200
    app.extensions["privid.runtime"].dispatcher.drain()

    secrets = {
        "number": ZHANG_NUMBER,
        "refused number": REFUSED_NUMBER,
        "child's number": CHILD["document_number"],
        "name": "张三",
        "child's name": CHILD["full_name"],
        "other name": "李四",
    }
    blob, tables, rows = dump_tables(app)
    assert "identity_verifications" in tables and rows >= 10
    assert b"110105**********2X" in blob  # the dump does see the verification rows
    assert_nowhere(blob, secrets, "a table")
    assert_nowhere(file_bytes(app), secrets, "the database files")
    app.extensions["privid.engine"].dispose()  # SQLite: the WAL into the main file
    assert_nowhere(file_bytes(app), secrets, "the checkpointed database file")

    stored_limits = limiter_contents(app, settings.ratelimit_storage_uri)
    assert b"identity-document" in stored_limits  # the per-document limit did count
    assert_nowhere(stored_limits, secrets, "the rate limiter's storage")

    sent = repr([mailbox.messages, sms.messages]).encode("utf-8")
    assert_nowhere(sent, secrets, "the messages sent")

    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {vars(record)!r}" for record in caplog.records
    )
    assert logged, "nothing was logged: the log search would prove nothing"
    out, err = capfd.readouterr()
    assert_nowhere((logged + out + err).encode("utf-8"), secrets, "the logs")


def test_the_search_would_find_a_leak():
    blob = b"prefix " + base64.b64encode(b"xx" + ZHANG_NUMBER.encode()) + b" suffix"
    with pytest.raises(AssertionError, match="number"):
        assert_nowhere(blob, {"number": ZHANG_NUMBER}, "a sample")
    for leaked in (
        ZHANG_NUMBER.lower(),
        ZHANG_NUMBER.encode("utf-16-le").decode("latin-1"),
        ZHANG_NUMBER.encode().hex(),
        quote("张三"),
        json.dumps("张三"),
    ):
        with pytest.raises(AssertionError):
            assert_nowhere(
                leaked.encode("latin-1" if "\x00" in leaked else "utf-8"),
                {"number": ZHANG_NUMBER, "name": "张三"},
                "a sample",
            )
