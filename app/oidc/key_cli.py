"""Operator command for the signing keys: ``flask oidc-keys rotate``."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.oidc.keys import ALGORITHMS, DEFAULT_ALGORITHM, Algorithm, RotationRaced, SigningKeys

oidc_keys = AppGroup("oidc-keys", help="The OpenID provider's token signing keys.")


@oidc_keys.command("rotate")
@click.option("--alg", type=click.Choice(ALGORITHMS), default=DEFAULT_ALGORITHM, show_default=True)
@click.option(
    "--at-once",
    is_flag=True,
    help="Sign with the new key now (a leaked key), not after every worker has published it.",
)
def rotate_command(alg: Algorithm, at_once: bool) -> None:
    """Make a new signing key for ALG and print its kid. It is published now
    and signs once every worker has seen it (PRIVID_OIDC_KEY_CACHE_SECONDS);
    the old one signs until then and stays in the JWKS until the tokens it
    signed have expired."""
    from app.cli import unit_of_work

    try:
        with unit_of_work() as svc:
            kid = SigningKeys.of(svc).rotate(alg, at_once=at_once).new.kid
    except RotationRaced as raced:
        raise click.ClickException(str(raced)) from None
    click.echo(kid)
