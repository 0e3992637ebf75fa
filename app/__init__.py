"""privid: create_app() wires settings, database, services and blueprints."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response, g
from werkzeug.middleware.proxy_fix import ProxyFix

from app import capabilities
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
from app.http.no_flask_session import NoFlaskSession
from app.limit_storage import replay_cache, storage_options
from app.resources import resource_dir
from app.security.blind_index import BlindIndex
from app.security.dpop import DpopVerifier
from app.security.envelope import KeyRing
from app.security.passwords import Argon2Passwords, PasswordPolicy
from app.security.signing import Signer
from app.security.tokens import CodeHasher, derive_key
from app.services.checkpoints import CheckpointStore
from app.services.container import Runtime
from app.services.purposes import DEFAULT_CATALOGUE, load_catalogue
from app.services.working_days import load_calendar
from app.settings import Settings
from app.telemetry.logs import configure_logging
from app.telemetry.middleware import RequestTelemetry

DEFAULT_HOLIDAYS = resource_dir("config") / "holidays-cn.toml"


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
        withdrawal_effects=capabilities.withdrawal_effects(),
        session_end_listeners=capabilities.session_end_listeners(),
        outbox_renderers=capabilities.outbox_renderers(),
        account_endings=capabilities.account_endings(),
        retention_purges=capabilities.retention_purges(),
        replay_cache=replay_cache(settings),
        dpop_verifier=DpopVerifier(
            max_age_seconds=settings.dpop_max_age_seconds,
            future_skew_seconds=settings.dpop_future_skew_seconds,
        ),
        calendar=load_calendar(
            Path(settings.holidays_file) if settings.holidays_file else DEFAULT_HOLIDAYS
        ),
    )


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or (runtime.settings if runtime else Settings())
    settings.check()
    if not logging.getLogger().handlers:
        # An entry point that set no logging up (`flask …` operator commands,
        # from cron): the lines still go out redacted, in the log format.
        configure_logging(settings.log_format, settings.log_level)
    runtime = runtime or build_runtime(settings)

    app = Flask(__name__)
    app.session_interface = NoFlaskSession()
    app.config.update(
        SECRET_KEY=settings.secret_key_bytes,
        # One byte over: parse_body refuses a body that reaches it (see there).
        MAX_CONTENT_LENGTH=settings.max_request_bytes + 1,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_uri,
        RATELIMIT_STORAGE_OPTIONS=storage_options(settings),
        # Fail closed: with its storage down a limited endpoint answers 503,
        # never unlimited (swallowing) nor limited per process (an in-memory
        # fallback multiplies every limit by the number of workers).
        RATELIMIT_SWALLOW_ERRORS=False,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=False,
        RATELIMIT_HEADERS_ENABLED=True,
        JSON_SORT_KEYS=False,
    )
    if settings.trusted_proxy_count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxy_count, x_proto=1
        )

    # Outermost: the request id and timing cover everything inside.
    app.wsgi_app = RequestTelemetry(app.wsgi_app)  # type: ignore[method-assign]

    engine = make_engine(settings.database_url, pgbouncer=settings.database_pgbouncer)
    app.extensions["privid.settings"] = settings
    app.extensions["privid.runtime"] = runtime
    app.extensions["privid.engine"] = engine
    app.extensions["privid.session_factory"] = make_session_factory(engine)

    from app.http.unit_of_work import install_unit_of_work

    # First registered, so its commit runs after every other after_request
    # hook (Flask runs them in reverse): a hook that fails (flask-limiter
    # reading its storage for the RateLimit headers) turns the answer into a
    # 500, and the request's writes must then be rolled back, not committed.
    install_unit_of_work(app)

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

    from app.api.problems import JSON_API
    from app.cli import register_cli
    from app.http.gate import declare_static_routes, install_gate, require_declarations
    from app.http.surfaces import Surfaces, install_surfaces

    install_gate(app)
    surfaces = Surfaces(default=JSON_API)
    for capability in capabilities.installed():
        for blueprint, surface in capability.blueprints:
            app.register_blueprint(blueprint)
            surfaces.adopt(blueprint, surface)
        if capability.init_app is not None:
            capability.init_app(app)
    install_surfaces(app, surfaces)
    register_cli(app)
    declare_static_routes(app)
    require_declarations(app)
    limiter.refuse_app_wide_limits()
    return app
