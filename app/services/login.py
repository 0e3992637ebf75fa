"""Signing in: password (email or phone) and phone plus SMS code."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError, invalid_code, invalid_credentials
from app.models import CodePurpose, User
from app.security.passwords import Argon2Passwords
from app.security.tickets import TicketInvalid, Tickets
from app.services.audit import AuditTrail
from app.services.codes import CodeService
from app.services.context import RequestContext
from app.services.directory import Directory
from app.services.notifications import Notifier
from app.services.sessions import Acr, Transport
from app.services.signin import SignInCompleter, SignInResult
from app.services.throttle import AccountThrottle, identifier_key, keys_of, second_factor_key
from app.services.totp import TotpService


@dataclass(frozen=True)
class SecondFactorRequired:
    """The first factor passed; the account has TOTP, so one more proof is due."""

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
        tickets: Tickets,
    ) -> None:
        self._db, self._clock, self._directory = db, clock, directory
        self._passwords, self._throttle, self._codes = passwords, throttle, codes
        self._signin, self._audit, self._notifier = signin, audit, notifier
        self._totp, self._tickets = totp, tickets

    def with_password(
        self, identifier: str, password: str, *, transport: Transport, context: RequestContext
    ) -> SignInResult | SecondFactorRequired:
        ident = self._directory.identifier(identifier)
        user = self._directory.find(ident)
        key = identifier_key(ident.index)
        try:
            self._throttle.reserve_attempt(key)
        except ServiceError:
            self._fail(user, context, "throttled", "pwd")
            raise
        password_ok = self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not password_ok or not user.is_active:
            self._fail(user, context, "invalid_credentials", "pwd")
            raise invalid_credentials()
        self._throttle.clear(*keys_of(user))
        if self._passwords.needs_rehash(user.password_hash):
            user.password_hash = self._passwords.hash(password)
        return self._succeed(user, transport, context, amr=["pwd"])

    def send_sms_code(self, phone: str, context: RequestContext) -> None:
        ident = self._directory.phone(phone)
        user = self._directory.find(ident)
        # A code row exists either way, so both paths do the same work.
        code = self._codes.issue(CodePurpose.LOGIN_SMS, ident.index, ident.index)
        if user is not None and user.is_active:
            self._notifier.code_by_sms(
                ident.value, code, CodePurpose.LOGIN_SMS, self._codes.ttl_minutes
            )

    def with_sms_code(
        self, phone: str, code: str, *, transport: Transport, context: RequestContext
    ) -> SignInResult | SecondFactorRequired:
        ident = self._directory.phone(phone)
        user = self._directory.find(ident)
        try:
            row = self._codes.check(CodePurpose.LOGIN_SMS, ident.index, code)
        except ServiceError:
            self._fail(user, context, "invalid_code", "sms")
            raise
        if user is None or not user.is_active:
            self._fail(user, context, "invalid_code", "sms")
            raise invalid_code()
        self._codes.consume(row)
        # Proving the phone is proving ownership: lift any password back-off.
        self._throttle.clear(*keys_of(user))
        return self._succeed(user, transport, context, amr=["sms"])

    def with_second_factor(
        self,
        ticket: str,
        *,
        totp_code: str | None,
        recovery_code: str | None,
        context: RequestContext,
    ) -> SignInResult:
        try:
            claims = self._tickets.open(ticket)
        except TicketInvalid:
            raise ServiceError(
                "mfa-ticket-invalid",
                401,
                "Sign in again",
                "The sign-in step has expired or is not valid. Start again.",
            ) from None
        user = self._db.get(User, str(claims.get("uid")))
        if user is None or not user.is_active:
            raise invalid_credentials()
        key = second_factor_key(user.id)
        try:
            self._throttle.reserve_attempt(key)
            if totp_code is not None:
                self._totp.verify(user.id, totp_code)
            elif recovery_code is not None:
                self._totp.use_recovery_code(user.id, recovery_code)
            else:
                raise invalid_code()
        except ServiceError:
            self._fail(user, context, "invalid_second_factor", "otp")
            raise
        self._throttle.clear(key)
        amr = [*claims["amr"], "otp", "mfa"]
        return self._succeed(
            user, Transport(claims["transport"]), context, amr=amr, acr=Acr.MULTI_FACTOR
        )

    def _succeed(
        self,
        user: User,
        transport: Transport,
        context: RequestContext,
        amr: list[str],
        acr: Acr = Acr.SINGLE_FACTOR,
    ) -> SignInResult | SecondFactorRequired:
        if acr == Acr.SINGLE_FACTOR and self._totp.is_enabled(user.id):
            self._audit.record(
                "login.second_factor_required",
                user_id=user.id,
                ip_prefix=context.ip_prefix,
                method=amr[0],
            )
            ticket = self._tickets.issue({"uid": user.id, "amr": amr, "transport": transport})
            return SecondFactorRequired(
                ticket, ["totp", "recovery_code"], self._tickets.max_age_seconds
            )
        result = self._signin.complete(user, transport=transport, amr=amr, acr=acr, context=context)
        self._audit.record(
            "login.succeeded",
            user_id=user.id,
            ip_prefix=context.ip_prefix,
            method=amr[0],
            session_id=result.issued.session.id,
            consent_pending=not result.complete,
        )
        return result

    def _fail(self, user: User | None, context: RequestContext, reason: str, method: str) -> None:
        self._audit.record(
            "login.failed",
            outcome="failure",
            user_id=user.id if user else None,
            ip_prefix=context.ip_prefix,
            method=method,
            reason=reason,
        )
