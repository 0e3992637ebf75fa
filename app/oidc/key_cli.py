"""Operator command for the signing keys: ``flask oidc-keys rotate``."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.oidc.keys import ALGORITHMS, DEFAULT_ALGORITHM, Algorithm, RotationRaced, SigningKeys

oidc_keys = AppGroup("oidc-keys", help="The OpenID provider's token signing keys.")


@oidc_keys.command("rotate")
@click.option("--alg", type=click.Choice(ALGORITHMS), default=DEFAULT_ALGORITHM, show_default=True)
def rotate_command(alg: Algorithm) -> None:
    """Make a new signing key active for ALG and print its kid; the old one
    stays in the JWKS until the tokens it signed have expired."""
    from app.cli import unit_of_work

    try:
        with unit_of_work() as svc:
            kid = SigningKeys.of(svc).rotate(alg).new.kid
    except RotationRaced as raced:
        raise click.ClickException(str(raced)) from None
    click.echo(kid)
