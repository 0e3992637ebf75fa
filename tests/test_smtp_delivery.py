"""The SMTP adapter against a real aiosmtpd server: STARTTLS with a verified
certificate, AUTH, and failures that carry no personal data."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.adapters.messages import DeliveryError, OutgoingEmail
from app.adapters.smtp import SmtpEmailSender
from app.cli import unit_of_work
from app.services.outbox import OutboxService
from tests.fakes import Mailbox, free_port

USER, PASSWORD = "relay-user", "relay-secret"


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(),
        auth_data.password.decode(),
    ) == (USER, PASSWORD)
    return AuthResult(success=ok)


@pytest.fixture
def tls_relay(tmp_path):
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    yield mailbox, port, str(cert_path)
    controller.stop()


def _sender(port, ca_file, **overrides):
    values = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "privid <no-reply@example.com>",
        "starttls": True,
        "username": USER,
        "password": PASSWORD,
        "timeout": 5,
        "ca_file": ca_file,
    }
    values.update(overrides)
    return SmtpEmailSender(**values)


def test_starttls_and_auth_deliver(tls_relay):
    mailbox, port, ca_file = tls_relay
    _sender(port, ca_file).send(OutgoingEmail("ada@example.com", "Hello", "Body 123456"))
    message = mailbox.wait_for("ada@example.com")
    assert message["Subject"] == "Hello"
    assert message["From"] == "privid <no-reply@example.com>"


def test_an_untrusted_certificate_is_refused(tls_relay):
    _, port, _ = tls_relay
    with pytest.raises(DeliveryError) as caught:
        _sender(port, "").send(OutgoingEmail("ada@example.com", "Hello", "Body"))
    assert "ada@example.com" not in str(caught.value)


def test_wrong_credentials_fail_without_quoting_the_recipient(tls_relay):
    mailbox, port, ca_file = tls_relay
    with pytest.raises(DeliveryError) as caught:
        _sender(port, ca_file, password="wrong").send(
            OutgoingEmail("ada@example.com", "Hello", "Body")
        )
    assert "ada@example.com" not in str(caught.value)
    assert mailbox.to("ada@example.com") == []


def test_a_down_mail_server_is_logged_without_personal_data(app, runtime, caplog):
    with app.app_context(), unit_of_work() as svc:
        svc.notifier.code_by_email("grace@example.com", "654321", "login_sms", 10, user_id=None)
    port = free_port()  # nothing listens here
    sender = SmtpEmailSender(host="127.0.0.1", port=port, sender="x@example.com", timeout=2)
    with caplog.at_level(logging.WARNING), app.app_context(), unit_of_work() as svc:
        report = OutboxService(
            svc.db, runtime.clock, svc.vault, runtime.key_ring, sender, runtime.sms_sender,
            runtime.push_sender, max_attempts=3, claim_seconds=60,
        ).deliver_due(10)  # fmt: skip
    assert report.retrying == 1
    assert "not delivered: DeliveryError" in caplog.text
    assert "grace@example.com" not in caplog.text and "654321" not in caplog.text
