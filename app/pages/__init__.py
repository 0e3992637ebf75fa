"""Server-rendered end-user pages (issue 9), beside the JSON API.

``init_pages`` wires Flask-Babel (app/pages/i18n.py) and registers the pages'
blueprint. Each page area may keep its own ``translations/`` folder anywhere
under app/pages/; they are all found here, so parallel work never edits one
shared catalogue. Views stay thin: they call the same services the API calls.
"""

from __future__ import annotations

from flask import Flask

from app.pages.i18n import init_babel


def init_pages(app: Flask) -> None:
    from app.pages import views

    init_babel(app)
    app.register_blueprint(views.bp)
