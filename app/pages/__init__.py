"""Server-rendered end-user pages, beside the JSON API: a capability of its
own, on the pages surface (HTML errors, a CSP with a script nonce).

Flask-Babel is wired by app/pages/i18n.py. Each page area may keep its own
``translations/`` folder anywhere under app/pages/; they are all found there,
so parallel work never edits one shared catalogue. Views stay thin: they call
the same services the API calls, behind the same access gate."""

from __future__ import annotations

from app.capabilities import Capability
from app.pages.i18n import init_babel
from app.pages.signup.views import bp as signup_bp
from app.pages.surface import PAGES
from app.pages.views import bp

capability = Capability(
    name="pages", blueprints=((bp, PAGES), (signup_bp, PAGES)), init_app=init_babel
)
