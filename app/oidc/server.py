"""authlib's authorisation server, wired to this service: the client
registry, the token store and the signing keys. One server per app (it holds
no request state); every callback reaches the request's unit of work through
``services()``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    grants,
    scope_to_list,
)
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app, g
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app import metrics
from app.http.scope import services
from app.models import Session, User
from app.oidc.claims import requested_claims, user_claims
from app.oidc.client_models import AuthMethod, ClientRecord, read_client
from app.oidc.clients import could_be_client_id, secret_matches
from app.oidc.grant_models import AuthorizationCode, TokenGrant
from app.oidc.signed_tokens import TokenMinter, issuer
from app.oidc.token_store import Claim, LiveToken, TokenKind, token_store
from app.security.jws_header import check_crit

TOKEN_PATH = "/oauth/token"
# Scopes about a user: never for a client acting for itself.
USER_SCOPES = frozenset({"openid", "profile", "email", "phone", "offline_access", "identity"})
ASSERTION_REPLAY_PREFIX = "privid-oidc-assertion:"
# How long a client assertion's jti is remembered; an assertion may not be
# valid for longer, or it could be replayed once its jti is forgotten.
ASSERTION_WINDOW_SECONDS = 600


class Client(ClientMixin):
    """A registered client as authlib sees it."""

    def __init__(self, row: ClientRecord) -> None:
        self.row = row
        self.client_id = row.client_id
        self.client_metadata: dict[str, Any] = {}

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC requires redirect_uri on every request: no default, ever.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.row.scopes)
        return " ".join(s for s in scope_to_list(scope) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return bool(method == self.row.token_endpoint_auth_method)

    def check_response_type(self, response_type: str) -> bool:
        return bool(response_type == "code")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types


def query_client(client_id: str | None) -> Client | None:
    if not client_id or not could_be_client_id(client_id):
        return None
    row = read_client(services().db, client_id)
    if row is None or row.disabled:
        return None
    return Client(row)


@dataclass
class Code(AuthorizationCodeMixin):
    row: AuthorizationCode
    grant: TokenGrant

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return " ".join(self.grant.scopes)

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int | None:
        return int(self.grant.auth_time.timestamp()) if self.grant.auth_time else None


@dataclass(frozen=True)
class AuthorizationContext:
    """What the authorisation endpoint knows that authlib does not: the
    browser session the code is issued in, and the claims parameter."""

    session_id: str
    claims: dict[str, Any] | None


class DpopProofRequired(OAuth2Error):
    """RFC 9449 section 5: a client registered for sender-constrained tokens
    gets none without a proof of its key."""

    error = "invalid_dpop_proof"
    description = "This client's tokens are bound to a key: send a DPoP proof."


def _keep_revocation() -> None:
    # A reused code or refresh token revoked its grant: the error answer must
    # not roll that back (app/oidc/endpoints.py reads this).
    g.oidc_keep_changes = True


def _dpop_jkt() -> str | None:
    jkt: str | None = g.get("oidc_dpop_jkt")
    return jkt


def issue(
    grant_flow: grants.BaseGrant,
    token_grant: TokenGrant,
    scopes: list[str],
    *,
    include_refresh_token: bool,
) -> dict[str, Any]:
    """Mint and record the access token (and refresh token) of one answer, and
    the grant with them when it was only just made."""
    svc = services()
    store = token_store(svc)
    client: Client = grant_flow.request.client
    jkt = _dpop_jkt()
    if jkt is None and client.row.dpop_bound:
        raise DpopProofRequired()
    minted = TokenMinter(svc).access_token(client.row, token_grant, scopes, dpop_jkt=jkt)
    rows = [store.token_row(token_grant, TokenKind.ACCESS, minted.token, scopes, dpop_jkt=jkt)]
    answer: dict[str, Any] = {
        "access_token": minted.token,
        "token_type": "DPoP" if jkt else "Bearer",
        "expires_in": minted.expires_in,
        "scope": " ".join(scopes),
    }
    if include_refresh_token:
        refresh = secrets.token_urlsafe(32)
        # RFC 9449 section 5: a public client's refresh token is bound to the
        # key of the proof this token request carried.
        bound = jkt if client.row.client_type == "public" else None
        rows.append(
            store.token_row(token_grant, TokenKind.REFRESH, refresh, scopes, dpop_jkt=bound)
        )
        answer["refresh_token"] = refresh
    store.save(token_grant, *rows)
    g.oidc_token_grant = token_grant
    metrics.token_issued(grant_flow.GRANT_TYPE)
    return answer


class CodeFlow(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [m.value for m in AuthMethod]
    AUTHORIZATION_CODE_LENGTH = 43

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        svc = services()
        context: AuthorizationContext = g.oidc_authorization
        session = svc.db.get(Session, context.session_id)
        client: Client = request.client
        scopes = scope_to_list(request.scope or "") or []
        store = token_store(svc)
        token_grant = store.new_grant(
            client.row, scopes, user=request.user, session=session, dpop_jkt=g.get("oidc_dpop_jkt")
        )
        data = request.payload.data
        store.save_code(
            code,
            token_grant,
            redirect_uri=request.payload.redirect_uri,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            claims=context.claims,
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        store = token_store(services())
        outcome, row = store.claim_code(code, client.row.client_id)
        if outcome == Claim.REUSED:
            _keep_revocation()
        if row is None:
            return None
        grant = services().db.get(TokenGrant, row.grant_id)
        assert grant is not None
        return Code(row, grant)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Claimed already, by the conditional update in query_authorization_code."""

    def authenticate_user(self, authorization_code: Code) -> User | None:
        grant = authorization_code.grant
        return services().db.get(User, grant.user_id) if grant.user_id else None

    def generate_token(
        self, user: Any = None, scope: str | None = None, **_: Any
    ) -> dict[str, Any]:
        code: Code = self.request.authorization_code
        scopes = scope_to_list(scope or "") or []
        refresh = "offline_access" in scopes or "openid" not in scopes
        allowed = self.request.client.check_grant_type("refresh_token")
        return issue(self, code.grant, scopes, include_refresh_token=refresh and allowed)


