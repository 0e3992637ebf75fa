"""OpenID Provider Metadata (OIDC Discovery 1.0 section 3; RFC 8414): what
this provider supports, exactly. Each value is derived from the code that
implements it, so the document cannot promise what the provider does not do."""

from __future__ import annotations

from typing import Any

from app.oidc.claims import SCOPE_CLAIMS, SUPPORTED_CLAIMS
from app.oidc.client_models import AuthMethod, GrantType
from app.oidc.keys import ALGORITHMS
from app.oidc.resource import CLIENT_AUTH_METHODS
from app.oidc.signed_tokens import issuer
from app.security.dpop import SUPPORTED_ALGORITHMS as DPOP_ALGORITHMS
from app.services.container import Services
from app.services.sessions import ACR_ORDER

LANGUAGES = ["zh-CN", "en"]


def configuration(svc: Services) -> dict[str, Any]:
    base = issuer(svc)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "end_session_endpoint": f"{base}/oauth/logout",
        "scopes_supported": list(SCOPE_CLAIMS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [g.value for g in GrantType],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "token_endpoint_auth_methods_supported": [m.value for m in AuthMethod],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": SUPPORTED_CLAIMS,
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "acr_values_supported": [a.value for a in ACR_ORDER],
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": LANGUAGES,
        "claims_locales_supported": LANGUAGES,
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        "authorization_response_iss_parameter_supported": True,
        # OIDC Back-Channel Logout 1.0 (app/oidc/backchannel.py): every token has sid.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }
