"""WeChat sign-in (issue 11), as a capability of its own: the website's QR
code, the official account inside WeChat's browser and the mobile app's SDK,
over linked identities (``linked_identities``, sealed under the account's data
key). Accounts made through WeChat have a verified phone and no email or
password until the person adds them; app/services/ways_in.py keeps one way in.
With no app id configured (the embedded default) nothing of it shows."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from sqlalchemy import delete
from sqlalchemy.orm import Session as DbSession

from app.api.problems import JSON_API
from app.capabilities import Capability
from app.http.scope import services
from app.models import User
from app.pages.surface import PAGES
from app.services.after_sign_in import register_after_sign_in
from app.services.consent import WithdrawalEffects
from app.services.context import RequestContext
from app.services.ways_in import kind_of, require_another
from app.settings import Settings
from app.wechat.api import bp as api_bp
from app.wechat.identities import EXPORT_SECTION, WAY_IN_PREFIX, ways_in
from app.wechat.models import LinkedIdentity
from app.wechat.pages import bp as pages_bp
from app.wechat.signin import LINK_AFTER_SIGN_IN, PURPOSE, WeChatSignIn


def unlink_on_withdrawal(db: DbSession, user_id: str) -> None:
    """wechat_login withdrawn (kept 0 days): WeChat is unlinked at once,
    refused while it is the account's last way in."""
    if ways_in(db, user_id):
        require_another(db, user_id, kind_of(WAY_IN_PREFIX))
        db.execute(delete(LinkedIdentity).where(LinkedIdentity.user_id == user_id))


def register_withdrawal_effects(effects: WithdrawalEffects) -> None:
    effects.register(PURPOSE, unlink_on_withdrawal)


def _offered(user_id: str | None = None) -> bool:
    """For the sign-in page: a WeChat button only when a browser flow is set
    up; for the step-up page (``user_id``), only when that account has WeChat."""
    settings: Settings = current_app.extensions["privid.runtime"].settings
    if not (settings.wechat_web_appid or settings.wechat_mp_appid):
        return False
    return user_id is None or bool(ways_in(services().db, user_id))


def _link_after_sign_in(user: User, sealed: Any, context: RequestContext) -> None:
    WeChatSignIn(services()).link_after_sign_in(user, sealed, context)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["wechat_offered"] = _offered
    register_after_sign_in(LINK_AFTER_SIGN_IN, _link_after_sign_in)


capability = Capability(
    name="wechat",
    blueprints=((pages_bp, PAGES), (api_bp, JSON_API)),
    withdrawal_effects=register_withdrawal_effects,
    export_sections=(EXPORT_SECTION,),
    models=(LinkedIdentity,),
    init_app=init_app,
    ways_in=ways_in,
)
