"""Signing in: password (email or phone) and phone plus SMS code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session as DbSession

from app import metrics
from app.clock import Clock
from app.errors import ServiceError, invalid_code, invalid_credentials, invalid_field
from app.models import CodePurpose, User
from app.security.passwords import Argon2Passwords
from app.services import after_sign_in
from app.services.audit import AuditTrail
from app.services.codes import CodeService, flow_subject
from app.services.context import RequestContext
from app.services.devices import DeviceService
from app.services.directory import Directory
from app.services.notifications import Notifier
from app.services.sessions import Acr, Transport
from app.services.sign_in_tickets import SignInTickets, ticket_invalid
from app.services.signin import SignInCompleter, SignInResult
from app.services.throttle import AccountThrottle
from app.services.totp import TotpService
from app.services.vault import PersonalDataVault

TOTP_METHODS = ["totp", "recovery_code"]


@dataclass(frozen=True)
class DeviceCode:
    """A code confirming a sign-in from an unbound device, and where it goes."""

    purpose: CodePurpose
    by: str  # "email" or "sms"
    # RFC 8176: "mca" (another channel confirmed it; no value names email),
    # "sms" (a code to a registered number).
    amr: str


# An account with bound devices, signing in from another one, without TOTP:
# a code to its email, or (an account without one) to its verified phone.
DEVICE_CODES = {
    "email_code": DeviceCode(CodePurpose.LOGIN_EMAIL, "email", "mca"),
    "sms_code": DeviceCode(CodePurpose.LOGIN_DEVICE_SMS, "sms", "sms"),
}


@dataclass(frozen=True)
class SecondFactorRequired:
    """The first factor passed; one more proof is due: TOTP when the account
    has it, otherwise (a sign-in from an unbound device) a code by email, or
    by SMS to an account without an email address."""

    ticket: str
    methods: list[str]
    expires_in: int


class LoginService:
    def __init__(
        self,
        *,
        db: DbSession,
        clock: Clock,
        directory: Directory,
        passwords: Argon2Passwords,
        throttle: AccountThrottle,
        codes: CodeService,
        signin: SignInCompleter,
        audit: AuditTrail,
        notifier: Notifier,
        totp: TotpService,
        devices: DeviceService,
        vault: PersonalDataVault,
        tickets: SignInTickets,
    ) -> None:
        self._db, self._clock, self._directory = db, clock, directory
        self._passwords, self._throttle, self._codes = passwords, throttle, codes
        self._signin, self._audit, self._notifier = signin, audit, notifier
        self._totp, self._tickets = totp, tickets
        self._devices, self._vault = devices, vault

    def with_password(
        self, identifier: str, password: str, *, transport: Transport, context: RequestContext
    ) -> SignInResult | SecondFactorRequired:
        user = self.prove_password(identifier, password, context)
        return self.finish(user, transport, context, amr=["pwd"])

    def prove_password(self, identifier: str, password: str, context: RequestContext) -> User:
        """The account whose identifier and password these are, under the usual
        throttles (a sign-in, or linking another way in to the account)."""
        ident = self._directory.identifier(identifier)
        user = self._directory.find(ident)
        source = self._source(user, context)
        try:
            self._throttle.reserve_password_attempt(ident.index, source)
        except ServiceError:
            self._fail(user, context, "throttled", "pwd")
            raise
        password_ok = self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not password_ok or not user.is_active:
            self._fail(user, context, "invalid_credentials", "pwd")
            raise invalid_credentials()
        self._throttle.ownership_proven(user, source)
        if user.password_hash and self._passwords.needs_rehash(user.password_hash):
            user.password_hash = self._passwords.hash(password)
        return user

    def send_sms_code(self, phone: str, context: RequestContext) -> str:
        """Sends a code if the number has an account; returns the flow handle
        that must come back with the code. The handle and the work are the same
        either way, so the answer tells nobody whether the number is registered."""
        ident = self._directory.phone(phone)
        user = self._directory.find(ident)
        # A code row and an outbox row exist either way, so both paths do the
        # same work; only the worker, off the request, knows nothing goes out.
        flow, code = self._codes.issue_for_flow(
            CodePurpose.LOGIN_SMS, ident.index, user_id=user.id if user else None
        )
        if user is not None and user.is_active:
            self._notifier.code_by_sms(
                ident.value, code, CodePurpose.LOGIN_SMS, self._codes.ttl_minutes, user_id=user.id
            )
        else:
            self._notifier.nothing_by_sms()
        return flow

    def with_sms_code(
        self,
        phone: str,
        flow: str,
        code: str,
        *,
        transport: Transport,
        context: RequestContext,
    ) -> SignInResult | SecondFactorRequired:
        user = self.prove_sms_code(phone, flow, code, context)
        return self.finish(user, transport, context, amr=["sms"])

    def prove_sms_code(self, phone: str, flow: str, code: str, context: RequestContext) -> User:
        """The account of this phone, proven by the code sent for ``flow``."""
        ident = self._directory.phone(phone)
        user = self._directory.find(ident)
        try:
            # The code's tries belong to the flow that asked for it: someone
            # typing junk codes for this phone cannot spend the owner's.
            row = self._codes.check_flow(
                CodePurpose.LOGIN_SMS,
                flow_subject(flow),
                ident.index,
                code,
                user_id=user.id if user else None,
            )
        except ServiceError:
            self._fail(user, context, "invalid_code", "sms")
            raise
        if user is None or not user.is_active:
            self._fail(user, context, "invalid_code", "sms")
            raise invalid_code()
        self._codes.consume(row)
        # Proving the phone is proving ownership: the run of password failures ends.
        self._throttle.ownership_proven(user, self._source(user, context))
        return user

    def send_device_code(self, ticket: str, method: str) -> None:
        """The second proof for an unbound device: a code to the account's email
        (``email_code``) or phone (``sms_code``), whichever the ticket asks for."""
        user, claims = self._tickets.open(ticket)
        device_code = DEVICE_CODES.get(method)
        if device_code is None or method not in claims.get("methods", TOTP_METHODS):
            by = "an SMS code" if method == "sms_code" else "an email code"
            raise invalid_field("#/ticket", f"This sign-in does not use {by}.")
        profile = self._vault.profile(user)
        to, index = (
            (profile.email, user.email_index)
            if device_code.by == "email"
            else (profile.phone, user.phone_index)
        )
        if to is None or index is None:  # the email address was removed since
            raise invalid_field("#/ticket", "This sign-in cannot use that code any more.")
        code = self._codes.issue(device_code.purpose, user.id, index, user_id=user.id)
        notifier = self._notifier
        send = notifier.code_by_email if device_code.by == "email" else notifier.code_by_sms
        send(to, code, device_code.purpose, self._codes.ttl_minutes, user_id=user.id)

    def with_second_factor(
        self,
        ticket: str,
        *,
        totp_code: str | None,
        recovery_code: str | None,
        email_code: str | None,
        sms_code: str | None = None,
        context: RequestContext,
    ) -> SignInResult | SecondFactorRequired:
        # The user row stays locked to the end: a second finish of this ticket,
        # or a password reset, waits for this one and then sees it.
        user, claims = self._tickets.open(ticket)
        # The same client must finish: a key-bound sign-in needs the same key.
        if claims.get("jkt") != context.device.dpop_jkt:
            raise ticket_invalid()
        methods = claims.get("methods", TOTP_METHODS)
        # Per (account, source), and account-wide from networks: a stranger
        # with the password cannot lock the owner's device out of the second
        # factor, and guesses at a 6-digit code stay bounded.
        source = self._source(user, context)
        attempted = methods[0]
        device_code = next(
            (
                (method, code)
                for method, code in (("email_code", email_code), ("sms_code", sms_code))
                if code is not None and method in methods
            ),
            None,
        )
        try:
            self._throttle.reserve_second_factor(user.id, source)
            if totp_code is not None and "totp" in methods:
                attempted = "totp"
                self._totp.verify(user.id, totp_code)
                amr, acr = ["otp", "mfa"], Acr.MULTI_FACTOR
            elif recovery_code is not None and "recovery_code" in methods:
                attempted = "recovery_code"
                self._totp.use_recovery_code(user.id, recovery_code)
                amr, acr = ["otp", "mfa"], Acr.MULTI_FACTOR
            elif device_code is not None:
                attempted, code = device_code
                expected = DEVICE_CODES[attempted]
                row = self._codes.check(expected.purpose, user.id, code, user_id=user.id)
                self._codes.consume(row)
                # Another channel confirmed it. Not a second factor: the same
                # mailbox, or phone, can reset the password.
                amr, acr = [expected.amr], Acr.SINGLE_FACTOR
            else:
                raise invalid_code()
        except ServiceError:
            self._fail(user, context, "invalid_second_factor", attempted)
            raise
        self._throttle.second_factor_proven(user.id, source)
        self._tickets.spend(claims)
        return self.finish(
            user,
            Transport(claims["transport"]),
            context,
            amr=[*claims["amr"], *amr],
            acr=acr,
            device_confirmed=True,
            then=claims.get("then"),
        )

    def finish(
        self,
        user: User,
        transport: Transport,
        context: RequestContext,
        amr: list[str],
        acr: Acr = Acr.SINGLE_FACTOR,
        device_confirmed: bool = False,
        then: after_sign_in.Then | list[Any] | None = None,
    ) -> SignInResult | SecondFactorRequired:
        """A first factor passed (any method, WeChat's too): the second factor
        the account still owes, or the sign-in completed. ``then`` is written
        only once it completes (app/services/after_sign_in.py)."""
        methods = self._second_factor_methods(user, amr, acr, context, device_confirmed)
        if methods:
            metrics.sign_in(amr[0], "second_factor_required")
            self._audit.record(
                "login.second_factor_required",
                user_id=user.id,
                ip_prefix=context.ip_prefix,
                method=amr[0],
                offered=methods,
            )
            ticket = self._tickets.issue(
                user,
                {
                    "amr": amr,
                    "transport": transport,
                    "methods": methods,
                    "jkt": context.device.dpop_jkt,
                    **({"then": list(then)} if then is not None else {}),
                },
            )
            return SecondFactorRequired(ticket, methods, self._tickets.max_age_seconds)
        after_sign_in.run(then, user, context)
        result = self._signin.complete(user, transport=transport, amr=amr, acr=acr, context=context)
        metrics.sign_in(amr[0], "success")
        self._audit.record(
            "login.succeeded",
            user_id=user.id,
            ip_prefix=context.ip_prefix,
            method=amr[0],
            session_id=result.issued.session.id,
            consent_pending=not result.complete,
        )
        return result

    def _second_factor_methods(
        self, user: User, amr: list[str], acr: Acr, context: RequestContext, device_confirmed: bool
    ) -> list[str]:
        """What a single-factor sign-in still owes: TOTP if the account has it
        (a code by email or SMS would be a weaker substitute), else a code when
        the account has bound devices and this is not one of them."""
        if acr != Acr.SINGLE_FACTOR:
            return []
        if self._totp.is_enabled(user.id):
            return TOTP_METHODS
        if device_confirmed or not self._devices.requires_step_up(user.id, context.device):
            return []
        # The email when there is one; else the verified phone every account has,
        # unless this very sign-in just proved it with an SMS code (another
        # code to the same phone would prove nothing more).
        if user.email_index is not None:
            return ["email_code"]
        return [] if "sms" in amr else ["sms_code"]

    def _source(self, user: User | None, context: RequestContext) -> str:
        # The same device lookups whether or not there is an account.
        return self._devices.source_of(user, context)

    def _fail(self, user: User | None, context: RequestContext, reason: str, method: str) -> None:
        metrics.sign_in(method, "throttled" if reason == "throttled" else "failure")
        self._audit.record(
            "login.failed",
            outcome="failure",
            user_id=user.id if user else None,
            ip_prefix=context.ip_prefix,
            method=method,
            reason=reason,
        )
