"""Flows a fault test keeps going through the HTTP API while a server fails,
one request per step (tests/load.py runs them). Each keeps what it was told
was done, and what it cannot know: a request cut off without an answer may or
may not have been committed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from tests.fakes import CODE_RE, Mailbox, SmsOutbox
from tests.helpers import POLICY_VERSION, baseline_consent, bearer, new_person
from tests.load import REQUEST_TIMEOUT

CODE_WAIT_SECONDS = 3.0


def _wait_for_code(text_of: Callable[[], str | None]) -> str | None:
    deadline = time.monotonic() + CODE_WAIT_SECONDS
    while time.monotonic() < deadline:
        found = CODE_RE.search(text_of() or "")
        if found:
            return found.group(1)
        time.sleep(0.05)
    return None


class Registrations:
    """Sign-ups: start, the email code, the phone code (which creates the
    account and its session). A step refused with a 503 is asked again; a code
    that never comes, or any other refusal, starts a new person. Codes are read
    from the fakes: ``Mailbox.to`` runs a worker pass first when the test's app
    delivers, else only looks (a `privid worker` process delivers)."""

    def __init__(self, base: str, mailbox: Mailbox, sms: SmsOutbox) -> None:
        self.base, self.mailbox, self.sms = base, mailbox, sms
        self.stage, self.person, self.flow = "start", new_person(), ""
        self.created = 0  # accounts answered 201
        self.maybe = 0  # phone codes cut off without an answer

    def step(self) -> requests.Response:
        if self.stage == "email":
            code = _wait_for_code(lambda: self._mail_text(self.person.email))
            if code is not None:
                return self._verify("email", code)
        elif self.stage == "phone":
            code = _wait_for_code(lambda: self._sms_text(self.person.phone))
            if code is not None:
                return self._verify("phone", code)
        self.stage, self.person = "start", new_person()
        body = {"email": self.person.email, "phone": self.person.phone,
                "full_name": self.person.full_name, "password": self.person.password,
                "consent": baseline_consent()}  # fmt: skip
        answer = requests.post(
            f"{self.base}/api/v1/registration", json=body, timeout=REQUEST_TIMEOUT
        )
        if answer.status_code == 202:
            self.stage, self.flow = "email", answer.json()["flow_id"]
        return answer

    def _verify(self, channel: str, code: str) -> requests.Response:
        body = {"channel": channel, "code": code, "token_delivery": "bearer"}
        try:
            answer = requests.post(
                f"{self.base}/api/v1/registration/{self.flow}/verify", json=body,
                timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        except requests.RequestException:
            self.maybe += channel == "phone"
            self.stage = "start"
            raise
        if channel == "email" and answer.status_code == 200:
            self.stage = "phone"
        elif channel == "phone" and answer.status_code == 201:
            self.stage, self.created = "start", self.created + 1
        elif answer.status_code != 503:
            self.stage = "start"
        return answer

    def _mail_text(self, address: str) -> str | None:
        found = self.mailbox.to(address)
        return str(found[-1].get_payload(decode=True).decode()) if found else None

    def _sms_text(self, number: str) -> str | None:
        found = self.sms.to(number)
        return found[-1]["text"] if found else None


class ConsentToggles:
    """One account grants and withdraws analytics in turn. After a change cut
    off without an answer it reads its decisions first, to know where it is."""

    PURPOSE = "analytics"

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.granted: bool | None = None  # None: not known, read it first
        self.recorded = 0  # changes answered 200
        self.maybe = 0  # changes cut off without an answer

    def step(self) -> requests.Response:
        headers = bearer(self.token)
        if self.granted is None:
            answer = requests.get(
                f"{self.base}/api/v1/me/consent", headers=headers, timeout=REQUEST_TIMEOUT
            )
            if answer.status_code == 200:
                self.granted = self._granted(answer.json())
            return answer
        action = "withdraw" if self.granted else "grant"
        try:
            answer = requests.post(
                f"{self.base}/api/v1/me/consent/{self.PURPOSE}/{action}",
                json={"policy_version": POLICY_VERSION} if action == "grant" else None,
                headers=headers, timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        except requests.RequestException:
            self.granted, self.maybe = None, self.maybe + 1
            raise
        if answer.status_code == 200:
            self.granted, self.recorded = not self.granted, self.recorded + 1
        return answer

    def _granted(self, overview: dict[str, Any]) -> bool:
        decisions = [d for d in overview["decisions"] if d["purpose"] == self.PURPOSE]
        return bool(decisions) and decisions[-1]["decision"] == "granted"


class Refreshes:
    """A relying party rotating its refresh token at the token endpoint; it
    keeps the old one until an answer gives it a new one. (A rotation cut off
    without an answer would leave it holding a spent token, and presenting
    that again revokes the grant, as it must; so no test cuts this one.)"""

    def __init__(self, base: str, basic_auth: dict[str, str], refresh_token: str) -> None:
        self.base, self.basic, self.token = base, basic_auth, refresh_token

    def step(self) -> requests.Response:
        form = {"grant_type": "refresh_token", "refresh_token": self.token}
        answer = requests.post(
            f"{self.base}/oauth/token", data=form, headers=self.basic, timeout=REQUEST_TIMEOUT
        )
        if answer.status_code == 200:
            self.token = answer.json()["refresh_token"]
        return answer
