"""Bodies of the operators' client API. Requests get generous bounds only: the
client registry applies the real rules and names every field that breaks one.
Defaults are NewClient's, so the two cannot disagree."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field

from app.api.schemas import Body
from app.oidc.client_models import (
    AuthMethod,
    ClientType,
    GrantType,
    OAuthClient,
    SigningAlg,
    SubjectType,
    TokenFormat,
)
from app.oidc.clients import SCOPES, NewClient

Uri = Annotated[str, Field(max_length=4096)]
Word = Annotated[str, Field(max_length=64)]
MAX_URIS = 50


def _one_of(choices: type[StrEnum] | tuple[str, ...]) -> str:
    return "One of: " + ", ".join(str(choice) for choice in choices) + "."


class ClientRegistration(Body):
    name: str = Field(min_length=1, max_length=500)
    client_type: str = Field(max_length=64, description=_one_of(ClientType))
    token_endpoint_auth_method: str = Field(max_length=64, description=_one_of(AuthMethod))
    redirect_uris: list[Uri] = Field(default_factory=list, max_length=MAX_URIS)
    post_logout_redirect_uris: list[Uri] = Field(default_factory=list, max_length=MAX_URIS)
    backchannel_logout_uri: Uri | None = None
    grant_types: list[Word] = Field(
        default_factory=lambda: list(NewClient.grant_types),
        max_length=len(GrantType) * 2,
        description="Each one of: " + ", ".join(GrantType) + ".",
    )
    scopes: list[Word] = Field(
        default_factory=lambda: list(NewClient.scopes),
        max_length=len(SCOPES) * 2,
        description="Each one of: " + ", ".join(SCOPES) + ".",
    )
    require_pkce: bool | None = Field(
        default=None, description="Unset: required. Only confidential clients may turn it off."
    )
    id_token_signed_response_alg: str = Field(
        default=NewClient.id_token_signed_response_alg,
        max_length=64,
        description=_one_of(SigningAlg),
    )
    access_token_format: str = Field(
        default=NewClient.access_token_format, max_length=64, description=_one_of(TokenFormat)
    )
    dpop_bound: bool = NewClient.dpop_bound
    jwks: dict[str, Any] | None = Field(
        default=None, description="The client's public keys, for private_key_jwt only."
    )
    first_party: bool = Field(
        default=NewClient.first_party, description="The platform's own app (else a partner)."
    )
    subject_type: Word | None = Field(
        default=None,
        description=_one_of(SubjectType) + " Unset: public for first-party apps, else pairwise.",
    )
    sector_identifier: Annotated[str, Field(max_length=512)] | None = Field(
        default=None,
        description="The host pairwise subjects are computed for. Unset: the one host of "
        "the redirect URIs (required when they have several).",
    )

    def new_client(self) -> NewClient:
        # Only what the caller sent: NewClient applies its own defaults.
        return NewClient(**self.model_dump(exclude_unset=True))


class ClientOut(BaseModel):
    client_id: str
    name: str
    client_type: str
    token_endpoint_auth_method: str
    # Whether the client authenticates with a secret; the secret itself is never shown again.
    has_secret: bool
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None
    grant_types: list[str]
    scopes: list[str]
    require_pkce: bool
    id_token_signed_response_alg: str
    access_token_format: str
    dpop_bound: bool
    jwks: dict[str, Any] | None
    first_party: bool
    subject_type: str
    sector_identifier: str | None
    created_at: datetime
    disabled: bool
    disabled_at: datetime | None


class ClientWithSecret(BaseModel):
    client: ClientOut
    client_secret: str | None = Field(
        description="Shown this once: only its hash is kept. Null for clients without one."
    )


class ClientList(BaseModel):
    clients: list[ClientOut]


def client_out(client: OAuthClient) -> ClientOut:
    return ClientOut(
        client_id=client.client_id,
        name=client.name,
        client_type=client.client_type,
        token_endpoint_auth_method=client.token_endpoint_auth_method,
        has_secret=client.secret_hash is not None,
        redirect_uris=list(client.redirect_uris),
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
        backchannel_logout_uri=client.backchannel_logout_uri,
        grant_types=list(client.grant_types),
        scopes=list(client.scopes),
        require_pkce=client.require_pkce,
        id_token_signed_response_alg=client.id_token_signed_response_alg,
        access_token_format=client.access_token_format,
        dpop_bound=client.dpop_bound,
        jwks=client.jwks,
        first_party=client.first_party,
        subject_type=client.subject_type,
        sector_identifier=client.sector_identifier,
        created_at=client.created_at,
        disabled=client.disabled,
        disabled_at=client.disabled_at,
    )
