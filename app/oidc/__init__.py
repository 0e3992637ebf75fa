"""The OpenID Connect provider (issue 10), as a capability of its own:
authlib's authorisation server over this service's sessions, pages, consent
ledger and signing keys. Machine endpoints answer on the OAuth surface (RFC
6749 errors); the authorisation endpoint and the partner's approval page on
the pages surface; the operators' client API on the JSON API. Clients are
registered by operators (``flask oidc-clients`` or /api/v1/admin/oauth-clients);
signing keys rotate with ``flask oidc-keys rotate``."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.api.problems import JSON_API
from app.capabilities import Capability
from app.oidc import admin_api
from app.oidc.authorize_views import bp as authorize_bp
from app.oidc.backchannel import RENDERER, on_sessions_ended, render
from app.oidc.client_models import OAuthClient
from app.oidc.endings import end_account_grants, register_withdrawal_effects
from app.oidc.export import SECTION as EXPORT_SECTION
from app.oidc.form_targets import form_targets
from app.oidc.grant_models import AuthorizationCode, ClientAuthorization, IssuedToken, TokenGrant
from app.oidc.key_models import SigningKey
from app.oidc.keys import SigningKeys
from app.oidc.logout_views import bp as logout_bp
from app.oidc.oauth_views import bp as oauth_bp
from app.oidc.partner_api import bp as partners_api_bp
from app.oidc.privacy.views import NAV_LABEL
from app.oidc.privacy.views import bp as partner_pages_bp
from app.oidc.retention import purge
from app.oidc.surface import OAUTH
from app.pages.surface import PAGES
from app.services.container import Services

# The provider's tables, for Alembic and the test harness.
MODELS: tuple[type, ...] = (
    SigningKey,
    OAuthClient,
    ClientAuthorization,
    TokenGrant,
    AuthorizationCode,
    IssuedToken,
)


def init_app(app: Flask) -> None:
    from app.oidc.client_cli import oidc_clients
    from app.oidc.key_cli import oidc_keys
    from app.oidc.resource import Introspection, Revocation
    from app.oidc.server import build_server

    server = build_server(app)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    app.cli.add_command(oidc_keys)
    app.cli.add_command(oidc_clients)


def published_keys(svc: Services) -> list[dict[str, Any]]:
    return SigningKeys.of(svc).jwks()


capability = Capability(
    name="oidc",
    blueprints=(
        (oauth_bp, OAUTH),
        (authorize_bp, PAGES),
        (logout_bp, PAGES),
        (admin_api.bp, JSON_API),
        (partners_api_bp, JSON_API),
        (partner_pages_bp, PAGES),
    ),
    withdrawal_effects=register_withdrawal_effects,
    export_sections=(EXPORT_SECTION,),
    models=MODELS,
    init_app=init_app,
    published_keys=published_keys,
    session_ended=on_sessions_ended,
    outbox_renderers=((RENDERER, render),),
    account_ending=end_account_grants,
    retention_purge=purge,
    privacy_pages=(("oidc_privacy.partners", NAV_LABEL),),
    form_targets=form_targets,
)
