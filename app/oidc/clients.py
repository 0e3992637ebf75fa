"""The OAuth client registry: operators register clients (CLI now, the admin
API later, both through this service); the authorization server looks them up,
authenticates them and matches their redirect URIs here."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import FieldError, ServiceError, not_found
from app.oidc.client_models import (
    AuthMethod,
    ClientType,
    ClientView,
    GrantType,
    OAuthClient,
    SigningAlg,
    SubjectType,
    TokenFormat,
)
from app.oidc.token_store import TokenStore
from app.security.tokens import hash_token, new_token
from app.services.audit import AuditTrail
from app.services.container import Services

SCOPES = ("openid", "profile", "email", "phone", "offline_access", "identity")
# Plain http only where the relying party runs on the developer's machine.
DEVELOPMENT_HOSTS = frozenset({"localhost", "127.0.0.1"})
MAX_URI_LENGTH = 2048
SECRET_METHODS = frozenset({AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST})
# JWK members that only a private key has: a client must register its public keys.
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# Compared against when the client is unknown, so timing does not tell.
_NO_SECRET_HASH = hash_token("no client has this secret")
# A DNS host name in lower case: dot-separated labels of letters, digits and
# inner hyphens, 253 characters at most. No scheme, port, path or wildcard.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z"
)


@dataclass(frozen=True)
class NewClient:
    name: str
    client_type: str
    token_endpoint_auth_method: str
    redirect_uris: Sequence[str] = ()
    post_logout_redirect_uris: Sequence[str] = ()
    backchannel_logout_uri: str | None = None
    grant_types: Sequence[str] = (GrantType.AUTHORIZATION_CODE,)
    scopes: Sequence[str] = ("openid",)
    # None: PKCE required (the only choice for public clients).
    require_pkce: bool | None = None
    id_token_signed_response_alg: str = SigningAlg.RS256
    access_token_format: str = TokenFormat.JWT
    dpop_bound: bool = False
    jwks: dict[str, Any] | None = None
    # The platform's own apps; partners are the others.
    first_party: bool = False
    # None: public subjects for first-party apps, pairwise for partners.
    subject_type: str | None = None
    # None: the one host all redirect URIs share. OIDC has relying parties
    # publish a sector_identifier_uri that the provider fetches; here operators
    # register clients, so they name the sector host directly instead.
    sector_identifier: str | None = None


@dataclass(frozen=True)
class SubjectSettings:
    subject_type: str
    sector_identifier: str | None


@dataclass(frozen=True)
class Registered:
    client: OAuthClient
    # Shown once to the operator, never stored; None for clients without one.
    secret: str | None


@dataclass
class _Problems:
    """Collects every bad field so the operator fixes them in one go. A bad
    redirect URI is RFC 7591's invalid_redirect_uri; the rest invalid metadata."""

    redirect: list[FieldError] = field(default_factory=list)
    other: list[FieldError] = field(default_factory=list)

    def add(self, pointer: str, detail: str, reason: str) -> None:
        target = self.redirect if pointer.startswith("#/redirect_uris/") else self.other
        target.append(FieldError(pointer, detail, reason))

    def raise_if_any(self) -> None:
        if self.redirect:
            raise ServiceError(
                "invalid-redirect-uri",
                422,
                "A redirect URI is not acceptable",
                self.redirect[0].detail,
                errors=self.redirect + self.other,
            )
        if self.other:
            raise ServiceError(
                "invalid-client-metadata",
                422,
                "The client's settings are not acceptable",
                self.other[0].detail,
                errors=self.other,
            )


def new_client_id() -> str:
    # Hex, not base64url: an id starting with "-" would read as an option to
    # the operator commands that take it. 128 random bits; it is not a secret.
    return secrets.token_hex(16)


CLIENT_ID = re.compile(r"[0-9a-f]{32}")


def could_be_client_id(value: str) -> bool:
    """The shape new_client_id makes: anything else (a NUL, an overlong
    value) is unknown before the database sees it."""
    return CLIENT_ID.fullmatch(value) is not None


