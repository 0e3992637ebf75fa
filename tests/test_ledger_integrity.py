"""The consent ledger and the audit trail against someone who can write the
database but holds no key: rewriting, re-hashing, cutting the tail, emptying
and resetting the chain state are all caught by `flask consent-verify` /
`flask audit-verify`, which name what no longer fits. Writes on distinct
accounts do not wait for one another."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from app.models import AuditEvent, ConsentRecord
from app.models import Session as SessionRow
from tests.conftest import PG_URL
from tests.helpers import (
    POLICY_VERSION,
    baseline_consent,
    bearer,
    login,
    register,
    tamper_connection,
    wipe_chain_state,
)

on_postgres = pytest.mark.skipif(
    not PG_URL, reason="TRUNCATE triggers and row locks exist on PostgreSQL only"
)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The service's own chain key, as in production: not the development one.
    return {"chain_key": base64.b64encode(b"ledger-integrity-test-chain-key!").decode()}


def rows(app, model) -> list[Any]:
    with app.extensions["privid.session_factory"]() as db:
        found = db.execute(select(model).order_by(model.id)).scalars().all()
        db.expunge_all()
        return list(found)


def verify(app, ledger: str) -> Any:
    return app.test_cli_runner().invoke(args=[f"{ledger}-verify"])


def two_accounts(client, mailbox, sms) -> None:
    register(client, mailbox, sms)
    register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))


def rehash_plain_chain(connection, table: str, fields, start_id: int) -> None:
    """What the issue's attacker did: rewrite, then recompute a plain SHA-256
    chain (the code is public) over the row and everything after it."""
    import hashlib
    import json

    model = {"consent_records": ConsentRecord, "audit_events": AuditEvent}[table]
    ordered = connection.execute(select(model.__table__).order_by(model.id)).all()
    prev = "0" * 64
    for row in ordered:
        if row.id >= start_id:
            sealed = {**fields(row), "prev_hash": prev}
            canonical = json.dumps(sealed, sort_keys=True, separators=(",", ":"))
            new_hash = hashlib.sha256(canonical.encode()).hexdigest()
            values = {"h": new_hash, "id": row.id}
            if "prev_hash" in row._fields:
                connection.execute(
                    text(f"UPDATE {table} SET prev_hash = :p, hash = :h WHERE id = :id"),
                    {**values, "p": prev},
                )
            else:
                connection.execute(text(f"UPDATE {table} SET hash = :h WHERE id = :id"), values)
            prev = new_hash
        else:
            prev = row.hash
    wipe_chain_state(connection, table, last_hash=prev)


# -- the database refuses -------------------------------------------------------------


@on_postgres
@pytest.mark.parametrize("table", ["consent_records", "audit_events"])
def test_truncate_is_refused_by_the_database(app, client, mailbox, sms, table):
    two_accounts(client, mailbox, sms)
    before = len(rows(app, ConsentRecord)), len(rows(app, AuditEvent))
    engine = app.extensions["privid.engine"]
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {table}"))
    assert (len(rows(app, ConsentRecord)), len(rows(app, AuditEvent))) == before
    assert verify(app, "consent").exit_code == 0


# -- the consent ledger -------------------------------------------------------------------


def test_a_rewritten_decision_with_everything_after_it_rehashed_is_caught(
    app, client, mailbox, sms
):
    from app.services.consent import sealed_fields

    two_accounts(client, mailbox, sms)
    assert verify(app, "consent").exit_code == 0
    records = rows(app, ConsentRecord)
    victim = next(r for r in records[4:] if r.decision == "granted")
    with tamper_connection(app) as connection:
        connection.execute(
            text("UPDATE consent_records SET decision = 'refused' WHERE id = :id"),
            {"id": victim.id},
        )
        rehash_plain_chain(connection, "consent_records", sealed_fields, victim.id)

    result = verify(app, "consent")
    assert result.exit_code == 1, result.output
    assert f"record {victim.id}:" in result.output
    assert "does not match" in result.output


def test_a_cut_off_tail_with_the_chain_state_reset_is_caught(app, client, mailbox, sms):
    two_accounts(client, mailbox, sms)
    assert verify(app, "consent").exit_code == 0  # e.g. last night's cron run
    records = rows(app, ConsentRecord)
    kept, cut = records[:-2], records[-2:]
    with tamper_connection(app) as connection:
        connection.execute(text("DELETE FROM consent_records WHERE id >= :id"), {"id": cut[0].id})
        wipe_chain_state(connection, "consent_records", last_hash=kept[-1].hash)

    result = verify(app, "consent")
    assert result.exit_code == 1, result.output
    assert "record -1" not in result.output
    assert "checkpoint" in result.output
    assert f"{len(records)} records" in result.output  # what the checkpoint vouched for


def test_an_emptied_ledger_with_the_chain_state_reset_is_caught(app, client, mailbox, sms):
    two_accounts(client, mailbox, sms)
    assert verify(app, "consent").exit_code == 0
    count = len(rows(app, ConsentRecord))
    with tamper_connection(app) as connection:
        connection.execute(text("DELETE FROM consent_records"))
        wipe_chain_state(connection, "consent_records", last_hash="0" * 64)
    assert rows(app, ConsentRecord) == []

    result = verify(app, "consent")
    assert result.exit_code == 1, result.output
    assert "checkpoint" in result.output and f"{count} records" in result.output


def test_a_deleted_last_record_is_named_not_minus_one(app, client, mailbox, sms):
    two_accounts(client, mailbox, sms)
    assert verify(app, "consent").exit_code == 0
    last = rows(app, ConsentRecord)[-1]
    with tamper_connection(app) as connection:
        connection.execute(text("DELETE FROM consent_records WHERE id = :id"), {"id": last.id})

    result = verify(app, "consent")
    assert result.exit_code == 1, result.output
    assert "record -1" not in result.output
    assert f"record {last.id}" in result.output and "missing" in result.output


def test_verify_writes_signed_checkpoints_outside_the_database(app, client, mailbox, sms, runtime):
    two_accounts(client, mailbox, sms)
    assert verify(app, "consent").exit_code == 0
    assert verify(app, "audit").exit_code == 0
    folder = runtime.settings.chain_checkpoint_dir
    from pathlib import Path

    files = sorted(p.name for p in Path(folder).iterdir())
    assert files == ["audit.jwsl", "consent.jwsl"]
    line = (Path(folder) / "consent.jwsl").read_text().splitlines()[-1]
    claims = runtime.signer.verify(line)
    assert claims["chain"] == "consent"
    assert claims["records"] == len(rows(app, ConsentRecord))
    # A later run appends; it never rewrites what is there.
    register(client, mailbox, sms)
    assert verify(app, "consent").exit_code == 0
    lines = (Path(folder) / "consent.jwsl").read_text().splitlines()
    assert lines[0] == line and len(lines) == 2


# -- the audit trail -------------------------------------------------------------------------


def test_a_rewritten_audit_event_with_everything_after_it_rehashed_is_caught(
    app, client, mailbox, sms
):
    from app.services.audit import sealed_fields

    two_accounts(client, mailbox, sms)
    assert verify(app, "audit").exit_code == 0
    events = rows(app, AuditEvent)
    victim = events[2]
    with tamper_connection(app) as connection:
        connection.execute(
            text("UPDATE audit_events SET outcome = 'failure' WHERE id = :id"), {"id": victim.id}
        )
        rehash_plain_chain(connection, "audit_events", sealed_fields, victim.id)

    result = verify(app, "audit")
    assert result.exit_code == 1, result.output
    assert f"event {victim.id}:" in result.output


def test_an_emptied_audit_trail_with_the_chain_state_reset_is_caught(app, client, mailbox, sms):
    two_accounts(client, mailbox, sms)
    assert verify(app, "audit").exit_code == 0
    count = len(rows(app, AuditEvent))
    with tamper_connection(app) as connection:
        connection.execute(text("DELETE FROM audit_events"))
        wipe_chain_state(connection, "audit_events", last_hash="0" * 64)

    result = verify(app, "audit")
    assert result.exit_code == 1, result.output
    assert "checkpoint" in result.output and f"{count} events" in result.output


# -- contention ---------------------------------------------------------------------------------


@on_postgres
def test_writes_on_distinct_accounts_do_not_wait_for_each_other(app, client, mailbox, sms):
    """One account's consent change and sign-in sit in an open transaction (as a
    slow request would); another account's sign-in and consent grant must not
    queue behind it. SQLite has one writer at a time by design, so this is
    PostgreSQL only."""
    from app.cli import unit_of_work
    from app.services.context import RequestContext

    _, alice_session = register(client, mailbox, sms)
    bob, _ = register(client, mailbox, sms)
    with app.extensions["privid.session_factory"]() as db:
        alice_id = db.get(SessionRow, alice_session["session_id"]).user_id

    holding, release, finished = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        with app.app_context(), unit_of_work() as svc:
            context = RequestContext.from_raw("198.51.100.7", "test", b"k" * 32)
            svc.consent.grant(alice_id, "analytics", POLICY_VERSION, context)
            svc.audit.record("test.slow", user_id=alice_id, ip_prefix=context.ip_prefix)
            holding.set()
            release.wait(20)

    def bobs_request() -> None:
        signed_in = login(client_b, bob.email, bob.password)
        outcome["login"] = signed_in.status_code
        if signed_in.status_code == 200:
            outcome["grant"] = client_b.post(
                "/api/v1/me/consent/analytics/grant",
                json={"policy_version": POLICY_VERSION},
                headers=bearer(signed_in.json["token"]),
            ).status_code
        finished.set()

    client_b = app.test_client()
    client_b.environ_base["wsgi.url_scheme"] = "https"
    slow = threading.Thread(target=slow_request)
    slow.start()
    assert holding.wait(20)
    bob_thread = threading.Thread(target=bobs_request)
    bob_thread.start()
    try:
        done_in_time = finished.wait(10)
    finally:
        release.set()
        slow.join(30)
        bob_thread.join(30)
    assert done_in_time, "bob's sign-in waited for alice's open transaction"
    assert outcome == {"login": 200, "grant": 200}
    assert verify(app, "consent").exit_code == 0
    assert verify(app, "audit").exit_code == 0


def test_the_sealer_will_not_extend_a_chain_cut_back_behind_its_checkpoint(
    app, client, mailbox, sms, runtime
):
    from pathlib import Path

    two_accounts(client, mailbox, sms)
    runner = app.test_cli_runner()
    sealed = runner.invoke(args=["chain-seal"])
    assert sealed.exit_code == 0 and "sealed" in sealed.output, sealed.output
    folder = Path(runtime.settings.chain_checkpoint_dir)
    before = {p.name: p.read_text() for p in folder.iterdir()}
    with tamper_connection(app) as connection:
        connection.execute(text("DELETE FROM audit_events"))
        wipe_chain_state(connection, "audit_events", last_hash="0" * 64)
    register(client, mailbox, sms)  # new rows arrive after the tampering

    refused = runner.invoke(args=["chain-seal"])
    assert refused.exit_code != 0
    assert "no longer matches its checkpoint" in refused.output
    # Nothing was sealed over the gap, so no new checkpoint vouches for it.
    assert (folder / "audit.jwsl").read_text() == before["audit.jwsl"]
    assert verify(app, "audit").exit_code == 1


def test_a_checkpoint_line_we_did_not_sign_is_refused(app, client, mailbox, sms, runtime):
    from pathlib import Path

    two_accounts(client, mailbox, sms)
    assert verify(app, "consent").exit_code == 0
    path = Path(runtime.settings.chain_checkpoint_dir) / "consent.jwsl"
    header, payload, _ = path.read_text().splitlines()[-1].split(".")
    with path.open("a") as handle:
        handle.write(f"{header}.{payload}.{base64.urlsafe_b64encode(b'x' * 64).decode()}\n")

    result = verify(app, "consent")
    assert result.exit_code == 1
    assert "is not ours" in result.output


def test_a_backlog_is_sealed_in_batches_each_checkpointed(app, client, mailbox, sms, monkeypatch):
    import app.services.chain as chain

    monkeypatch.setattr(chain, "SEAL_BATCH", 5)
    two_accounts(client, mailbox, sms)
    count = len(rows(app, ConsentRecord))
    first = verify(app, "consent")
    assert first.exit_code == 0, first.output
    seals = -(-count // 5)
    assert f"sealed {count} new records in seals 1–{seals}" in first.output
    again = verify(app, "consent")
    assert again.exit_code == 0 and f"{count} records in {seals} seals" in again.output


# -- rows written since the last seal ------------------------------------------------------


def withdraw_analytics_after_the_seal(app, client, mailbox, sms) -> tuple[ConsentRecord, str]:
    """Last night's verify sealed everything; today the second account withdraws
    analytics. Returns the withdrawal, not yet sealed, and its owner's token."""
    register(client, mailbox, sms)
    _, session = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))
    assert verify(app, "consent").exit_code == 0
    withdrawn = client.post(
        "/api/v1/me/consent/analytics/withdraw", headers=bearer(session["token"])
    )
    assert withdrawn.status_code == 200, withdrawn.json
    withdrawal = rows(app, ConsentRecord)[-1]
    assert withdrawal.decision == "withdrawn" and withdrawal.seal is None
    return withdrawal, session["token"]