class RefreshFlow(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [m.value for m in AuthMethod]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        client: Client = self.request.client
        outcome, live = token_store(services()).claim_refresh(refresh_token, client.row.client_id)
        if outcome == Claim.REUSED:
            _keep_revocation()
        if live is None:
            return None
        bound = live.token.dpop_jkt
        if bound is not None and bound != _dpop_jkt():
            # RFC 9449 section 5: a bound refresh token needs a proof by its key.
            raise InvalidGrantError("This refresh token is bound to a DPoP key: prove it.")
        g.oidc_refresh = live
        return _RefreshView(live.grant.scopes, client)

    def authenticate_user(self, refresh_token: Any) -> User | None:
        live: LiveToken = g.oidc_refresh
        return live.user

    def revoke_old_credential(self, refresh_token: Any) -> None:
        """Rotated already, by the conditional update in authenticate_refresh_token."""

    def generate_token(
        self, user: Any = None, scope: str | None = None, **_: Any
    ) -> dict[str, Any]:
        live = g.oidc_refresh
        scopes = scope_to_list(scope or "") or list(live.grant.scopes)
        return issue(self, live.grant, scopes, include_refresh_token=True)


@dataclass
class _RefreshView:
    scopes: list[str]
    client: Client

    def check_client(self, client: Client) -> bool:
        return bool(client.row.client_id == self.client.row.client_id)

    def get_scope(self) -> str:
        return " ".join(self.scopes)


class ClientCredentialsFlow(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        AuthMethod.CLIENT_SECRET_BASIC.value,
        AuthMethod.CLIENT_SECRET_POST.value,
        AuthMethod.PRIVATE_KEY_JWT.value,
    ]

    def validate_requested_scope(self) -> None:
        requested = scope_to_list(self.request.payload.scope or "") or []
        client: Client = self.request.client
        if any(s in USER_SCOPES or s not in client.row.scopes for s in requested):
            raise InvalidScopeError("A client acting for itself may ask only for its own scopes.")

    def generate_token(
        self, user: Any = None, scope: str | None = None, **_: Any
    ) -> dict[str, Any]:
        scopes = scope_to_list(scope or "") or []
        client: Client = self.request.client
        token_grant = token_store(services()).new_grant(client.row, scopes, dpop_jkt=_dpop_jkt())
        return issue(self, token_grant, scopes, include_refresh_token=False)


class OnlyS256(CodeChallenge):
    """PKCE with S256 only; required for public clients and for confidential
    ones registered with require_pkce."""

    DEFAULT_CODE_CHALLENGE_METHOD = "plain"  # what RFC 7636 assumes; refused below
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: grants.BaseGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        client: Client = grant.request.client
        challenge = data.get("code_challenge")
        if not challenge and client.row.require_pkce:
            raise InvalidRequestError(
                "This client must use PKCE: send code_challenge with code_challenge_method=S256.",
                redirect_uri=redirect_uri,
            )
        if challenge and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError(
                "code_challenge_method must be S256 ('plain' is not accepted).",
                redirect_uri=redirect_uri,
            )
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: grants.BaseGrant, result: Any) -> None:
        code: Code = grant.request.authorization_code
        if code.row.code_challenge is None and grant.request.client.row.require_pkce:
            raise InvalidGrantError("This client must use PKCE.")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: Code) -> str | None:
        return authorization_code.row.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: Code) -> str | None:
        return authorization_code.row.code_challenge_method


