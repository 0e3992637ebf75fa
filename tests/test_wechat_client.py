"""The WeChat adapter against the fake WeChat on 127.0.0.1: the /sns/ calls,
errcodes, bounded retries (busy and network failures only, never for a code
exchange), timeouts, answers that are not WeChat's JSON, and secrets kept
out of messages and reprs."""

from __future__ import annotations

import time

import pytest

from app.settings import Settings
from app.wechat.client import HttpWeChatApi, WeChatRefused, WeChatUnavailable
from tests.fakes import free_port
from tests.wechat_helpers import APP_APPID, APP_SECRET, TIMEOUT, fake_wechat, wechat

__all__ = ["fake_wechat", "wechat"]  # fixtures


@pytest.fixture
def api(fake_wechat) -> HttpWeChatApi:
    return HttpWeChatApi(fake_wechat.url, timeout=TIMEOUT, retries=2)


def _grant(api: HttpWeChatApi, wechat, person: str = "alice", scope: str = "snsapi_userinfo"):
    return api.exchange_code(APP_APPID, APP_SECRET, wechat.issue_code(APP_APPID, person, scope))


def test_a_code_gives_tokens_the_openid_and_the_unionid(api, wechat):
    grant = _grant(api, wechat)
    assert grant.openid == wechat.openid(APP_APPID, "alice")
    assert grant.unionid == "union-alice" and grant.scope == "snsapi_userinfo"
    assert grant.access_token not in repr(grant)
    profile = api.user_info(grant.access_token, grant.openid)
    assert profile.nickname == "爱丽丝" and profile.unionid == "union-alice"
    assert _grant(api, wechat, "bob").unionid is None


def test_a_code_works_once(api, wechat):
    code = wechat.issue_code(APP_APPID, "alice", "snsapi_base")
    api.exchange_code(APP_APPID, APP_SECRET, code)
    with pytest.raises(WeChatRefused) as used:
        api.exchange_code(APP_APPID, APP_SECRET, code)
    assert used.value.errcode == 40163
    with pytest.raises(WeChatRefused) as invalid:
        api.exchange_code(APP_APPID, APP_SECRET, "no-such-code")
    assert invalid.value.errcode == 40029


def test_wrong_credentials_are_errcodes_and_never_show_the_secret(api, wechat):
    code = wechat.issue_code(APP_APPID, "alice", "snsapi_base")
    with pytest.raises(WeChatRefused) as wrong:
        api.exchange_code(APP_APPID, "not-the-secret-000", code)
    assert wrong.value.errcode == 40001
    with pytest.raises(WeChatRefused) as unknown:
        api.exchange_code("wx-unknown", APP_SECRET, code)
    assert unknown.value.errcode == 40013
    assert APP_SECRET not in str(unknown.value) and APP_SECRET not in repr(api)


def test_the_code_exchange_is_never_retried(api, wechat):
    wechat.fail_next("/sns/oauth2/access_token", "busy")
    with pytest.raises(WeChatRefused) as busy:
        _grant(api, wechat)
    assert busy.value.errcode == -1
    assert wechat.calls_to("/sns/oauth2/access_token") == 1


def test_busy_is_retried_a_bounded_number_of_times(api, wechat):
    grant = _grant(api, wechat)
    wechat.fail_next("/sns/userinfo", "busy")
    assert api.user_info(grant.access_token, grant.openid).nickname == "爱丽丝"
    assert wechat.calls_to("/sns/userinfo") == 2
    wechat.calls.clear()
    wechat.fail_next("/sns/userinfo", "busy", times=5)
    with pytest.raises(WeChatRefused):
        api.user_info(grant.access_token, grant.openid)
    assert wechat.calls_to("/sns/userinfo") == 3  # 1 + 2 retries


def test_other_errcodes_are_not_retried(api, wechat):
    grant = _grant(api, wechat)
    wechat.fail_next("/sns/userinfo", "errcode", errcode=45011)
    with pytest.raises(WeChatRefused) as refused:
        api.user_info(grant.access_token, grant.openid)
    assert refused.value.errcode == 45011 and wechat.calls_to("/sns/userinfo") == 1


@pytest.mark.parametrize("mode", ["malformed", "html"])
def test_answers_that_are_not_wechat_json_are_unavailable(api, wechat, mode: str):
    wechat.fail_next("/sns/oauth2/access_token", mode)
    with pytest.raises(WeChatUnavailable):
        _grant(api, wechat)


def test_a_slow_answer_times_out_and_a_network_failure_is_retried(api, wechat):
    grant = _grant(api, wechat)
    wechat.fail_next("/sns/userinfo", "slow", seconds=TIMEOUT * 3)
    started = time.monotonic()
    # The slow call times out; the retry gets the answer.
    assert api.user_info(grant.access_token, grant.openid).openid == grant.openid
    assert time.monotonic() - started < TIMEOUT * 3
    assert wechat.calls_to("/sns/userinfo") == 2


def test_nobody_listening_is_unavailable_within_the_bound():
    api = HttpWeChatApi(f"http://127.0.0.1:{free_port()}", timeout=TIMEOUT, retries=2)
    started = time.monotonic()
    with pytest.raises(WeChatUnavailable):
        api.check_token("token", "openid")
    assert time.monotonic() - started < 3 * TIMEOUT + 2.0  # three tries and short pauses


def test_refresh_and_token_check(api, wechat):
    grant = _grant(api, wechat)
    assert api.check_token(grant.access_token, grant.openid) is True
    wechat.expire_tokens()
    assert api.check_token(grant.access_token, grant.openid) is False
    with pytest.raises(WeChatRefused) as expired:
        api.user_info(grant.access_token, grant.openid)
    assert expired.value.errcode == 42001
    fresh = api.refresh(APP_APPID, grant.refresh_token)
    assert fresh.openid == grant.openid
    assert api.check_token(fresh.access_token, fresh.openid) is True
    with pytest.raises(WeChatRefused) as bad:
        api.refresh(APP_APPID, "no-such-refresh-token")
    assert bad.value.errcode == 40030


def test_secrets_are_not_in_the_settings_repr():
    settings = Settings(wechat_app_appid=APP_APPID, wechat_app_secret=APP_SECRET)  # type: ignore[arg-type]
    assert APP_SECRET not in repr(settings) and APP_SECRET not in str(settings.model_dump())
