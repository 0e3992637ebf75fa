"""Real-name identity verification (issue 12), as a capability of its own:
documents checked here (verification/documents.py), people checked by a
provider (verification/provider.py: the HTTPS adapter or the sandbox), and
only the result kept. It depends on the app's public interfaces; nothing in
``app`` imports it (tests/test_verification_package.py)."""

from __future__ import annotations

from pathlib import Path

from app.api.problems import JSON_API
from app.capabilities import Capability
from app.pages.surface import PAGES
from verification.api import bp as api_bp
from verification.claims import identity_claims
from verification.lifecycle import EXPORT_SECTION, erase, purge, register_withdrawal_effects
from verification.models import IdentityVerification
from verification.pages import NAV_LABEL
from verification.pages import bp as pages_bp
from verification.wiring import install_provider

capability = Capability(
    name="verification",
    blueprints=((api_bp, JSON_API), (pages_bp, PAGES)),
    withdrawal_effects=register_withdrawal_effects,
    export_sections=(EXPORT_SECTION,),
    models=(IdentityVerification,),
    init_app=install_provider,
    account_ending=erase,
    retention_purge=purge,
    privacy_pages=(("verification_pages.identity", NAV_LABEL),),
    user_claims=identity_claims,
    translations=str(Path(__file__).resolve().parent / "translations"),
)
