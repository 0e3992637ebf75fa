"""Wiring: the app-wide collaborators, and the services of one unit of work."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from limits.storage import Storage
from sqlalchemy.orm import Session as DbSession

from app.adapters.http_post import HttpPoster, OutgoingPost, StdlibPoster
from app.adapters.messages import EmailSender, SmsSender
from app.adapters.push import LoggingPushSender, PushSender
from app.clock import Clock
from app.security.blind_index import BlindIndex
from app.security.dpop import DpopVerifier
from app.security.envelope import KeyRing
from app.security.passwords import Argon2Passwords, PasswordPolicy
from app.security.signing import Signer
from app.security.tickets import Tickets
from app.security.tokens import CodeHasher, derive_key
from app.services.account import AccountService
from app.services.audit import AuditTrail
from app.services.cancellation import AccountEnding, CancellationService
from app.services.challenges import ChallengeStore
from app.services.checkpoints import CheckpointStore
from app.services.codes import CodeRules, CodeService
from app.services.consent import ConsentService, WithdrawalEffects
from app.services.credentials import CredentialState
from app.services.devices import DeviceService
from app.services.directory import Directory
from app.services.dpop import DpopService
from app.services.export import ExportService
from app.services.incidents import IncidentService
from app.services.login import LoginService
from app.services.notifications import Notifier
from app.services.outbox import OutboxService
from app.services.policies import PolicyService
from app.services.purposes import Catalogue
from app.services.registration import RegistrationService
from app.services.retention import Purge, RetentionRules, RetentionService
from app.services.rights import RightsService
from app.services.safeguards import Safeguards
from app.services.sealed_messages import Deferred
from app.services.second_factor import SecondFactorChanges
from app.services.sessions import SessionRules, SessionService
from app.services.sign_in_tickets import SignInTickets
from app.services.signin import SignInCompleter
from app.services.stepup import StepUpService
from app.services.throttle import AccountThrottle, ThrottleRules
from app.services.totp import TotpService
from app.services.vault import PersonalDataVault
from app.services.webauthn import WebAuthnService
from app.services.working_days import WorkingCalendar
from app.settings import Settings

# Time to type the second factor after the password.
SECOND_FACTOR_TICKET_SECONDS = 300

# A capability's follow-up to sessions ending (their ids), in the same unit of work.
SessionEndListener = Callable[["Services", Sequence[str]], None]
# A capability's renderer of its deferred outbox messages, at send time.
DeferredRenderer = Callable[["Services", Deferred], OutgoingPost]


@dataclass
class Runtime:
    """Built once per app: keys, hashers, senders (used by the outbox worker
    only), clock."""

    settings: Settings
    clock: Clock
    key_ring: KeyRing
    blind_index: BlindIndex
    code_hasher: CodeHasher
    passwords: Argon2Passwords
    password_policy: PasswordPolicy
    email_sender: EmailSender
    sms_sender: SmsSender
    catalogue: Catalogue
    signer: Signer
    withdrawal_effects: WithdrawalEffects
    calendar: WorkingCalendar
    # DPoP jti replay cache: the rate-limit storage, shared by every worker.
    replay_cache: Storage
    dpop_verifier: DpopVerifier
    # Signed checkpoints of the ledgers' chains, outside the database.
    checkpoints: CheckpointStore
    # No push provider is integrated yet; the incident API refuses the push
    # channel in production while this stand-in is in place.
    push_sender: PushSender = field(default_factory=LoggingPushSender)
    # Form POSTs to other servers (back-channel logout), sent by the outbox.
    http_poster: HttpPoster = field(default_factory=StdlibPoster)
    # From the installed capabilities (app/capabilities.py).
    session_end_listeners: Sequence[SessionEndListener] = ()
    outbox_renderers: Mapping[str, DeferredRenderer] = field(default_factory=dict)
    # What installed capabilities end when an account is cancelled.
    account_endings: tuple[AccountEnding, ...] = ()
    # What installed capabilities purge of their own tables on a retention run.
    retention_purges: tuple[Purge, ...] = ()
    # Process-local caches of installed capabilities, by name; each says how
    # it stays correct when another process changes what it copied.
    caches: dict[str, Any] = field(default_factory=dict)


class Services:
    """The services of one unit of work (a request, a CLI command), sharing one
    database session. Services flush; whoever owns the unit of work commits."""

    def __init__(self, db: DbSession, runtime: Runtime) -> None:
        self.db = db
        self.runtime = runtime

    @cached_property
    def audit(self) -> AuditTrail:
        rt = self.runtime
        return AuditTrail(self.db, rt.clock, rt.settings.chain_key_bytes, rt.checkpoints)

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier(self.db, self.runtime.clock, self.runtime.key_ring)

    @cached_property
    def directory(self) -> Directory:
        rt = self.runtime
        return Directory(self.db, rt.blind_index, rt.settings.default_phone_region)

    @cached_property
    def vault(self) -> PersonalDataVault:
        return PersonalDataVault(self.db, self.runtime.key_ring, self.runtime.clock)

    @cached_property
    def codes(self) -> CodeService:
        s = self.runtime.settings
        rules = CodeRules(s.code_ttl_seconds, s.code_max_attempts, s.code_resend_cooldown_seconds)
        return CodeService(self.db, self.runtime.code_hasher, self.runtime.clock, rules)

    @cached_property
    def throttle(self) -> AccountThrottle:
        s = self.runtime.settings
        cap = s.login_account_max_failures
        rules = ThrottleRules(s.login_free_attempts, s.login_max_delay_seconds, cap)
        account_rules = ThrottleRules(s.login_account_free_attempts, s.login_max_delay_seconds, cap)
        return AccountThrottle(self.db, self.runtime.clock, rules, account_rules)

    @cached_property
    def sessions(self) -> SessionService:
        s = self.runtime.settings
        rules = SessionRules(s.session_idle_timeout_seconds, s.session_absolute_timeout_seconds)
        return SessionService(
            self.db, self.runtime.clock, rules, self.audit, on_ended=self._sessions_ended
        )

    def _sessions_ended(self, session_ids: Sequence[str]) -> None:
        for listener in self.runtime.session_end_listeners:
            listener(self, session_ids)

    @cached_property
    def policies(self) -> PolicyService:
        return PolicyService(self.db, self.runtime.clock, self.runtime.catalogue, self.audit)

    @cached_property
    def consent(self) -> ConsentService:
        rt = self.runtime
        return ConsentService(
            self.db,
            rt.clock,
            rt.catalogue,
            self.policies,
            rt.signer,
            rt.withdrawal_effects,
            rt.settings.chain_key_bytes,
            rt.checkpoints,
            self.safeguards,
        )

    @cached_property
    def safeguards(self) -> Safeguards:
        return Safeguards(
            self.db, self.runtime.clock, self.totp, self.vault, self.notifier, self.runtime.settings
        )

    @cached_property
    def signin(self) -> SignInCompleter:
        return SignInCompleter(self.sessions, self.consent, self.policies, self.devices)

    @cached_property
    def challenges(self) -> ChallengeStore:
        rt = self.runtime
        return ChallengeStore(self.db, rt.clock, rt.settings.webauthn_challenge_ttl_seconds)

    @cached_property
    def dpop(self) -> DpopService:
        rt = self.runtime
        return DpopService(rt.dpop_verifier, rt.replay_cache, rt.clock)

    @cached_property
    def devices(self) -> DeviceService:
        return DeviceService(
            db=self.db,
            clock=self.runtime.clock,
            consent=self.consent,
            challenges=self.challenges,
            vault=self.vault,
            notifier=self.notifier,
            audit=self.audit,
            safeguards=self.safeguards,
            sessions=self.sessions,
        )

    @cached_property
    def rights(self) -> RightsService:
        rt = self.runtime
        return RightsService(
            self.db,
            rt.clock,
            rt.calendar,
            self.audit,
            working_days=rt.settings.request_working_days,
            max_exports_per_day=rt.settings.max_exports_per_day,
        )

    @cached_property
    def export(self) -> ExportService:
        return ExportService(self.db, self.runtime.clock, self.vault)

    @cached_property
    def cancellation(self) -> CancellationService:
        rt = self.runtime
        return CancellationService(
            db=self.db,
            clock=rt.clock,
            key_ring=rt.key_ring,
            vault=self.vault,
            rights=self.rights,
            audit=self.audit,
            catalogue=rt.catalogue,
            pseudonym_key=derive_key(rt.settings.secret_key_bytes, "legal-archive-pseudonym"),
            sessions=self.sessions,
            endings=rt.account_endings,
        )

    @cached_property
    def retention(self) -> RetentionService:
        s = self.runtime.settings
        rules = RetentionRules(
            revoked_device_days=s.revoked_device_kept_days,
            idle_device_days=s.idle_device_kept_days,
        )
        return RetentionService(self.db, self.runtime.clock, rules, self.runtime.retention_purges)

    @cached_property
    def incidents(self) -> IncidentService:
        return IncidentService(self.db, self.runtime.clock, self.audit)

    @cached_property
    def outbox(self) -> OutboxService:
        rt = self.runtime
        return OutboxService(
            self.db,
            rt.clock,
            self.vault,
            rt.key_ring,
            rt.email_sender,
            rt.sms_sender,
            rt.push_sender,
            max_attempts=rt.settings.outbox_max_attempts,
            claim_seconds=rt.settings.outbox_claim_seconds,
            http=rt.http_poster,
            render=self._render_deferred,
        )

    def _render_deferred(self, message: Deferred) -> OutgoingPost:
        """KeyError when no installed capability renders it."""
        return self.runtime.outbox_renderers[message.renderer](self, message)

    @cached_property
    def registration(self) -> RegistrationService:
        rt = self.runtime
        return RegistrationService(
            db=self.db,
            clock=rt.clock,
            key_ring=rt.key_ring,
            directory=self.directory,
            passwords=rt.passwords,
            policy=rt.password_policy,
            codes=self.codes,
            vault=self.vault,
            signin=self.signin,
            consent=self.consent,
            audit=self.audit,
            notifier=self.notifier,
            throttle=self.throttle,
            flow_ttl_seconds=rt.settings.registration_flow_ttl_seconds,
        )

    @cached_property
    def second_factor(self) -> SecondFactorChanges:
        return SecondFactorChanges(self.totp, self.safeguards)

    @cached_property
    def totp(self) -> TotpService:
        rt = self.runtime
        return TotpService(self.db, rt.clock, self.vault, rt.code_hasher, self.audit)

    @cached_property
    def step_up(self) -> StepUpService:
        return StepUpService(self.account, self.totp, self.sessions, self.throttle)

    @cached_property
    def webauthn(self) -> WebAuthnService:
        rt = self.runtime
        return WebAuthnService(
            db=self.db,
            clock=rt.clock,
            settings=rt.settings,
            consent=self.consent,
            vault=self.vault,
            signin=self.signin,
            sessions=self.sessions,
            audit=self.audit,
            challenges=self.challenges,
            devices=self.devices,
            throttle=self.throttle,
            safeguards=self.safeguards,
        )

    @cached_property
    def login(self) -> LoginService:
        rt = self.runtime
        return LoginService(
            db=self.db,
            clock=rt.clock,
            directory=self.directory,
            passwords=rt.passwords,
            throttle=self.throttle,
            codes=self.codes,
            signin=self.signin,
            audit=self.audit,
            notifier=self.notifier,
            totp=self.totp,
            devices=self.devices,
            vault=self.vault,
            tickets=SignInTickets(
                self.db,
                rt.clock,
                Tickets(
                    derive_key(rt.settings.secret_key_bytes, "second-factor-ticket"),
                    "second-factor",
                    SECOND_FACTOR_TICKET_SECONDS,
                    rt.clock,
                ),
                CredentialState(
                    self.db, derive_key(rt.settings.secret_key_bytes, "credential-state")
                ),
            ),
        )

    @cached_property
    def account(self) -> AccountService:
        rt = self.runtime
        return AccountService(
            db=self.db,
            clock=rt.clock,
            directory=self.directory,
            passwords=rt.passwords,
            policy=rt.password_policy,
            throttle=self.throttle,
            codes=self.codes,
            vault=self.vault,
            sessions=self.sessions,
            audit=self.audit,
            notifier=self.notifier,
            rights=self.rights,
        )
