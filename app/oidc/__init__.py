"""The OpenID Connect provider (issue 10), as a capability of its own. So far
its foundations: signing keys, published at /.well-known/jwks.json beside the
receipt key and rotated by ``flask oidc-keys rotate``; and the client registry,
managed by ``flask oidc-clients``. No OAuth endpoint yet."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.capabilities import Capability
from app.oidc.client_models import OAuthClient
from app.oidc.key_models import SigningKey
from app.oidc.keys import SigningKeys
from app.services.container import Services

# The provider's tables, for Alembic and the test harness.
MODELS: tuple[type, ...] = (SigningKey, OAuthClient)


def init_app(app: Flask) -> None:
    from app.oidc.client_cli import oidc_clients
    from app.oidc.key_cli import oidc_keys

    app.cli.add_command(oidc_keys)
    app.cli.add_command(oidc_clients)


def published_keys(svc: Services) -> list[dict[str, Any]]:
    return SigningKeys.of(svc).jwks()


capability = Capability(
    name="oidc", models=MODELS, init_app=init_app, published_keys=published_keys
)