def test_an_unsealed_withdrawal_deleted_with_its_head_reset_is_caught(app, client, mailbox, sms):
    withdrawal, _token = withdraw_analytics_after_the_seal(app, client, mailbox, sms)
    with tamper_connection(app) as connection:
        connection.execute(
            text("DELETE FROM consent_records WHERE id = :id"), {"id": withdrawal.id}
        )
        connection.execute(
            text("UPDATE chain_heads SET last_hash = :h WHERE name = :n"),
            {"h": withdrawal.prev_hash, "n": f"consent:{withdrawal.user_id}"},
        )

    result = verify(app, "consent")
    assert result.exit_code == 1, result.output
    assert f"account {withdrawal.user_id}" in result.output
    # Nothing was sealed over the gap.
    assert all(r.seal is None for r in rows(app, ConsentRecord) if r.id > withdrawal.id)


def test_an_unsealed_withdrawal_deleted_with_its_head_row_is_caught(app, client, mailbox, sms):
    withdrawal, _token = withdraw_analytics_after_the_seal(app, client, mailbox, sms)
    with tamper_connection(app) as connection:
        connection.execute(
            text("DELETE FROM consent_records WHERE id = :id"), {"id": withdrawal.id}
        )
        connection.execute(
            text("DELETE FROM chain_heads WHERE name = :n"),
            {"n": f"consent:{withdrawal.user_id}"},
        )

    result = verify(app, "consent")
    assert result.exit_code == 1, result.output
    assert f"account {withdrawal.user_id}" in result.output