def uri_problem(uri: str) -> tuple[str, str] | None:
    """Why a URI may not be registered (reason, detail), or None."""
    if not uri or len(uri) > MAX_URI_LENGTH:
        return "length", f"A URI must have 1 to {MAX_URI_LENGTH} characters."
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        return "whitespace", "A URI may not contain spaces or control characters."
    if "*" in uri:
        return "wildcard", "A URI may not contain wildcards: register each one in full."
    if "#" in uri:
        return "fragment", "A URI may not contain a fragment (#)."
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "malformed", "The URI cannot be parsed."
    if not parts.scheme or not host:
        return "not_absolute", "A URI must be absolute (scheme and host)."
    if parts.username is not None or parts.password is not None:
        return "credentials", "A URI may not carry a user name or password."
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and host in DEVELOPMENT_HOSTS:
        return None
    return "not_https", "A URI must use https (http only for localhost or 127.0.0.1)."


def _check_uris(problems: _Problems, pointer: str, uris: Sequence[str]) -> None:
    for index, uri in enumerate(uris):
        found = uri_problem(uri)
        if found is not None:
            problems.add(f"#/{pointer}/{index}", found[1], found[0])


def _check_jwks(problems: _Problems, jwks: dict[str, Any]) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        problems.add("#/jwks", "The JWKS must hold a non-empty list of keys.", "jwks_empty")
        return
    for index, key in enumerate(keys):
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC", "OKP"):
            problems.add(f"#/jwks/keys/{index}", "Each key needs a kty of RSA, EC or OKP.", "kty")
        elif PRIVATE_JWK_MEMBERS & key.keys():
            problems.add(
                f"#/jwks/keys/{index}",
                "Register public keys only: this key carries private parts.",
                "private_key",
            )


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _redirect_hosts(uris: Sequence[str]) -> list[str]:
    """The hosts of the well-formed redirect URIs, each once, in order."""
    hosts = (urlsplit(uri).hostname for uri in uris if uri_problem(uri) is None)
    return _unique([host for host in hosts if host])


def subject_settings(new: NewClient) -> SubjectSettings:
    """The subject type and sector the client gets, defaults applied. The sector
    is None where it cannot be derived (several redirect hosts, or none): see
    ``validate`` for when that is acceptable."""
    if new.subject_type is not None:
        subject_type = new.subject_type
    else:
        subject_type = SubjectType.PUBLIC if new.first_party else SubjectType.PAIRWISE
    if subject_type != SubjectType.PAIRWISE:
        return SubjectSettings(subject_type, None)
    if new.sector_identifier is not None:
        return SubjectSettings(subject_type, new.sector_identifier.lower())
    hosts = _redirect_hosts(new.redirect_uris)
    return SubjectSettings(subject_type, hosts[0] if len(hosts) == 1 else None)


def _check_subject(problems: _Problems, new: NewClient) -> None:
    if new.subject_type is not None and new.subject_type not in set(SubjectType):
        problems.add("#/subject_type", "The subject type is pairwise or public.", "subject_type")
        return
    resolved = subject_settings(new)
    if new.sector_identifier is not None and resolved.subject_type != SubjectType.PAIRWISE:
        problems.add(
            "#/sector_identifier",
            "A sector identifier is only for clients with pairwise subjects.",
            "sector_unused",
        )
        return
    if resolved.subject_type != SubjectType.PAIRWISE:
        return
    sector = resolved.sector_identifier
    if sector is None:
        hosts = _redirect_hosts(new.redirect_uris)
        if len(hosts) > 1:
            problems.add(
                "#/sector_identifier",
                f"The redirect URIs span several hosts ({', '.join(hosts)}): name the "
                "host their pairwise subjects are computed for.",
                "sector_identifier_missing",
            )
    elif not _HOST_NAME.match(sector):
        if new.sector_identifier is not None:
            detail = "The sector identifier is a host name, such as rp.example (no scheme or path)."
        else:
            detail = f"The redirect host {sector} cannot name a sector: give one explicitly."
        problems.add("#/sector_identifier", detail, "sector_identifier")


