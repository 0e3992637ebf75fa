"""Email over SMTP (smtplib), optionally with STARTTLS and credentials."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from .messages import DeliveryError, OutgoingEmail


class SmtpEmailSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 10.0,
        ca_file: str = "",
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._starttls, self._username, self._password = starttls, username, password
        self._timeout = timeout
        # A private relay's CA may be given; otherwise the system trust store.
        self._ca_file = ca_file or None

    def send(self, message: OutgoingEmail) -> None:
        email = EmailMessage()
        email["From"] = self._sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Message-ID"] = make_msgid(domain="privid")
        email.set_content(message.body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self._ca_file))
                if self._username:
                    smtp.login(self._username, self._password)
                # The envelope names the recipient we validated: send_message would
                # otherwise re-read it from the To header, which it decodes.
                smtp.send_message(email, to_addrs=[message.to])
        except (OSError, smtplib.SMTPException) as exc:
            # The exception text can quote the recipient; keep only its class.
            raise DeliveryError(f"SMTP delivery failed: {type(exc).__name__}") from None