def test_the_sealer_will_not_seal_over_a_deleted_unsealed_record(
    app, client, mailbox, sms, runtime
):
    """The account that shows a gap stays unsealed and is named; the other
    accounts' new records are still sealed, so one broken chain cannot stop
    the seals (and keep everyone else's records deletable)."""
    from pathlib import Path

    withdrawal, token = withdraw_analytics_after_the_seal(app, client, mailbox, sms)
    # The owner's next decision waits unsealed, the one before it is deleted.
    granted = client.post(
        "/api/v1/me/consent/analytics/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert granted.status_code == 200, granted.json
    path = Path(runtime.settings.chain_checkpoint_dir) / "consent.jwsl"
    before = path.read_text().splitlines()
    with tamper_connection(app) as connection:
        connection.execute(
            text("DELETE FROM consent_records WHERE id = :id"), {"id": withdrawal.id}
        )
        connection.execute(
            text("DELETE FROM chain_heads WHERE name = :n"),
            {"n": f"consent:{withdrawal.user_id}"},
        )
    register(client, mailbox, sms)  # another account's records arrive afterwards

    refused = app.test_cli_runner().invoke(args=["chain-seal"])
    assert refused.exit_code == 1, refused.output
    assert f"account {withdrawal.user_id}" in refused.output
    later = [r for r in rows(app, ConsentRecord) if r.id > withdrawal.id]
    assert {r.seal is None for r in later if r.user_id == withdrawal.user_id} == {True}
    assert {r.seal is not None for r in later if r.user_id != withdrawal.user_id} == {True}
    after = path.read_text().splitlines()
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert verify(app, "consent").exit_code == 1


def test_a_head_the_key_did_not_vouch_for_is_not_extended(app, client, mailbox, sms):
    """Resetting the head and letting the owner's next decision write over it
    must not launder the gap: the service refuses to extend that chain."""
    withdrawal, token = withdraw_analytics_after_the_seal(app, client, mailbox, sms)
    with tamper_connection(app) as connection:
        connection.execute(
            text("DELETE FROM consent_records WHERE id = :id"), {"id": withdrawal.id}
        )
        connection.execute(
            text("UPDATE chain_heads SET last_hash = :h WHERE name = :n"),
            {"h": withdrawal.prev_hash, "n": f"consent:{withdrawal.user_id}"},
        )
    again = client.post(
        "/api/v1/me/consent/analytics/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert again.status_code == 503, again.json
    assert again.json["type"].endswith("ledger-unavailable")
    assert verify(app, "consent").exit_code == 1


def test_the_worker_seals_new_rows_within_seconds(app, client, mailbox, sms, settings, tmp_path):
    """`privid worker` seals what is new every PRIVID_CHAIN_SEAL_INTERVAL_SECONDS
    and appends a checkpoint, so audit events (which carry no link keyless
    checks could follow) are protected from deletion seconds after they are
    written, not at the next cron run."""
    import subprocess
    from pathlib import Path

    from tests.helpers import privid_command, privid_env, stop_process

    person, _ = register(client, mailbox, sms)
    assert verify(app, "audit").exit_code == 0
    folder = Path(settings.chain_checkpoint_dir)
    lines_before = len((folder / "audit.jwsl").read_text().splitlines())
    first_new = max(e.id for e in rows(app, AuditEvent)) + 1
    failed = login(client, person.email, "wrong-wrong-wrong")
    assert failed.status_code == 401
    assert any(e.id >= first_new for e in rows(app, AuditEvent))

    env = privid_env(settings, CHAIN_SEAL_INTERVAL_SECONDS="0.5")
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [privid_command(), "worker"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(e.seal is not None for e in rows(app, AuditEvent)):
                break
            assert worker.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        stop_process(worker)
    assert all(e.seal is not None for e in rows(app, AuditEvent)), log.read_text()
    assert len((folder / "audit.jwsl").read_text().splitlines()) > lines_before

    with tamper_connection(app) as connection:
        connection.execute(text("DELETE FROM audit_events WHERE id >= :id"), {"id": first_new})
    result = verify(app, "audit")
    assert result.exit_code == 1, result.output
    assert "missing" in result.output


@on_postgres
def test_sealing_while_accounts_decide_never_sees_a_false_gap(app, client, mailbox, sms):
    """The worker seals every few seconds while requests append: its checks
    read heads and records in one snapshot, so an append that commits halfway
    through never looks like a gap. Races on PostgreSQL (SQLite has one writer
    at a time, so nothing interleaves there)."""
    from app.cli import unit_of_work
    from app.sealer import LedgerSealer
    from app.services.context import RequestContext

    people = [register(client, mailbox, sms)[1] for _ in range(4)]
    with app.extensions["privid.session_factory"]() as db:
        user_ids = [db.get(SessionRow, s["session_id"]).user_id for s in people]
    stop = threading.Event()
    barrier = threading.Barrier(len(user_ids) + 1)
    refusals: list[str] = []
    errors: list[BaseException] = []
    seals_while_deciding: list[int] = []

    def decide(user_id: str) -> None:
        context = RequestContext.from_raw("198.51.100.7", "test", b"k" * 32)
        barrier.wait(20)
        try:
            for _ in range(8):
                with app.app_context(), unit_of_work() as svc:
                    svc.consent.grant(user_id, "analytics", POLICY_VERSION, context)
                with app.app_context(), unit_of_work() as svc:
                    svc.consent.withdraw(user_id, "analytics", context)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def seal() -> None:
        sealer = LedgerSealer.for_app(app)
        barrier.wait(20)
        while not stop.is_set():
            report = sealer.run_once()
            refusals.extend(report.refused.values())
            seals_while_deciding.extend(s.seq for s in report.sealed.get("consent", []))

    threads = [threading.Thread(target=decide, args=(u,)) for u in user_ids]
    sealing = threading.Thread(target=seal)
    for thread in (*threads, sealing):
        thread.start()
    for thread in threads:
        thread.join(120)
    stop.set()
    sealing.join(60)
    assert errors == [] and refusals == []
    assert len(seals_while_deciding) >= 2, "the sealer never ran among the decisions"
    final = LedgerSealer.for_app(app).run_once()
    assert final.refused == {}
    assert all(r.seal is not None for r in rows(app, ConsentRecord))
    assert verify(app, "consent").exit_code == 0
