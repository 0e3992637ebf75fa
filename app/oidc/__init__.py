"""The OpenID Connect provider capability (issue 10): for now its client
registry and the operator commands that manage it."""

from __future__ import annotations

from flask import Flask

from app.capabilities import Capability
from app.oidc.client_models import OAuthClient


def init_app(app: Flask) -> None:
    from app.oidc.cli import oidc_clients

    app.cli.add_command(oidc_clients)


capability = Capability(name="oidc", models=(OAuthClient,), init_app=init_app)
