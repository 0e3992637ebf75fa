"""Pages show times in the zone working days are counted in (Asia/Shanghai
by default), not the server's UTC: a due day and a sign-in time agree."""

from __future__ import annotations

import pytest

from tests.helpers import register


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock  # 2026-11-27 09:00 UTC, 17:00 in Shanghai


def test_a_sessions_sign_in_time_is_shown_in_local_time(client, mailbox, sms) -> None:
    register(client, mailbox, sms, token_delivery="cookie")
    page = client.get("/account/sessions", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Nov 27, 2026, 5:00:00" in text
    assert "9:00:00" not in text
