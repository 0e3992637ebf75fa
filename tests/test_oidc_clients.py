"""The OAuth client registry: what an operator may register, secrets shown once
and stored only hashed, client authentication, exact redirect URI matching, and
the `flask oidc-clients` commands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask

from app.cli import unit_of_work
from app.errors import ServiceError
from app.oidc.clients import ClientRegistry, NewClient, Registered, client_registry
from app.security.tokens import hash_token
from tests.helpers import database_text, row_count

PARTNER = NewClient(
    name="Partner shop",
    client_type="confidential",
    token_endpoint_auth_method="client_secret_basic",
    redirect_uris=("https://rp.example/callback",),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "offline_access"),
)
PUBLIC_APP = NewClient(
    name="Mobile app",
    client_type="public",
    token_endpoint_auth_method="none",
    redirect_uris=("http://127.0.0.1:7000/cb",),
)
PUBLIC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}


@contextmanager
def registry(app: Flask) -> Iterator[ClientRegistry]:
    """The registry in its own committed unit of work, as a CLI command has it."""
    with app.app_context(), unit_of_work() as svc:
        yield client_registry(svc)


def register(app: Flask, new: NewClient = PARTNER, **changes: Any) -> Registered:
    with registry(app) as clients:
        return clients.register(replace(new, **changes))


def refusal(app: Flask, new: NewClient, **changes: Any) -> ServiceError:
    with pytest.raises(ServiceError) as refused, registry(app) as clients:
        clients.register(replace(new, **changes))
    return refused.value


def authenticates(app: Flask, client_id: str, secret: str) -> bool:
    with registry(app) as clients:
        return clients.authenticate_secret(client_id, secret) is not None


def bad(pointer: str, reason: str, base: NewClient = PARTNER, **changes: Any) -> Any:
    return pytest.param(base, changes, pointer, reason, id=f"{pointer}-{reason}")


PRIVATE_KEY_JWT = "private_key_jwt"
BAD_METADATA = [
    bad("#/redirect_uris/0", "not_https", redirect_uris=("http://rp.example/cb",)),
    bad("#/redirect_uris/0", "not_https", redirect_uris=("ftp://rp.example/cb",)),
    bad("#/redirect_uris/0", "not_absolute", redirect_uris=("/cb",)),
    bad("#/redirect_uris/0", "fragment", redirect_uris=("https://rp.example/cb#top",)),
    bad("#/redirect_uris/0", "wildcard", redirect_uris=("https://*.rp.example/cb",)),
    bad("#/redirect_uris/0", "wildcard", redirect_uris=("https://rp.example/*",)),
    bad("#/redirect_uris/0", "credentials", redirect_uris=("https://u:p@rp.example/cb",)),
    bad("#/redirect_uris/0", "whitespace", redirect_uris=("https://rp.example/a b",)),
    bad(
        "#/redirect_uris/1",
        "not_https",
        redirect_uris=("https://rp.example/ok", "http://localhost.rp.example/cb"),
    ),
    bad("#/redirect_uris", "redirect_uri_missing", redirect_uris=()),
    bad(
        "#/post_logout_redirect_uris/0",
        "not_https",
        post_logout_redirect_uris=("http://rp.example/bye",),
    ),
    bad("#/backchannel_logout_uri", "fragment", backchannel_logout_uri="https://rp.example/b#x"),
    bad("#/name", "name", name="  "),
    bad("#/client_type", "client_type", client_type="trusted"),
    bad(
        "#/token_endpoint_auth_method",
        "confidential_needs_auth",
        token_endpoint_auth_method="none",
    ),
    bad(
        "#/token_endpoint_auth_method", "auth_method", token_endpoint_auth_method="tls_client_auth"
    ),
    bad(
        "#/token_endpoint_auth_method",
        "public_needs_none",
        PUBLIC_APP,
        token_endpoint_auth_method="client_secret_post",
    ),
    bad("#/require_pkce", "public_needs_pkce", PUBLIC_APP, require_pkce=False),
    bad(
        "#/grant_types",
        "public_client_credentials",
        PUBLIC_APP,
        grant_types=("authorization_code", "client_credentials"),
    ),
    bad("#/jwks", "jwks_missing", token_endpoint_auth_method=PRIVATE_KEY_JWT),
    bad("#/jwks", "jwks_empty", token_endpoint_auth_method=PRIVATE_KEY_JWT, jwks={"keys": []}),
    bad(
        "#/jwks/keys/0",
        "private_key",
        token_endpoint_auth_method=PRIVATE_KEY_JWT,
        jwks={"keys": [{**PUBLIC_KEY, "d": "secret"}]},
    ),
    bad("#/jwks", "jwks_unused", jwks={"keys": [PUBLIC_KEY]}),
    bad("#/grant_types", "grant_types", grant_types=("authorization_code", "password")),
    bad("#/grant_types", "grant_types", grant_types=()),
    bad(
        "#/grant_types",
        "refresh_without_code",
        grant_types=("client_credentials", "refresh_token"),
        redirect_uris=(),
        scopes=(),
    ),
    bad("#/grant_types", "redirect_without_code", grant_types=("client_credentials",), scopes=()),
    bad("#/scopes", "offline_without_refresh", grant_types=("authorization_code",)),
    bad("#/scopes", "scopes", scopes=("openid", "admin")),
    bad("#/id_token_signed_response_alg", "alg", id_token_signed_response_alg="HS256"),
    bad("#/access_token_format", "token_format", access_token_format="macaroon"),
    bad("#/subject_type", "subject_type", subject_type="anonymous"),
    bad(
        "#/sector_identifier",
        "sector_identifier_missing",
        redirect_uris=("https://rp.example/cb", "https://shop.example/cb"),
    ),
    bad(
        "#/sector_identifier",
        "sector_unused",
        subject_type="public",
        sector_identifier="rp.example",
    ),
    bad("#/sector_identifier", "sector_unused", first_party=True, sector_identifier="rp.example"),
    *(
        bad("#/sector_identifier", "sector_identifier", sector_identifier=sector)
        for sector in (
            "https://rp.example",
            "rp.example/cb",
            "rp.example:443",
            "*.rp.example",
            "rp..example",
            "-rp.example",
            "rp.example.",
            "",
            "rp example",
            "a" * 64 + ".example",
            ".".join(["a" * 60] * 5),
        )
    ),
    bad(
        "#/sector_identifier",
        "sector_identifier",
        redirect_uris=(f"https://{'a' * 70}.example/cb",),
    ),
]


@pytest.mark.parametrize(("base", "changes", "pointer", "reason"), BAD_METADATA)
def test_bad_metadata_is_refused_with_its_reason_and_nothing_is_stored(
    app: Flask, base: NewClient, changes: dict[str, Any], pointer: str, reason: str
):
    error = refusal(app, base, **changes)
    expected = "invalid-redirect-uri" if pointer.startswith("#/redirect_uris/") else None
    assert error.slug == (expected or "invalid-client-metadata")
    assert error.status == 422
    assert (pointer, reason) in {(e.pointer, e.reason) for e in error.errors}
    assert row_count(app, "oauth_clients") == 0


def test_every_bad_field_is_named_at_once(app: Flask):
    error = refusal(
        app,
        PARTNER,
        redirect_uris=("http://rp.example/cb", "https://rp.example/cb#x"),
        scopes=("openid", "everything"),
    )
    assert error.slug == "invalid-redirect-uri"
    assert {(e.pointer, e.reason) for e in error.errors} == {
        ("#/redirect_uris/0", "not_https"),
        ("#/redirect_uris/1", "fragment"),
        ("#/scopes", "scopes"),
    }


def test_development_redirects_on_localhost_and_loopback_are_accepted(app: Flask):
    uris = ("http://localhost:8080/cb", "http://127.0.0.1/cb", "https://rp.example/cb?app=1")
    client = register(app, redirect_uris=uris, sector_identifier="rp.example").client
    assert client.redirect_uris == list(uris)


def test_a_public_client_has_no_secret_and_always_needs_pkce(app: Flask):
    registered = register(app, PUBLIC_APP)
    assert registered.secret is None
    assert registered.client.secret_hash is None
    assert registered.client.require_pkce is True
    assert not authenticates(app, registered.client.client_id, "")


def test_a_confidential_client_may_turn_pkce_off(app: Flask):
    assert register(app, require_pkce=False).client.require_pkce is False
    assert register(app).client.require_pkce is True


def test_a_private_key_jwt_client_keeps_its_public_keys_and_no_secret(app: Flask):
    registered = register(
        app,
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [PUBLIC_KEY]},
        grant_types=("authorization_code", "refresh_token", "client_credentials"),
        id_token_signed_response_alg="ES256",
        access_token_format="opaque",
        dpop_bound=True,
    )
    assert registered.secret is None
    with registry(app) as clients:
        client = clients.get(registered.client.client_id)
        assert client.jwks == {"keys": [PUBLIC_KEY]}
        assert (client.id_token_signed_response_alg, client.access_token_format) == (
            "ES256",
            "opaque",
        )
        assert client.dpop_bound is True
        with pytest.raises(ServiceError) as refused:
            clients.rotate_secret(client.client_id)
    assert refused.value.slug == "client-has-no-secret"


def test_the_secret_is_shown_once_and_only_its_hash_is_stored(app: Flask):
    registered = register(app)
    assert registered.secret is not None and len(registered.secret) >= 43
    stored = database_text(app)
    assert registered.secret not in stored
    assert hash_token(registered.secret) in stored
    with registry(app) as clients:
        again = clients.get(registered.client.client_id)
        assert not hasattr(again, "secret")
    # Client ids are random, URL-safe, and never read as a command-line option.
    ids = {register(app).client.client_id for _ in range(20)} | {registered.client.client_id}
    assert len(ids) == 21
    assert all(re.fullmatch(r"[0-9a-f]{32}", client_id) for client_id in ids)


def test_authenticate_with_the_right_secret_only(app: Flask):
    registered = register(app)
    client_id, secret = registered.client.client_id, registered.secret
    assert secret is not None
    assert authenticates(app, client_id, secret)
    assert not authenticates(app, client_id, secret[:-1])
    assert not authenticates(app, client_id, "")
    assert not authenticates(app, "no-such-client", secret)
    assert not authenticates(app, register(app).client.client_id, secret)


def test_a_disabled_client_cannot_authenticate_and_is_not_found(app: Flask):
    registered = register(app)
    client_id, secret = registered.client.client_id, registered.secret
    assert secret is not None
    with registry(app) as clients:
        first = clients.disable(client_id).disabled_at
        assert first is not None
        assert clients.disable(client_id).disabled_at == first
    assert not authenticates(app, client_id, secret)
    with pytest.raises(ServiceError) as refused, registry(app) as clients:
        clients.get(client_id)
    assert refused.value.slug == "not-found"
    with pytest.raises(ServiceError), registry(app) as clients:
        clients.rotate_secret(client_id)


def test_rotating_the_secret_ends_the_old_one_at_once(app: Flask):
    registered = register(app)
    client_id, old = registered.client.client_id, registered.secret
    assert old is not None
    with registry(app) as clients:
        new = clients.rotate_secret(client_id).secret
    assert new is not None and new != old
    assert not authenticates(app, client_id, old)
    assert authenticates(app, client_id, new)
    stored = database_text(app)
    assert new not in stored and hash_token(old) not in stored


REGISTERED_URI = "https://rp.example/callback"


@pytest.mark.parametrize(
    "presented",
    [
        "https://rp.example/callback/",
        "https://RP.example/callback",
        "HTTPS://rp.example/callback",
        "https://rp.example/Callback",
        "https://rp.example/callback?next=/admin",
        "https://rp.example/callback?",
        "https://rp.example/callback#",
        "https://rp.example:443/callback",
        "https://rp.example:8443/callback",
        "https://rp.example/callback%2F",
        "https://rp.example/callback/../callback",
        "http://rp.example/callback",
        "https://rp.example.evil/callback",
        " https://rp.example/callback",
        "",
    ],
)
def test_a_redirect_uri_must_match_exactly(app: Flask, presented: str):
    client = register(
        app,
        redirect_uris=(REGISTERED_URI, "http://localhost:8080/cb"),
        sector_identifier="rp.example",
    ).client
    assert ClientRegistry.exact_redirect_uri(client, REGISTERED_URI)
    assert ClientRegistry.exact_redirect_uri(client, "http://localhost:8080/cb")
    assert not ClientRegistry.exact_redirect_uri(client, presented)


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["oidc-clients", *args])


def test_cli_add_list_rotate_disable(app: Flask):
    added = cli(
        app,
        "add",
        "--name",
        "Partner shop",
        "--type",
        "confidential",
        "--auth-method",
        "client_secret_post",
        "--redirect-uri",
        "https://rp.example/a",
        "--redirect-uri",
        "https://rp.example/b",
        "--scope",
        "openid",
        "--scope",
        "email",
    )
    assert added.exit_code == 0, added.output
    client_id = re.search(r"client_id: (\S+)", added.stdout).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret: (\S+)", added.stdout).group(1)  # type: ignore[union-attr]
    assert "shown only this once" in added.stderr
    assert authenticates(app, client_id, secret)
    with registry(app) as clients:
        client = clients.get(client_id)
        assert client.redirect_uris == ["https://rp.example/a", "https://rp.example/b"]
        assert client.scopes == ["openid", "email"]
        assert client.token_endpoint_auth_method == "client_secret_post"

    listed = cli(app, "list")
    assert listed.exit_code == 0
    assert client_id in listed.stdout and "Partner shop" in listed.stdout
    assert "active" in listed.stdout and "https://rp.example/b" in listed.stdout
    assert secret not in listed.output and hash_token(secret) not in listed.output

    rotated = cli(app, "rotate-secret", client_id)
    assert rotated.exit_code == 0
    new = re.search(r"client_secret: (\S+)", rotated.stdout).group(1)  # type: ignore[union-attr]
    assert not authenticates(app, client_id, secret)
    assert authenticates(app, client_id, new)

    disabled = cli(app, "disable", client_id)
    assert disabled.exit_code == 0 and "disabled" in disabled.stdout
    assert not authenticates(app, client_id, new)
    assert re.search(rf"{re.escape(client_id)} .*disabled", cli(app, "list").stdout)
    assert new not in cli(app, "list").output


def test_cli_refuses_bad_metadata_saying_why(app: Flask):
    refused = cli(
        app,
        "add",
        "--name",
        "Partner",
        "--type",
        "public",
        "--auth-method",
        "client_secret_basic",
        "--redirect-uri",
        "https://rp.example/cb#frag",
    )
    assert refused.exit_code != 0
    assert "fragment" in refused.stderr and "authentication method is none" in refused.stderr
    assert row_count(app, "oauth_clients") == 0
    unknown = cli(app, "rotate-secret", "no-such-client")
    assert unknown.exit_code != 0 and "not found" in unknown.stderr


def test_cli_public_client_gets_no_secret(app: Flask):
    added = cli(
        app,
        "add",
        "--name",
        "Mobile app",
        "--type",
        "public",
        "--auth-method",
        "none",
        "--redirect-uri",
        "http://127.0.0.1:7000/cb",
    )
    assert added.exit_code == 0, added.output
    assert "client_id: " in added.stdout and "client_secret" not in added.output


def test_operator_changes_to_a_client_are_audited(app: Flask):
    added = cli(
        app,
        "add",
        "--name",
        "Partner",
        "--type",
        "confidential",
        "--auth-method",
        "client_secret_basic",
        "--redirect-uri",
        "https://rp.example/cb",
    )
    client_id = re.search(r"client_id: (\S+)", added.stdout).group(1)  # type: ignore[union-attr]
    cli(app, "rotate-secret", client_id)
    cli(app, "disable", client_id)
    cli(app, "disable", client_id)  # already disabled: nothing new to record
    with app.app_context(), unit_of_work() as svc:
        events = [
            (event.event_type, event.actor_id, event.details)
            for event in svc.audit.events()
            if event.event_type.startswith("oauth_client")
        ]
    assert events == [
        ("oauth_client_registered", "cli", {"client": client_id}),
        ("oauth_client_secret_rotated", "cli", {"client": client_id}),
        ("oauth_client_disabled", "cli", {"client": client_id}),
    ]


# -- subjects: who is first-party, which sub a client sees, for which sector ----


def test_a_partner_gets_pairwise_subjects_for_its_redirect_host(app: Flask):
    client = register(
        app, redirect_uris=("https://RP.example/a", "https://rp.example:8443/b")
    ).client
    assert (client.first_party, client.subject_type) == (False, "pairwise")
    assert client.sector_identifier == "rp.example"


def test_a_first_party_app_gets_public_subjects_unless_told_otherwise(app: Flask):
    own = register(app, first_party=True).client
    assert (own.first_party, own.subject_type, own.sector_identifier) == (True, "public", None)
    pairwise = register(app, first_party=True, subject_type="pairwise").client
    assert (pairwise.subject_type, pairwise.sector_identifier) == ("pairwise", "rp.example")
    public_partner = register(app, subject_type="public").client
    assert (public_partner.first_party, public_partner.subject_type) == (False, "public")


def test_several_redirect_hosts_need_a_named_sector(app: Flask):
    uris = ("https://rp.example/cb", "https://m.rp.example/cb")
    client = register(app, redirect_uris=uris, sector_identifier="RP.Example").client
    # Host names are case-insensitive: the sector is kept in one spelling.
    assert client.sector_identifier == "rp.example"
    assert client.redirect_uris == list(uris)
    # Public subjects need no sector, whatever the hosts.
    assert register(app, redirect_uris=uris, first_party=True).client.sector_identifier is None


def test_a_machine_client_has_no_sector(app: Flask):
    client = register(
        app, grant_types=("client_credentials",), redirect_uris=(), scopes=("identity",)
    ).client
    assert (client.subject_type, client.sector_identifier) == ("pairwise", None)


def test_cli_registers_first_party_and_sector_settings(app: Flask):
    def add(*extra: str) -> Any:
        return cli(
            app,
            "add",
            "--name",
            "App",
            "--type",
            "confidential",
            "--auth-method",
            "client_secret_basic",
            "--redirect-uri",
            "https://a.example/cb",
            "--redirect-uri",
            "https://b.example/cb",
            *extra,
        )

    refused = add()
    assert refused.exit_code != 0 and "#/sector_identifier" in refused.stderr
    assert "several hosts" in refused.stderr
    assert row_count(app, "oauth_clients") == 0

    partner = add("--sector-identifier", "a.example")
    own = add("--first-party")
    odd = add("--first-party", "--subject-type", "pairwise", "--sector-identifier", "b.example")
    assert {partner.exit_code, own.exit_code, odd.exit_code} == {0}, own.output
    with registry(app) as clients:
        settings = {(c.first_party, c.subject_type, c.sector_identifier) for c in clients.all()}
    assert settings == {
        (False, "pairwise", "a.example"),
        (True, "public", None),
        (True, "pairwise", "b.example"),
    }
    listed = cli(app, "list").stdout
    assert "partner, pairwise subjects for a.example" in listed
    assert "first-party, public subjects" in listed
    bad_type = add("--subject-type", "anonymous")
    assert bad_type.exit_code != 0 and row_count(app, "oauth_clients") == 3
