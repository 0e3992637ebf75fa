"""privid: create_app() wires settings, database, services and blueprints."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, g
from limits.storage import Storage, storage_from_string
from werkzeug.middleware.proxy_fix import ProxyFix

from app.adapters.messages import (
    ConsoleEmailSender,
    ConsoleSmsSender,
    EmailSender,
    SmsSender,
)
from app.adapters.sms_http import HttpSmsSender
from app.adapters.smtp import SmtpEmailSender
from app.api.converters import CodeConverter, IdConverter
from app.clock import Clock, SystemClock
from app.db import make_engine, make_session_factory
from app.extensions import limiter
from app.resources import resource_dir
from app.security.blind_index import BlindIndex
from app.security.dpop import DpopVerifier
from app.security.envelope import KeyRing
from app.security.passwords import Argon2Passwords, PasswordPolicy
from app.security.signing import Signer
from app.security.tokens import CodeHasher, derive_key
from app.services.checkpoints import CheckpointStore
from app.services.consent import SECURITY_PURPOSE, Removal, WithdrawalEffects
from app.services.container import Runtime
from app.services.devices import (
    forget_devices,
    holds_any_binding,
    holds_passkey_binding,
    unbind_passkeys_of,
)
from app.services.purposes import DEFAULT_CATALOGUE, load_catalogue
from app.services.safeguards import DEVICE_BINDINGS, PASSKEYS
from app.services.sessions import erase_device_details
from app.services.webauthn import DEVICE_BIOMETRICS, delete_credentials, holds_passkeys
from app.services.working_days import load_calendar
from app.settings import Settings

DEFAULT_HOLIDAYS = resource_dir("config") / "holidays-cn.toml"

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def build_email_sender(settings: Settings) -> EmailSender:
    if settings.email_backend == "smtp":
        return SmtpEmailSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout_seconds,
            ca_file=settings.smtp_ca_file,
        )
    return ConsoleEmailSender()


def build_sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_backend == "http":
        return HttpSmsSender(
            url=settings.sms_http_url,
            token=settings.sms_http_token,
            timeout=settings.sms_http_timeout_seconds,
        )
    return ConsoleSmsSender()


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    email_sender: EmailSender | None = None,
    sms_sender: SmsSender | None = None,
) -> Runtime:
    signer = Signer(settings.signing_key_id, settings.signing_key_bytes)
    return Runtime(
        settings=settings,
        clock=clock or SystemClock(),
        key_ring=KeyRing(settings.key_ring, settings.active_key_id),
        blind_index=BlindIndex(settings.blind_index_key_bytes),
        code_hasher=CodeHasher(derive_key(settings.secret_key_bytes, "one-time-codes")),
        passwords=Argon2Passwords(
            settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
        ),
        password_policy=PasswordPolicy(settings.password_min_length, settings.password_max_length),
        email_sender=email_sender or build_email_sender(settings),
        sms_sender=sms_sender or build_sms_sender(settings),
        catalogue=load_catalogue(
            Path(settings.purposes_file) if settings.purposes_file else DEFAULT_CATALOGUE
        ),
        signer=signer,
        checkpoints=CheckpointStore(Path(settings.chain_checkpoint_dir), signer),
        withdrawal_effects=built_in_withdrawal_effects(),
        replay_cache=_sync_storage(settings.ratelimit_storage_uri),
        dpop_verifier=DpopVerifier(
            max_age_seconds=settings.dpop_max_age_seconds,
            future_skew_seconds=settings.dpop_future_skew_seconds,
        ),
        calendar=load_calendar(
            Path(settings.holidays_file) if settings.holidays_file else DEFAULT_HOLIDAYS
        ),
    )


def built_in_withdrawal_effects() -> WithdrawalEffects:
    """What stops, in this service, when a purpose is withdrawn. An effect that
    takes away a sign-in protection says so: the withdrawal then needs what
    removing that protection directly needs (app/services/safeguards.py)."""
    effects = WithdrawalEffects()
    effects.register(SECURITY_PURPOSE, erase_device_details)
    effects.register(
        SECURITY_PURPOSE, forget_devices, removes=Removal(DEVICE_BINDINGS, holds_any_binding)
    )
    # device_biometrics is kept for 0 days after withdrawal: the passkeys go at
    # once, and the devices they bound are bound no more. Passkeys before
    # devices: the order a passkey sign-in writes them in, so the two never
    # wait for each other crosswise.
    effects.register(
        DEVICE_BIOMETRICS, delete_credentials, removes=Removal(PASSKEYS, holds_passkeys)
    )
    effects.register(
        DEVICE_BIOMETRICS,
        unbind_passkeys_of,
        removes=Removal(DEVICE_BINDINGS, holds_passkey_binding),
    )
    return effects


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or (runtime.settings if runtime else Settings())
    settings.check()
    runtime = runtime or build_runtime(settings)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key_bytes,
        # One byte over: parse_body refuses a body that reaches it (see there).
        MAX_CONTENT_LENGTH=settings.max_request_bytes + 1,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_uri,
        RATELIMIT_HEADERS_ENABLED=True,
        JSON_SORT_KEYS=False,
    )
    if settings.trusted_proxy_count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxy_count, x_proto=1
        )

    engine = make_engine(settings.database_url)
    app.extensions["privid.settings"] = settings
    app.extensions["privid.runtime"] = runtime
    app.extensions["privid.engine"] = engine
    app.extensions["privid.session_factory"] = make_session_factory(engine)

    @app.after_request
    def _service_retry_after(response: Response) -> Response:
        # Registered before flask-limiter, so it runs after the limiter's header
        # hook, which stamps its own window reset (up to an hour) over the
        # service's shorter wait (a code cooldown, the sign-in back-off).
        # Retry-After only means something on "try later" answers.
        wait = g.get("privid_retry_after")
        if wait is not None:
            response.headers["Retry-After"] = wait
        elif response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        return response

    limiter.init_app(app)
    app.url_map.converters.update(id=IdConverter, code=CodeConverter)

    from app.api import (
        account,
        admin,
        consent,
        devices,
        incidents,
        login,
        mfa,
        registration,
        rights,
        system,
        webauthn,
    )
    from app.api.context import install_unit_of_work
    from app.api.problems import register_problem_handlers
    from app.cli import register_cli
    from app.pages import init_pages

    for blueprint in (
        system.bp,
        registration.bp,
        login.bp,
        account.bp,
        consent.bp,
        rights.bp,
        mfa.bp,
        webauthn.bp,
        devices.bp,
        incidents.bp,
        admin.bp,
    ):
        app.register_blueprint(blueprint)
    init_pages(app)
    register_problem_handlers(app)
    install_unit_of_work(app)
    register_cli(app)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _sync_storage(uri: str) -> Storage:
    """The limits storage behind a URI; the workers are synchronous, so an
    async:// URI is a configuration error, not something to run with."""
    storage = storage_from_string(uri)
    if not isinstance(storage, Storage):
        raise ValueError("the rate-limit storage must be a synchronous one (not async://)")
    return storage