def validate(new: NewClient) -> None:
    """Every rule a client's metadata must meet; raises listing what breaks them."""
    problems = _Problems()
    name = new.name.strip()
    if not name or len(name) > 120:
        problems.add("#/name", "A client needs a name of 1 to 120 characters.", "name")
    if new.client_type not in set(ClientType):
        problems.add("#/client_type", "The type is confidential or public.", "client_type")
    if new.token_endpoint_auth_method not in set(AuthMethod):
        problems.add(
            "#/token_endpoint_auth_method",
            f"The authentication method is one of {', '.join(AuthMethod)}.",
            "auth_method",
        )
    public = new.client_type == ClientType.PUBLIC
    method = new.token_endpoint_auth_method
    if public and method != AuthMethod.NONE:
        problems.add(
            "#/token_endpoint_auth_method",
            "A public client cannot keep a secret: its authentication method is none.",
            "public_needs_none",
        )
    if not public and method == AuthMethod.NONE:
        problems.add(
            "#/token_endpoint_auth_method",
            "A confidential client must authenticate: none is for public clients.",
            "confidential_needs_auth",
        )
    if public and new.require_pkce is False:
        problems.add("#/require_pkce", "A public client must use PKCE.", "public_needs_pkce")
    if method == AuthMethod.PRIVATE_KEY_JWT:
        if new.jwks is None:
            problems.add("#/jwks", "private_key_jwt needs the client's JWKS.", "jwks_missing")
        else:
            _check_jwks(problems, new.jwks)
    elif new.jwks is not None:
        problems.add("#/jwks", "A JWKS is only for private_key_jwt clients.", "jwks_unused")

    _check_uris(problems, "redirect_uris", new.redirect_uris)
    _check_uris(problems, "post_logout_redirect_uris", new.post_logout_redirect_uris)
    if new.backchannel_logout_uri is not None:
        found = uri_problem(new.backchannel_logout_uri)
        if found is not None:
            problems.add("#/backchannel_logout_uri", found[1], found[0])

    grants = set(new.grant_types)
    unknown = grants - set(GrantType)
    if unknown or not grants:
        problems.add(
            "#/grant_types",
            f"Grant types are one or more of {', '.join(GrantType)}.",
            "grant_types",
        )
    code_flow = GrantType.AUTHORIZATION_CODE in grants
    if code_flow and not new.redirect_uris:
        problems.add(
            "#/redirect_uris",
            "The authorization code grant needs at least one redirect URI.",
            "redirect_uri_missing",
        )
    if not code_flow and new.redirect_uris:
        problems.add(
            "#/grant_types",
            "Redirect URIs are only used by the authorization code grant.",
            "redirect_without_code",
        )
    if GrantType.REFRESH_TOKEN in grants and not code_flow:
        problems.add(
            "#/grant_types",
            "refresh_token only follows the authorization code grant.",
            "refresh_without_code",
        )
    if GrantType.CLIENT_CREDENTIALS in grants and public:
        problems.add(
            "#/grant_types",
            "client_credentials is for confidential clients only.",
            "public_client_credentials",
        )
    if not code_flow and (new.post_logout_redirect_uris or new.backchannel_logout_uri):
        problems.add(
            "#/grant_types",
            "Logout URIs need users signing in through the authorization code grant.",
            "logout_without_code",
        )

    scopes = set(new.scopes)
    if scopes - set(SCOPES):
        problems.add("#/scopes", f"Scopes are among {', '.join(SCOPES)}.", "scopes")
    if "offline_access" in scopes and GrantType.REFRESH_TOKEN not in grants:
        problems.add(
            "#/scopes",
            "offline_access needs the refresh_token grant.",
            "offline_without_refresh",
        )
    if new.id_token_signed_response_alg not in set(SigningAlg):
        problems.add(
            "#/id_token_signed_response_alg", "ID tokens are signed RS256 or ES256.", "alg"
        )
    if new.access_token_format not in set(TokenFormat):
        problems.add("#/access_token_format", "Access tokens are jwt or opaque.", "token_format")
    _check_subject(problems, new)
    problems.raise_if_any()


