"""Operator commands for OAuth clients: `flask oidc-clients add|list|rotate-secret|disable`.
Secrets are printed once, when made, and never again."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from app.cli import unit_of_work
from app.errors import ServiceError
from app.oidc.client_models import (
    AuthMethod,
    ClientType,
    GrantType,
    SigningAlg,
    SubjectType,
    TokenFormat,
)
from app.oidc.clients import SCOPES, NewClient, Registered, client_registry

SECRET_NOTICE = "store the secret now: it is shown only this once"


def _values(choices: type[StrEnum]) -> list[str]:
    # click matches an Enum's member names, not its values: offer the values.
    return [choice.value for choice in choices]


def _fail(error: ServiceError) -> click.ClickException:
    if not error.errors:
        return click.ClickException(error.detail)
    lines = [f"{error.title}:"] + [f"  {e.pointer}: {e.detail}" for e in error.errors]
    return click.ClickException("\n".join(lines))


def _echo_secret(registered: Registered) -> None:
    click.echo(f"client_id: {registered.client.client_id}")
    if registered.secret is not None:
        click.echo(f"client_secret: {registered.secret}")
        click.echo(SECRET_NOTICE, err=True)


# An AppGroup runs each command inside the app context, as app.cli's do.
oidc_clients = AppGroup(
    "oidc-clients", help="Register and manage the OAuth clients of the OpenID provider."
)


@oidc_clients.command("add")
@click.option("--name", required=True)
@click.option("--type", "client_type", required=True, type=click.Choice(_values(ClientType)))
@click.option("--auth-method", required=True, type=click.Choice(_values(AuthMethod)))
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(_values(GrantType)),
    help="Repeatable; default authorization_code",
)
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES), help="default openid")
@click.option("--pkce/--no-pkce", default=None, help="Confidential clients only may turn it off")
@click.option(
    "--signing-alg", default=SigningAlg.RS256.value, type=click.Choice(_values(SigningAlg))
)
@click.option(
    "--token-format", default=TokenFormat.JWT.value, type=click.Choice(_values(TokenFormat))
)
@click.option("--dpop-bound/--not-dpop-bound", default=False)
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option(
    "--first-party/--partner", default=False, help="The platform's own app; default partner"
)
@click.option(
    "--subject-type",
    default=None,
    type=click.Choice(_values(SubjectType)),
    help="default: public for first-party apps, pairwise for partners",
)
@click.option(
    "--sector-identifier",
    default=None,
    help="Host pairwise subjects are computed for; default the redirect URIs' one host",
)
def add_command(
    name: str,
    client_type: str,
    auth_method: str,
    redirect_uris: tuple[str, ...],
    post_logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    grant_types: tuple[str, ...],
    scopes: tuple[str, ...],
    pkce: bool | None,
    signing_alg: str,
    token_format: str,
    dpop_bound: bool,
    jwks_file: str | None,
    first_party: bool,
    subject_type: str | None,
    sector_identifier: str | None,
) -> None:
    """Register a client; prints its client_id and, once, its secret."""
    jwks: dict[str, Any] | None = None
    if jwks_file is not None:
        try:
            jwks = json.loads(Path(jwks_file).read_text(encoding="utf-8"))
        except ValueError:
            raise click.ClickException("the JWKS file is not JSON") from None
    new = NewClient(
        name=name,
        client_type=client_type,
        token_endpoint_auth_method=auth_method,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout_uris,
        backchannel_logout_uri=backchannel_logout_uri,
        grant_types=grant_types or (GrantType.AUTHORIZATION_CODE,),
        scopes=scopes or ("openid",),
        require_pkce=pkce,
        id_token_signed_response_alg=signing_alg,
        access_token_format=token_format,
        dpop_bound=dpop_bound,
        jwks=jwks,
        first_party=first_party,
        subject_type=subject_type,
        sector_identifier=sector_identifier,
    )
    with unit_of_work() as svc:
        try:
            registered = client_registry(svc).register(new, actor_id="cli")
        except ServiceError as error:
            raise _fail(error) from None
        _echo_secret(registered)


@oidc_clients.command("list")
def list_command() -> None:
    """Every client with its settings (never a secret)."""
    with unit_of_work() as svc:
        for client in client_registry(svc).all():
            state = "disabled" if client.disabled else "active"
            click.echo(
                f"{client.client_id}  {client.name}  {client.client_type}  "
                f"{client.token_endpoint_auth_method}  {state}"
            )
            party = "first-party" if client.first_party else "partner"
            sector = f" for {client.sector_identifier}" if client.sector_identifier else ""
            click.echo(f"  {party}, {client.subject_type} subjects{sector}")
            click.echo(f"  grants: {' '.join(client.grant_types)}")
            click.echo(f"  scopes: {' '.join(client.scopes)}")
            for uri in client.redirect_uris:
                click.echo(f"  redirect: {uri}")


@oidc_clients.command("rotate-secret")
@click.argument("client_id")
def rotate_secret_command(client_id: str) -> None:
    """Replace a client's secret; the old one stops working at once."""
    with unit_of_work() as svc:
        try:
            registered = client_registry(svc).rotate_secret(client_id, actor_id="cli")
        except ServiceError as error:
            raise _fail(error) from None
        _echo_secret(registered)


@oidc_clients.command("disable")
@click.argument("client_id")
def disable_command(client_id: str) -> None:
    """Disable a client at once: it can no longer authenticate or be used."""
    with unit_of_work() as svc:
        try:
            client = client_registry(svc).disable(client_id, actor_id="cli")
        except ServiceError as error:
            raise _fail(error) from None
        click.echo(f"{client.client_id} disabled at {client.disabled_at:%Y-%m-%d %H:%M:%S} UTC")
