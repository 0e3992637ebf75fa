"""The provider's token-reading side: the resource protector that guards
UserInfo (Bearer and DPoP schemes, RFC 6750 and RFC 9449), introspection
(RFC 7662) and revocation (RFC 7009). Every one reads tokens through
``TokenStore.find``, so revoked grants, disabled clients and cancelled
accounts stop working everywhere at once."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import ResourceProtector
from authlib.oauth2.rfc6749.models import TokenMixin
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from app.http.scope import check_dpop, dpop_header, services
from app.oidc.client_models import AuthMethod
from app.oidc.signed_tokens import epoch, issuer
from app.oidc.subjects import subject_for
from app.oidc.token_store import LiveToken, TokenFacts, TokenKind, token_store

CLIENT_AUTH_METHODS = [
    AuthMethod.CLIENT_SECRET_BASIC.value,
    AuthMethod.CLIENT_SECRET_POST.value,
    AuthMethod.PRIVATE_KEY_JWT.value,
]


@dataclass
class Token(TokenMixin):
    live: LiveToken
    presented: str

    @property
    def scope(self) -> str:
        return " ".join(self.live.token.scopes)

    def check_client(self, client: Any) -> bool:
        return bool(self.live.client.client_id == client.row.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.live.token.expires_at - self.live.token.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return False  # find() returns live tokens only

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> Any:
        return self.live.user

    def get_client(self) -> Any:
        from app.oidc.server import Client

        return Client(self.live.client)


def find_token(
    token_string: str, kind: TokenKind | None = None, *, with_user: bool = False
) -> Token | None:
    live = token_store(services()).find(token_string, kind, with_user=with_user)
    return Token(live, token_string) if live is not None else None


class BearerValidator(BearerTokenValidator):
    """Plain bearer access tokens; a DPoP-bound one is refused without its proof."""

    def authenticate_token(self, token_string: str) -> Token | None:
        found = find_token(token_string, TokenKind.ACCESS, with_user=True)  # UserInfo
        if found is not None and found.live.token.dpop_jkt is not None:
            raise InvalidTokenError(
                description="This token is bound to a key: use the DPoP scheme with a proof."
            )
        return found


class DpopValidator(BearerTokenValidator):
    """RFC 9449 section 7: the DPoP scheme, a proof for this request signed by
    the key the token is bound to, carrying the token's hash."""

    TOKEN_TYPE = "dpop"

    def authenticate_token(self, token_string: str) -> Token | None:
        found = find_token(token_string, TokenKind.ACCESS, with_user=True)  # UserInfo
        if found is None:
            return None
        bound = found.live.token.dpop_jkt
        if bound is None:
            raise InvalidTokenError(description="This token is not bound to a key: use Bearer.")
        header = dpop_header(required=True, status=401)
        assert header is not None
        proof = check_dpop(header, access_token=token_string, status=401)
        if not hmac.compare_digest(proof.jkt, bound):
            raise InvalidTokenError(description="The proof is signed by another key.")
        return found


def resource_protector() -> ResourceProtector:
    protector = ResourceProtector()
    protector.register_token_validator(BearerValidator(realm="privid"))
    protector.register_token_validator(DpopValidator(realm="privid"))
    return protector


def _hinted(hint: str | None) -> TokenKind | None:
    return {"access_token": TokenKind.ACCESS, "refresh_token": TokenKind.REFRESH}.get(hint or "")


def _query(token_string: str, hint: str | None) -> Token | None:
    kind = _hinted(hint)
    # A wrong hint is only a hint (RFC 7662 section 2.1): look at both kinds.
    return find_token(token_string, kind) or (find_token(token_string) if kind else None)


@dataclass
class Described(TokenMixin):
    """A token introspection answers about (``TokenStore.describe``)."""

    facts: TokenFacts

    def is_expired(self) -> bool:
        return False  # describe() returns live tokens only

    def is_revoked(self) -> bool:
        return False


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = CLIENT_AUTH_METHODS

    def authenticate_token(self, request: Any, client: Any) -> Described | None:
        # A client learns about its own tokens only: another's is "inactive",
        # as is one that does not work any more.
        self.check_params(request, client)
        token, kind = request.form["token"], _hinted(request.form.get("token_type_hint"))
        store = token_store(services())
        facts = store.describe(token, client.row, kind) or (
            store.describe(token, client.row) if kind else None
        )
        return Described(facts) if facts is not None else None

    def introspect_token(self, token: Described) -> dict[str, Any]:
        svc = services()
        facts = token.facts
        answer: dict[str, Any] = {
            "active": True,
            "scope": " ".join(facts.scopes),
            "client_id": facts.client.client_id,
            "token_type": "refresh_token" if facts.kind == TokenKind.REFRESH else (
                "DPoP" if facts.dpop_jkt else "Bearer"
            ),
            "exp": epoch(facts.expires_at),
            "iat": epoch(facts.issued_at),
            "iss": issuer(svc),
        }  # fmt: skip
        if facts.user_id is not None:
            answer["sub"] = subject_for(svc, facts.client, facts.user_id)
            if facts.auth_time is not None:
                answer["auth_time"] = epoch(facts.auth_time)
            if facts.acr:
                answer["acr"] = facts.acr
        else:
            answer["sub"] = facts.client.client_id
        if facts.dpop_jkt:
            answer["cnf"] = {"jkt": facts.dpop_jkt}
        return answer


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _query(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: Any) -> None:
        token_store(services()).revoke_token(token.live.token)
