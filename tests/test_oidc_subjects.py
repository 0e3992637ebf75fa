"""The ``sub`` a client is told: the user id for public subjects; for pairwise
ones a value per sector and user that no one can link or reverse without the
service's secret."""

from __future__ import annotations

import base64
import os
import re
import uuid
from dataclasses import replace

import pytest
from flask import Flask

from app import build_runtime
from app.cli import unit_of_work
from app.oidc.client_models import OAuthClient
from app.oidc.clients import NewClient, client_registry
from app.oidc.subjects import subject_for
from app.services.container import Services
from app.settings import Settings

PARTNER = NewClient(
    name="Partner shop",
    client_type="confidential",
    token_endpoint_auth_method="client_secret_basic",
    redirect_uris=("https://shop.example/cb",),
)
USER = str(uuid.uuid4())
OTHER_USER = str(uuid.uuid4())


def registered(app: Flask, **changes: object) -> OAuthClient:
    with app.app_context(), unit_of_work() as svc:
        return client_registry(svc).register(replace(PARTNER, **changes)).client  # type: ignore[arg-type]


def sub(app: Flask, client: OAuthClient, user_id: str = USER) -> str:
    with app.app_context(), unit_of_work() as svc:
        return subject_for(svc, client, user_id)


def test_a_public_subject_is_the_user_id(app: Flask):
    own = registered(app, first_party=True)
    assert sub(app, own) == USER
    assert sub(app, own, OTHER_USER) == OTHER_USER


def test_clients_of_one_sector_agree_on_the_pairwise_subject(app: Flask):
    shop = registered(app)
    checkout = registered(app, redirect_uris=("https://shop.example/checkout/cb",))
    # Another host, put in the shop's sector by the operator.
    app_site = registered(
        app,
        redirect_uris=("https://m.shop-app.example/cb", "https://shop.example/m"),
        sector_identifier="shop.example",
    )
    value = sub(app, shop)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)  # SHA-256, base64url, no padding
    assert sub(app, checkout) == sub(app, app_site) == value
    assert sub(app, shop) == value  # and the same every time


def test_sectors_and_users_get_unrelated_pairwise_subjects(app: Flask):
    shop = registered(app)
    bank = registered(app, redirect_uris=("https://bank.example/cb",))
    lookalike = registered(app, redirect_uris=("https://shop.example.evil/cb",))
    values = {
        sub(app, shop),
        sub(app, bank),
        sub(app, lookalike),
        sub(app, shop, OTHER_USER),
        sub(app, bank, OTHER_USER),
    }
    assert len(values) == 5
    assert all(USER not in v and OTHER_USER not in v for v in values)
    # A first-party app set to pairwise gets pairwise values too.
    own = registered(app, first_party=True, subject_type="pairwise")
    assert sub(app, own) == sub(app, shop)


def test_without_the_service_secret_the_subject_cannot_be_recomputed(
    app: Flask, settings: Settings
):
    shop = registered(app)
    other_secret = base64.b64encode(os.urandom(32)).decode()
    other = build_runtime(Settings(**{**settings.model_dump(), "secret_key": other_secret}))
    with app.app_context(), unit_of_work() as svc:
        elsewhere = subject_for(Services(svc.db, other), shop, USER)
    assert elsewhere != sub(app, shop)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", elsewhere)


def test_a_client_no_user_signs_in_to_has_no_pairwise_subject(app: Flask):
    machine = registered(
        app, grant_types=("client_credentials",), redirect_uris=(), scopes=("identity",)
    )
    with pytest.raises(ValueError, match="no sector"):
        sub(app, machine)
