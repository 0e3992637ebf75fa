"""Signing in with WeChat: the three flows (website QR code, inside WeChat's
browser, the mobile app's SDK) meet here once WeChat has vouched for a person.

A known identity signs in (``amr`` ["fed"]). An unknown one gets a pending
link: a short-lived, single-use ticket holding the identity sealed under a
data key of its own (nothing is written until the person finishes), bound to
the browser (its WeChat cookie) or to the app's DPoP key. It finishes by
proving an existing account (password, or the phone's SMS code) or by
creating one with a phone and its code. Either way the ``wechat_login``
purpose is recorded as granted at that moment, and the sign-in ends in
``LoginService.finish`` (second factor when owed, then ``SignInCompleter``).

``state`` (WeChat allows only 128 letters and digits) is random; the browser
carries a signed cookie naming its hash, the flow and where to go next, and
the callback spends it once (``spent_tickets``)."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import ServiceError
from app.models import Channel, CodePurpose, Decision, SpentTicket, User
from app.models.base import new_id
from app.security.envelope import FieldCipher, WrappedKey
from app.security.tickets import TicketInvalid, Tickets
from app.security.tokens import derive_key, hash_token
from app.services.codes import flow_subject
from app.services.consent import DecisionInput
from app.services.container import Services
from app.services.context import RequestContext
from app.services.identifiers import normalise_full_name
from app.services.login import SecondFactorRequired
from app.services.sessions import Acr, Transport
from app.services.signin import SignInResult
from app.wechat.client import HttpWeChatApi, WeChatApi, WeChatRefused, WeChatUnavailable
from app.wechat.errors import (
    flow_disabled,
    pending_invalid,
    refused_problem,
    state_invalid,
    wechat_unavailable,
)
from app.wechat.identities import LinkedIdentities, WeChatIdentity

WEB, MP, APP = "web", "mp", "app"
FLOWS = (WEB, MP, APP)
PURPOSE = "wechat_login"
FEDERATED = "fed"  # RFC 8176
# Time to choose between linking and creating, and to type a code.
PENDING_SECONDS = 900
SCOPES_WITH_PROFILE = ("snsapi_userinfo", "snsapi_login")
# The pending ticket's sealed identity (its owner, wrapped key, sealed payload),
# carried to the end of a sign-in that links it (app/services/after_sign_in.py).
SEALED = ("o", "k", "w", "p")
LINK_AFTER_SIGN_IN = "wechat-link"


@dataclass(frozen=True)
class PendingLink:
    """WeChat vouched for someone no account knows yet: link or create next."""

    ticket: str
    expires_in: int


Outcome = SignInResult | SecondFactorRequired | PendingLink


@dataclass(frozen=True)
class Started:
    authorize_url: str
    cookie: str  # the browser's binding to this state (signed)
    max_age: int


@dataclass(frozen=True)
class Returned:
    flow: str
    next_path: str
    identity: WeChatIdentity


class WeChatSignIn:
    def __init__(self, svc: Services, api: WeChatApi | None = None) -> None:
        self._svc = svc
        self._settings = svc.runtime.settings
        s = self._settings
        self._api = api or HttpWeChatApi(
            s.wechat_api_url, timeout=s.wechat_timeout_seconds, retries=s.wechat_retries
        )
        secret, clock = s.secret_key_bytes, svc.runtime.clock
        self._states = Tickets(
            derive_key(secret, "wechat-state"), "wechat-state", s.wechat_state_ttl_seconds, clock
        )
        self._pending = Tickets(
            derive_key(secret, "wechat-pending"), "wechat-pending", PENDING_SECONDS, clock
        )
        self.identities = LinkedIdentities.of(svc)

    # -- configuration ------------------------------------------------------------

    def enabled(self, flow: str) -> bool:
        return flow in FLOWS and bool(getattr(self._settings, f"wechat_{flow}_appid"))

    def _credentials(self, flow: str) -> tuple[str, str]:
        if not self.enabled(flow):
            raise flow_disabled()
        appid = str(getattr(self._settings, f"wechat_{flow}_appid"))
        secret = getattr(self._settings, f"wechat_{flow}_secret").get_secret_value()
        return appid, secret

    # -- browser flows: out to WeChat and back -------------------------------------

    def start(self, flow: str, redirect_uri: str, next_path: str) -> Started:
        """The address of WeChat's authorisation page, and the cookie that binds
        its ``state`` to this browser."""
        if flow not in (WEB, MP):
            raise flow_disabled()
        appid, _ = self._credentials(flow)
        state = secrets.token_hex(16)
        cookie = self._states.issue({"s": hash_token(state), "f": flow, "n": next_path})
        if flow == WEB:
            page, scope = "/connect/qrconnect", "snsapi_login"
        else:
            page, scope = "/connect/oauth2/authorize", self._settings.wechat_mp_scope
        query = urlencode(
            {
                "appid": appid,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": scope,
                "state": state,
            }
        )
        url = f"{self._settings.wechat_open_url.rstrip('/')}{page}?{query}#wechat_redirect"
        return Started(url, cookie, self._states.max_age_seconds)

    def returned(self, cookie: str | None, state: str, code: str) -> Returned:
        """WeChat sent the person back: the state must be this browser's, live
        and unspent (it is spent now, whatever follows), then the code is
        exchanged, once."""
        try:
            claims = self._states.open(cookie or "")
        except TicketInvalid:
            raise state_invalid() from None
        if not hmac.compare_digest(str(claims.get("s")), hash_token(state)):
            raise state_invalid()
        self._spend(str(claims["jti"]), self._states, state_invalid)
        flow = str(claims.get("f"))
        if not code:
            # The person declined on WeChat's page: nothing to exchange.
            raise ServiceError(
                "wechat-declined",
                400,
                "WeChat sign-in was cancelled",
                "WeChat sign-in was not approved. Sign in another way or try again.",
                keep_changes=True,
            )
        return Returned(flow, str(claims.get("n") or "/account"), self.exchange(flow, code))

    # -- the code exchange (every flow) ---------------------------------------------

    def exchange(self, flow: str, code: str) -> WeChatIdentity:
        appid, secret = self._credentials(flow)
        try:
            grant = self._api.exchange_code(appid, secret, code)
        except WeChatRefused as refused:
            raise refused_problem(refused) from None
        except WeChatUnavailable:
            raise wechat_unavailable() from None
        unionid, nickname = grant.unionid, None
        # The profile is asked for only when its one kept field is kept at all.
        if self._settings.wechat_keep_nickname and grant.scope in SCOPES_WITH_PROFILE:
            try:
                profile = self._api.user_info(grant.access_token, grant.openid)
            except (WeChatRefused, WeChatUnavailable):
                profile = None  # the nickname is optional: signing in goes on without it
            if profile is not None and profile.openid == grant.openid:
                nickname, unionid = profile.nickname, unionid or profile.unionid
        return WeChatIdentity(appid, grant.openid, unionid, nickname)

    # -- after WeChat vouched ------------------------------------------------------

    def sign_in(
        self,
        identity: WeChatIdentity,
        *,
        transport: Transport,
        context: RequestContext,
        binding: str,
    ) -> Outcome:
        found = self.identities.find(identity)
        if found is None or not found[0].is_active:
            return self._pend(identity, binding, transport)
        return self._complete(found[0], identity, transport, context, [FEDERATED])

    def link_with_password(
        self, ticket: str, binding: str, identifier: str, password: str, context: RequestContext
    ) -> Outcome:
        _, claims = self._open_pending(ticket, binding)
        user = self._svc.login.prove_password(identifier, password, context)
        self._spend(str(claims["jti"]), self._pending, pending_invalid)
        transport = Transport(claims["t"])
        return self._link_and_finish(user, claims, transport, context, [FEDERATED, "pwd"])

    def link_with_passkey(
        self,
        ticket: str,
        binding: str,
        challenge_id: str,
        credential: dict[str, Any],
        context: RequestContext,
    ) -> Outcome:
        _, claims = self._open_pending(ticket, binding)
        proven = self._svc.webauthn.prove(challenge_id, credential, context)
        self._spend(str(claims["jti"]), self._pending, pending_invalid)
        transport = Transport(claims["t"])
        amr = [FEDERATED, *proven.amr]
        return self._link_and_finish(
            proven.user, claims, transport, proven.context, amr, proven.acr
        )

    def send_phone_code(
        self, ticket: str, binding: str, phone: str, context: RequestContext
    ) -> str:
        """A code for the phone: a sign-in code when it has an account (the
        account is then linked), else a code to create one. The same answer
        either way."""
        self._open_pending(ticket, binding)
        svc = self._svc
        ident = svc.directory.phone(phone)
        if svc.directory.find(ident) is not None:
            return svc.login.send_sms_code(phone, context)
        flow, code = svc.codes.issue_for_flow(CodePurpose.REGISTER_PHONE, ident.index, user_id=None)
        svc.notifier.code_by_sms(
            ident.value, code, CodePurpose.REGISTER_PHONE, svc.codes.ttl_minutes, user_id=None
        )
        return flow

    def with_phone(
        self,
        ticket: str,
        binding: str,
        *,
        phone: str,
        flow: str,
        code: str,
        full_name: str | None,
        context: RequestContext,
    ) -> Outcome:
        _, claims = self._open_pending(ticket, binding)
        transport = Transport(claims["t"])
        svc = self._svc
        ident = svc.directory.phone(phone)
        if svc.directory.find(ident) is not None:
            user = svc.login.prove_sms_code(phone, flow, code, context)
        else:
            name = normalise_full_name(full_name or "")
            row = svc.codes.check_flow(
                CodePurpose.REGISTER_PHONE, flow_subject(flow), ident.index, code, user_id=None
            )
            svc.codes.consume(row)
            user = self._create_account(ident.index, ident.value, name, context)
        self._spend(str(claims["jti"]), self._pending, pending_invalid)
        return self._link_and_finish(user, claims, transport, context, [FEDERATED, "sms"])

    # -- internals -----------------------------------------------------------------

    def _complete(
        self,
        user: User,
        identity: WeChatIdentity,
        transport: Transport,
        context: RequestContext,
        amr: list[str],
    ) -> SignInResult | SecondFactorRequired:
        """A known identity signs in to its account."""
        self._link(user, identity, context)
        return self._svc.login.finish(user, transport, context, amr=amr)

    def _link_and_finish(
        self,
        user: User,
        pending: dict[str, Any],
        transport: Transport,
        context: RequestContext,
        amr: list[str],
        acr: Acr = Acr.SINGLE_FACTOR,
    ) -> SignInResult | SecondFactorRequired:
        """An account proven for a pending identity: linked (and the purpose
        recorded) only when its sign-in completes, after any second factor it
        owes; a password alone must not add a way in to an account."""
        sealed = {k: pending[k] for k in SEALED}
        then = (LINK_AFTER_SIGN_IN, sealed)
        return self._svc.login.finish(user, transport, context, amr=amr, acr=acr, then=then)

    def link_after_sign_in(self, user: User, sealed: Any, context: RequestContext) -> None:
        """after_sign_in step: the sign-in that proved ``user`` completes now."""
        self._link(user, self._unseal(dict(sealed)), context)

    def _link(self, user: User, identity: WeChatIdentity, context: RequestContext) -> None:
        svc = self._svc
        # The purpose is captured at the moment of signing in with WeChat.
        if not svc.consent.is_granted(user.id, PURPOSE):
            policy = svc.policies.require_current()
            grant = [DecisionInput(PURPOSE, Decision.GRANTED)]
            svc.consent.decide(user.id, policy.version, grant, Channel.LOGIN, context)
        self.identities.link(user, identity, keep_nickname=self._settings.wechat_keep_nickname)

    def _create_account(
        self, phone_index: str, phone: str, full_name: str, context: RequestContext
    ) -> User:
        """An account with a verified phone, a name and WeChat as its way in: no
        email and no password until the person adds them."""
        svc = self._svc
        now = svc.runtime.clock.now()
        user = User(id=new_id(), phone_index=phone_index, created_at=now, phone_verified_at=now)
        try:
            with svc.db.begin_nested():
                cipher = svc.vault.create_key(user.id)
                user.phone_encrypted = cipher.encrypt("phone", phone)
                user.full_name_encrypted = cipher.encrypt("full_name", full_name)
                svc.db.add(user)
                svc.db.flush()
        except IntegrityError:
            raise ServiceError(
                "account-exists",
                409,
                "An account already exists",
                "An account with this phone number was created meanwhile. Start again.",
            ) from None
        svc.throttle.forget_identifier(phone_index)
        svc.audit.record(
            "registration.completed", user_id=user.id, ip_prefix=context.ip_prefix, method="wechat"
        )
        return user

    def _pend(self, identity: WeChatIdentity, binding: str, transport: Transport) -> PendingLink:
        owner = "wechat-pending:" + secrets.token_hex(16)
        key_ring = self._svc.runtime.key_ring
        data_key, wrapped = key_ring.new_data_key(owner)
        payload = json.dumps(
            {
                "a": identity.app_id,
                "o": identity.openid,
                "u": identity.unionid,
                "n": identity.nickname,
            }
        )
        sealed = FieldCipher(data_key, owner).encrypt("wechat_identity", payload)
        ticket = self._pending.issue(
            {
                "o": owner,
                "k": wrapped.key_id,
                "w": _b64(wrapped.wrapped),
                "p": _b64(sealed),
                "b": binding,
                "t": transport.value,
            }
        )
        return PendingLink(ticket, self._pending.max_age_seconds)

    def _open_pending(self, ticket: str, binding: str) -> tuple[WeChatIdentity, dict[str, Any]]:
        try:
            claims = self._pending.open(ticket)
        except TicketInvalid:
            raise pending_invalid() from None
        if not hmac.compare_digest(str(claims.get("b")), binding):
            raise pending_invalid()
        spent = self._svc.db.execute(
            select(SpentTicket.jti).where(SpentTicket.jti == _spent_id(str(claims["jti"])))
        ).first()
        if spent is not None:
            raise pending_invalid()
        return self._unseal(claims), claims

    def _unseal(self, claims: dict[str, Any]) -> WeChatIdentity:
        owner = str(claims["o"])
        wrapped = WrappedKey(str(claims["k"]), base64.urlsafe_b64decode(claims["w"]))
        data_key = self._svc.runtime.key_ring.unwrap(wrapped, owner)
        sealed = base64.urlsafe_b64decode(claims["p"])
        found = json.loads(FieldCipher(data_key, owner).decrypt("wechat_identity", sealed))
        return WeChatIdentity(found["a"], found["o"], found["u"], found["n"])

    def _spend(self, jti: str, tickets: Tickets, invalid: Callable[[], ServiceError]) -> None:
        """Single use: the primary key of ``spent_tickets`` settles two at once."""
        expires = self._svc.runtime.clock.now() + timedelta(seconds=tickets.max_age_seconds)
        try:
            with self._svc.db.begin_nested():
                self._svc.db.add(SpentTicket(jti=_spent_id(jti), expires_at=expires))
                self._svc.db.flush()
        except IntegrityError:
            raise invalid() from None


def _spent_id(jti: str) -> str:
    return f"wechat:{jti}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")