class ClientRegistry:
    def __init__(self, db: DbSession, clock: Clock, audit: AuditTrail, tokens: TokenStore) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._tokens = tokens

    def register(self, new: NewClient, *, actor_id: str | None = None) -> Registered:
        validate(new)
        method = AuthMethod(new.token_endpoint_auth_method)
        subject = subject_settings(new)
        secret = new_token() if method in SECRET_METHODS else None
        client = OAuthClient(
            client_id=new_client_id(),
            name=new.name.strip(),
            client_type=new.client_type,
            secret_hash=None if secret is None else hash_token(secret),
            token_endpoint_auth_method=method,
            jwks=new.jwks,
            redirect_uris=_unique(new.redirect_uris),
            post_logout_redirect_uris=_unique(new.post_logout_redirect_uris),
            backchannel_logout_uri=new.backchannel_logout_uri,
            grant_types=_unique(new.grant_types),
            scopes=_unique(new.scopes),
            # PKCE unless an operator turned it off for a confidential client.
            require_pkce=new.require_pkce is not False,
            id_token_signed_response_alg=new.id_token_signed_response_alg,
            access_token_format=new.access_token_format,
            dpop_bound=new.dpop_bound,
            first_party=new.first_party,
            subject_type=subject.subject_type,
            sector_identifier=subject.sector_identifier,
            created_at=self._clock.now(),
            disabled_at=None,
        )
        self._db.add(client)
        self._db.flush()
        self._audit.record("oauth_client_registered", actor_id=actor_id, client=client.client_id)
        return Registered(client, secret)

    def get(self, client_id: str) -> OAuthClient:
        """An enabled client; a disabled one is as good as unknown."""
        client = self._db.get(OAuthClient, client_id)
        if client is None or client.disabled:
            raise not_found("The client")
        return client

    def find(self, client_id: str) -> OAuthClient:
        """A client, disabled or not (for operators)."""
        client = self._db.get(OAuthClient, client_id)
        if client is None:
            raise not_found("The client")
        return client

    def all(self) -> list[OAuthClient]:
        """Every client, disabled ones too (for operators)."""
        query = select(OAuthClient).order_by(OAuthClient.created_at, OAuthClient.client_id)
        return list(self._db.execute(query).scalars())

    def authenticate_secret(self, client_id: str, secret: str) -> OAuthClient | None:
        """The enabled client this secret belongs to, or None: unknown client,
        disabled client, client without a secret and wrong secret look alike."""
        client = self._db.get(OAuthClient, client_id)
        return client if secret_matches(client, secret) else None

    def rotate_secret(self, client_id: str, *, actor_id: str | None = None) -> Registered:
        """A new secret replaces the old one at once (shown once, like the first)."""
        client = self.get(client_id)
        if client.token_endpoint_auth_method not in SECRET_METHODS:
            raise ServiceError(
                "client-has-no-secret",
                409,
                "This client has no secret",
                f"A {client.token_endpoint_auth_method} client authenticates without a secret.",
            )
        secret = new_token()
        client.secret_hash = hash_token(secret)
        self._db.flush()
        self._audit.record("oauth_client_secret_rotated", actor_id=actor_id, client=client_id)
        return Registered(client, secret)

    def disable(self, client_id: str, *, actor_id: str | None = None) -> OAuthClient:
        """Disabling is immediate and for good; a second call changes nothing.
        Every grant the client holds ends with it (each one audited as
        ``oidc.grant_revoked``), so its tokens stay dead for good."""
        client = self._db.get(OAuthClient, client_id)
        if client is None:
            raise not_found("The client")
        if client.disabled_at is None:
            client.disabled_at = self._clock.now()
            self._db.flush()
            self._audit.record("oauth_client_disabled", actor_id=actor_id, client=client_id)
            self._tokens.revoke_all("client_disabled", client_id=client_id)
        return client

    @staticmethod
    def exact_redirect_uri(client: ClientView, uri: str) -> bool:
        """RFC 9700 §4.1.1: simple string comparison, nothing normalised."""
        return any(uri == registered for registered in client.redirect_uris)


def secret_matches(client: ClientView | None, secret: str) -> bool:
    """Whether ``secret`` is the enabled ``client``'s. Here an unknown,
    disabled or secretless client costs the same hash and comparison as a
    wrong secret (the token endpoint refuses unknown and disabled clients
    earlier, in ``query_client``, as authlib asks)."""
    stored = client.secret_hash if client is not None else None
    matches = hmac.compare_digest(hash_token(secret), stored or _NO_SECRET_HASH)
    return client is not None and stored is not None and not client.disabled and matches


def client_registry(svc: Services) -> ClientRegistry:
    """The registry in a unit of work (CLI command or request)."""
    return ClientRegistry(svc.db, svc.runtime.clock, svc.audit, TokenStore.of(svc))
