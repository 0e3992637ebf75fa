"""The signed-in user's own account: profile, password, email and phone changes,
and password reset for users who cannot sign in."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError, invalid_code, invalid_field, not_found
from app.models import CodePurpose, DataSubjectRequest, RequestKind, Session, User
from app.security.passwords import Argon2Passwords, PasswordPolicy, PersonalData
from app.services.audit import AuditTrail
from app.services.codes import CodeService, flow_subject
from app.services.context import RequestContext
from app.services.directory import EMAIL, Directory, Identifier
from app.services.identifiers import normalise_full_name
from app.services.notifications import Notifier
from app.services.registration import check_password
from app.services.rights import RightsService
from app.services.sessions import SessionService
from app.services.throttle import AccountThrottle, account_key
from app.services.vault import PersonalDataVault, Profile
from app.services.ways_in import PASSWORD, require_another

CHANGE_PURPOSE = {EMAIL: CodePurpose.CHANGE_EMAIL, "phone": CodePurpose.CHANGE_PHONE}


def wrong_current_password() -> ServiceError:
    error = invalid_field("#/current_password", "The current password is not correct.")
    error.keep_changes = True  # the failed try counts against the throttle
    return error


class AccountService:
    def __init__(
        self,
        *,
        db: DbSession,
        clock: Clock,
        directory: Directory,
        passwords: Argon2Passwords,
        policy: PasswordPolicy,
        throttle: AccountThrottle,
        codes: CodeService,
        vault: PersonalDataVault,
        sessions: SessionService,
        audit: AuditTrail,
        notifier: Notifier,
        rights: RightsService,
    ) -> None:
        self._rights = rights
        self._db, self._clock, self._directory = db, clock, directory
        self._passwords, self._policy, self._throttle = passwords, policy, throttle
        self._codes, self._vault, self._sessions = codes, vault, sessions
        self._audit, self._notifier = audit, notifier

    def profile(self, user: User) -> Profile:
        return self._vault.profile(user)

    def _personal(self, profile: Profile) -> PersonalData:
        national = self._directory.phone(profile.phone).phone
        return PersonalData(
            profile.email or "",
            profile.phone,
            national.national if national else "",
            profile.full_name,
        )

    def require_password(self, user: User, password: str) -> None:
        key = account_key(user.id)
        self._throttle.reserve_attempt(key)
        if not self._passwords.verify(user.password_hash, password):
            raise wrong_current_password()
        self._throttle.clear(key)

    def confirm_with_password(self, user: User, current_password: str | None) -> None:
        """The current password, for an account that has one; an account without
        one has only the recent sign-in the endpoint's step-up demanded."""
        if user.password_hash is not None and current_password is None:
            raise ServiceError(
                "current-password-required",
                403,
                "Confirm with your password",
                "This account has a password: send it as current_password.",
            )
        if current_password is not None:
            self.require_password(user, current_password)

    def _set_password(self, user: User, new_password: str) -> Profile:
        profile = self._vault.profile(user)
        check_password(
            self._policy, new_password, self._personal(profile), pointer="#/new_password"
        )
        user.password_hash = self._passwords.hash(new_password)
        user.password_changed_at = self._clock.now()
        return profile

    def change_password(
        self, user: User, session: Session, current: str, new: str, context: RequestContext
    ) -> int:
        """Returns how many other sessions were signed out."""
        self.require_password(user, current)
        profile = self._set_password(user, new)
        ended = self._sessions.revoke_all(user.id, "password_changed", keep=session.id)
        self._audit.record(
            "password.changed", user_id=user.id, ip_prefix=context.ip_prefix, sessions_ended=ended
        )
        self._notifier.password_changed(profile, user_id=user.id)
        return ended

    def add_password(self, user: User, new: str, context: RequestContext) -> None:
        """A first password, for an account that has none (made through WeChat)."""
        self._lock(user.id)
        if user.password_hash is not None:
            raise ServiceError(
                "password-exists",
                409,
                "The account has a password",
                "Change the password instead (it needs the current one).",
            )
        profile = self._set_password(user, new)
        self._audit.record("password.added", user_id=user.id, ip_prefix=context.ip_prefix)
        self._notifier.password_changed(profile, user_id=user.id)

    def remove_password(self, user: User, current: str, context: RequestContext) -> None:
        """Sign in without a password from now on: refused while it is the
        account's last way in."""
        self._lock(user.id)
        if user.password_hash is None:
            raise not_found("A password")
        self.require_password(user, current)
        require_another(self._db, user.id, {PASSWORD})
        user.password_hash = None
        user.password_changed_at = None
        self._db.flush()
        self._audit.record("password.removed", user_id=user.id, ip_prefix=context.ip_prefix)
        self._notifier.password_changed(self._vault.profile(user), user_id=user.id)

    def _lock(self, user_id: str) -> None:
        self._db.execute(select(User.id).where(User.id == user_id).with_for_update()).first()

    def change_full_name(
        self, user: User, new_name: str, current_password: str | None
    ) -> DataSubjectRequest:
        """A correction of personal data is a rectification request, answered at
        once. Behind a recent sign-in (CREDENTIAL_CHANGE), as an email change."""
        name = normalise_full_name(new_name)
        self.confirm_with_password(user, current_password)
        cipher = self._vault.cipher_for(user.id)
        user.full_name_encrypted = cipher.encrypt("full_name", name)
        self._db.flush()
        self._audit.record("full_name.changed", user_id=user.id)
        return self._rights.answered_at_once(
            user.id, RequestKind.RECTIFICATION, "Full name corrected.", {"field": "full_name"}
        )

    # -- password reset -----------------------------------------------------

    def start_reset(self, identifier: str, context: RequestContext) -> str:
        """Sends a reset code if the identifier has an account; returns the flow
        handle the confirmation must bring, the same either way."""
        ident = self._directory.identifier(identifier)
        user = self._directory.find(ident)
        flow, code = self._codes.issue_for_flow(
            CodePurpose.PASSWORD_RESET, ident.index, user_id=user.id if user else None
        )
        if user is None or not user.is_active:
            # Same work, same answer: an outbox row the worker discards.
            if ident.kind == EMAIL:
                self._notifier.nothing_by_email()
            else:
                self._notifier.nothing_by_sms()
            return flow
        self._send_code(ident, code, CodePurpose.PASSWORD_RESET, user.id)
        return flow

    def finish_reset(
        self, identifier: str, flow: str, code: str, new_password: str, context: RequestContext
    ) -> None:
        ident = self._directory.identifier(identifier)
        user = self._directory.find(ident)
        # Only the requester's flow can spend this code's tries, and only for
        # the account it was issued for.
        row = self._codes.check_flow(
            CodePurpose.PASSWORD_RESET,
            flow_subject(flow),
            ident.index,
            code,
            user_id=user.id if user else None,
        )
        if user is None or not user.is_active:
            raise invalid_code()
        # A rejected password leaves the code usable for a better one.
        profile = self._set_password(user, new_password)
        self._codes.consume(row)
        ended = self._sessions.revoke_all(user.id, "password_reset")
        # The guessed-at password is gone: every failure count goes with it.
        self._throttle.forget_account(user)
        self._audit.record(
            "password.reset", user_id=user.id, ip_prefix=context.ip_prefix, sessions_ended=ended
        )
        self._notifier.password_changed(profile, user_id=user.id)

    # -- changing email or phone ---------------------------------------------

    def start_contact_change(
        self, user: User, kind: str, new_value: str, current_password: str | None
    ) -> None:
        """Only behind a recent sign-in (CREDENTIAL_CHANGE): an account without
        a password has nothing else to show."""
        pointer = f"#/{kind}"
        ident = (
            self._directory.email(new_value, pointer)
            if kind == EMAIL
            else (self._directory.phone(new_value, pointer))
        )
        current_index = user.email_index if kind == EMAIL else user.phone_index
        if ident.index == current_index:
            raise invalid_field(pointer, f"This is already your {kind}.")
        self.confirm_with_password(user, current_password)
        cipher = self._vault.cipher_for(user.id)
        code = self._codes.issue(
            CHANGE_PURPOSE[kind],
            user.id,
            ident.index,
            pending_value_encrypted=cipher.encrypt(f"pending_{kind}", ident.value),
            user_id=user.id,
        )
        holder = self._directory.find(ident)
        if holder is not None:
            # Taken by another account: tell that address (its account's), not this user.
            if kind == EMAIL:
                self._notifier.address_in_use_by_email(ident.value, user_id=holder.id)
            else:
                self._notifier.address_in_use_by_sms(ident.value, user_id=holder.id)
            return
        self._send_code(ident, code, CHANGE_PURPOSE[kind], user.id)

    def finish_contact_change(
        self, user: User, kind: str, code: str, context: RequestContext
    ) -> None:
        row = self._codes.check(CHANGE_PURPOSE[kind], user.id, code, user_id=user.id)
        column = User.email_index if kind == EMAIL else User.phone_index
        ident_taken = self._db.execute(
            select(User.id).where(column == row.destination_index)
        ).first()
        if ident_taken is not None or row.pending_value_encrypted is None:
            row.failed_attempts += 1
            raise invalid_code()
        self._codes.consume(row)
        cipher = self._vault.cipher_for(user.id)
        previous = self._vault.profile(user)
        new_value = cipher.decrypt(f"pending_{kind}", row.pending_value_encrypted)
        now = self._clock.now()
        try:
            # The unique index settles a race with another account claiming it.
            with self._db.begin_nested():
                # The old address's failed sign-ins are about nobody from now on.
                old_index = user.email_index if kind == EMAIL else user.phone_index
                if old_index is not None:
                    self._throttle.forget_identifier(old_index)
                if kind == EMAIL:
                    user.email_encrypted = cipher.encrypt("email", new_value)
                    user.email_index = row.destination_index
                    user.email_verified_at = now
                else:
                    user.phone_encrypted = cipher.encrypt("phone", new_value)
                    user.phone_index = row.destination_index
                    user.phone_verified_at = now
                self._db.flush()
        except IntegrityError:
            raise invalid_code() from None
        row.pending_value_encrypted = None
        self._audit.record(f"{kind}.changed", user_id=user.id, ip_prefix=context.ip_prefix)
        # The old address hears of it: a takeover does not go unseen.
        if kind == EMAIL:
            self._notifier.contact_changed_by_email(
                previous.email, "email address", user_id=user.id
            )
        else:
            self._notifier.contact_changed_by_sms(previous.phone, user_id=user.id)
        # A correction of personal data is a rectification request, answered at once.
        self._rights.answered_at_once(
            user.id, RequestKind.RECTIFICATION, f"{kind} changed after proof by code.",
            {"field": kind},
        )  # fmt: skip

    def _send_code(self, ident: Identifier, code: str, purpose: str, user_id: str) -> None:
        minutes = self._codes.ttl_minutes
        if ident.kind == EMAIL:
            self._notifier.code_by_email(ident.value, code, purpose, minutes, user_id=user_id)
        else:
            self._notifier.code_by_sms(ident.value, code, purpose, minutes, user_id=user_id)