def _id_token(
    grant_flow: grants.BaseGrant,
    token_grant: TokenGrant,
    token: dict[str, Any],
    nonce: str | None,
    claims_request: dict[str, Any] | None,
) -> str:
    svc = services()
    client: Client = grant_flow.request.client
    user = svc.db.get(User, token_grant.user_id) if token_grant.user_id else None
    assert user is not None
    wanted = requested_claims(claims_request, "id_token")
    extra = user_claims(svc, user, wanted, client.row.client_id)
    return TokenMinter(svc).id_token(
        client.row, token_grant, access_token=token.get("access_token"), nonce=nonce, extra=extra
    )  # fmt: skip


class IdTokenOnCode(OpenIDCode):
    """OIDC for the code flow: nonce carried, ID token added to the answer."""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        # A nonce is the client's replay defence; a code is single-use anyway.
        return False

    def process_token(self, grant: grants.BaseGrant, response: Any) -> Any:
        _, token, _ = response
        code: Code = grant.request.authorization_code
        if "openid" in code.grant.scopes:
            token["id_token"] = _id_token(grant, code.grant, token, code.row.nonce, code.row.claims)
        return token


def id_token_on_refresh(grant: grants.BaseGrant, response: Any) -> None:
    """OIDC Core 12.2: a refresh may bring a new ID token, for the same
    sign-in (same auth_time and sid), without a nonce."""
    _, token, _ = response
    live = g.oidc_refresh
    if "openid" in live.grant.scopes:
        token["id_token"] = _id_token(grant, live.grant, token, None, None)


class RefreshWithIdToken(RefreshFlow):
    def __init__(self, request: OAuth2Request, server: Any) -> None:
        super().__init__(request, server)
        self.register_hook("after_create_token_response", id_token_on_refresh)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 client authentication with keys the client registered."""

    CLIENT_AUTH_METHOD = AuthMethod.PRIVATE_KEY_JWT.value

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        headers, claims = super().extract_assertion(assertion)
        try:
            check_crit(headers)
        except ValueError:
            raise InvalidClientError(description="Invalid JWT header: crit.") from None
        return headers, claims

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        """authlib's, with a fixed description: joserfc's echoes the header
        ("no key for kid 'é'"), and authlib refuses an error description
        outside RFC 6749's character set with ValueError, a 500 (found by
        fuzzing the assertion's header)."""
        try:
            token = jwt.decode(assertion, resolve_key)
        except JoseError:
            raise InvalidClientError(description="The client assertion is not valid.") from None
        self.verify_claims(token.claims)
        return token.claims

    def get_audiences(self) -> list[str]:
        base = issuer(services())
        return [base, base + TOKEN_PATH]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        return KeySet.import_key_set(cast(Any, client.row.jwks or {"keys": []}))

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        now = services().runtime.clock.now().timestamp()
        if isinstance(exp, int | float) and exp - now > ASSERTION_WINDOW_SECONDS:
            raise InvalidClientError(
                description="The client assertion must expire within 10 minutes."
            )
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Each assertion once: the replay cache every worker shares."""
        rt = services().runtime
        key = f"{ASSERTION_REPLAY_PREFIX}{claims.get('iss')}:{jti}"
        return int(rt.replay_cache.incr(key, ASSERTION_WINDOW_SECONDS)) == 1


def build_server(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer(query_client=query_client, save_token=lambda token, request: None)
    server.init_app(app)
    server.scopes_supported = None
    server.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt())
    server.register_grant(CodeFlow, [OnlyS256(required=True), IdTokenOnCode(require_nonce=False)])
    server.register_grant(RefreshWithIdToken)
    server.register_grant(ClientCredentialsFlow)
    app.extensions["privid.oidc_server"] = server
    return server


def authorization_server() -> AuthorizationServer:
    server: AuthorizationServer = current_app.extensions["privid.oidc_server"]
    return server
