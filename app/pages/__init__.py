"""Server-rendered end-user pages, beside the JSON API: a capability of its
own, on the pages surface (HTML errors, a CSP with a script nonce).

Flask-Babel is wired by app/pages/i18n.py. Each page area may keep its own
``translations/`` folder anywhere under app/pages/; they are all found there,
so parallel work never edits one shared catalogue. Views stay thin: they call
the same services the API calls, behind the same access gate."""

from __future__ import annotations

from app.capabilities import Capability
from app.pages.account.views import bp as account_bp
from app.pages.i18n import init_babel
from app.pages.privacy.views import bp as privacy_bp
from app.pages.signin.views import bp as signin_bp
from app.pages.signup.views import bp as signup_bp
from app.pages.surface import PAGES
from app.pages.views import bp as common_bp

# One blueprint per page area, each with its own templates and catalogue.
AREAS = (common_bp, signin_bp, signup_bp, account_bp, privacy_bp)

capability = Capability(
    name="pages", blueprints=tuple((area, PAGES) for area in AREAS), init_app=init_babel
)
