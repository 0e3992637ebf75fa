"""Typed settings, read from the environment (prefix ``PRIVID_``).

Development runs on built-in keys and embedded defaults; production mode refuses
to start while any of those development values is still in place.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import cached_property
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.security.tokens import derive_key

# Development-only key material. Anyone can read it here, so production refuses it.
DEV_SECRET_KEY = base64.b64encode(b"privid-development-secret-key-00").decode()
DEV_BLIND_INDEX_KEY = base64.b64encode(b"privid-development-blind-index-0").decode()
DEV_SIGNING_KEY = base64.b64encode(b"privid-development-signing-key-0").decode()
DEV_KEY_ENCRYPTION_KEYS = "dev1:" + base64.b64encode(b"privid-development-kek-000000000").decode()


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SettingsError(RuntimeError):
    """The configuration cannot be used; the message names the setting."""


def decode_key(value: str, setting: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SettingsError(f"{setting} must be base64") from exc
    if len(key) != 32:
        raise SettingsError(f"{setting} must decode to 32 bytes, got {len(key)}")
    return key


def derive_chain_key(secret_key: bytes) -> bytes:
    """The chain key when PRIVID_CHAIN_KEY is not set: a sub-key of its own."""
    return derive_key(secret_key, "ledger-chain")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVID_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    public_url: str = "http://localhost:5000"
    database_url: str = "sqlite:///instance/privid.db"
    # True when PRIVID_DATABASE_URL points at PgBouncer in transaction mode:
    # consecutive transactions may then run on different server connections,
    # so nothing may be prepared on one and used on another (app/db.py).
    database_pgbouncer: bool = False
    ratelimit_storage_uri: str = "memory://"
    # Proxies in front of the service whose X-Forwarded-For we trust (0 = none).
    trusted_proxy_count: int = 0
    max_request_bytes: int = 64 * 1024

    # Keys. See docs/configuration in README for how to generate them.
    secret_key: str = DEV_SECRET_KEY
    blind_index_key: str = DEV_BLIND_INDEX_KEY
    key_encryption_keys: str = DEV_KEY_ENCRYPTION_KEYS
    active_key_id: str = "dev1"
    # Signs consent receipts (ES256); the key id is published in the JWKS.
    signing_key: str = DEV_SIGNING_KEY
    signing_key_id: str = "dev-signing-1"
    # Keys the hashes of the consent ledger and the audit trail (HMAC-SHA256), so
    # someone who can write the database cannot forge them. Empty: derived from
    # PRIVID_SECRET_KEY; set its own key so rotating that one leaves the ledger be.
    chain_key: str = ""
    # Signed chain checkpoints are appended here, one file per chain. Put it
    # where the database's users cannot write (another host, WORM storage).
    chain_checkpoint_dir: str = "instance/chain-checkpoints"
    # `privid worker` (and the one `privid serve` runs) seals new ledger rows
    # this often: rows are safe from undetected deletion from their seal on.
    # 0: this worker does not seal (another one, or cron's chain-seal, does).
    chain_seal_interval_seconds: float = Field(default=5.0, ge=0, le=3600)

    # OpenID Connect provider (app/oidc/): how long the tokens it signs live,
    # and so how long a retired signing key stays in the JWKS. Empty maximum:
    # the longest of the token lifetimes.
    oidc_id_token_lifetime_seconds: int = Field(default=3600, ge=60, le=86400)
    oidc_access_token_lifetime_seconds: int = Field(default=600, ge=60, le=86400)
    oidc_max_token_lifetime_seconds: int | None = Field(default=None, ge=60)
    # How long a worker keeps its copy of the signing keys. A rotation announces
    # the new key this long before it signs (and the old one signs until then),
    # so every worker publishes a key before any worker signs with it.
    oidc_key_cache_seconds: int = Field(default=60, ge=0, le=3600)
    # A refresh token unused this long lapses; rotation never takes a grant past
    # its absolute lifetime (the user signs in again then).
    oidc_refresh_token_lifetime_seconds: int = Field(default=14 * 86400, ge=300)
    oidc_grant_lifetime_seconds: int = Field(default=30 * 86400, ge=300)
    # RFC 6749 recommends ten minutes at most; a redirect takes seconds.
    oidc_code_lifetime_seconds: int = Field(default=60, ge=10, le=600)

    # Consent and privacy rights.
    purposes_file: str = ""  # empty: the catalogue shipped in config/purposes.toml
    holidays_file: str = ""  # empty: config/holidays-cn.toml
    data_residency: str = "CN"
    request_working_days: int = 3
    max_exports_per_day: int = 3
    # How recent a sign-in must be for each kind of sensitive act (RFC 9470
    # max_age). app/http/access.py names them (Freshness); nothing else keeps an age.
    operator_max_auth_age_seconds: int = Field(default=15 * 60, ge=30)
    cancellation_max_auth_age_seconds: int = Field(default=5 * 60, ge=30)
    credential_change_max_auth_age_seconds: int = Field(default=60 * 60, ge=30)
    device_management_max_auth_age_seconds: int = Field(default=15 * 60, ge=30)
    passkey_removal_max_auth_age_seconds: int = Field(default=5 * 60, ge=30)
    second_factor_max_auth_age_seconds: int = Field(default=5 * 60, ge=30)
    export_max_auth_age_seconds: int = Field(default=15 * 60, ge=30)
    # The outbox (every message sent): tries per message before it is abandoned;
    # how long a worker's claim on a message lasts (longer than a send can take:
    # a worker that dies mid-send leaves the message to another after this); how
    # long an idle worker waits before looking again.
    outbox_max_attempts: int = 8
    outbox_claim_seconds: float = Field(default=60.0, gt=0)
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    # Passwords: argon2id parameters (OWASP minimum: m=19 MiB, t=2, p=1).
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    password_min_length: int = Field(default=8, ge=8)
    password_max_length: int = Field(default=256, ge=64)

    # One-time codes.
    code_ttl_seconds: int = 600
    code_max_attempts: int = 5
    code_resend_cooldown_seconds: int = 60
    registration_flow_ttl_seconds: int = 3600

    # Sessions.
    session_idle_timeout_seconds: int = 30 * 60
    session_absolute_timeout_seconds: int = 12 * 3600
    session_cookie_name: str = "__Host-privid_session"

    # Password back-off: free attempts per (identifier, source), then doubling
    # delays up to a cap; the account-wide bucket (attempts from networks, not
    # from recognised devices) has its own, larger number of free attempts.
    login_free_attempts: int = 5
    login_account_free_attempts: int = 20
    # Then a bucket takes no more password guesses for a day (per identifier:
    # an account has two, so at most 100 in a row, NIST SP 800-63B-4 §3.2.2).
    login_account_max_failures: int = Field(default=50, ge=1)
    login_max_delay_seconds: int = 15 * 60

    # Rate limits (flask-limiter syntax).
    limit_login_per_ip: str = "30/minute"
    # Per identifier typed *and* source (network, or the device cookie shown).
    limit_login_per_account: str = "10/minute"
    limit_code_send_per_destination: str = "5/hour"
    limit_code_send_per_ip: str = "20/hour"
    limit_registration_per_ip: str = "10/hour"
    # Live password feedback asks once per pause in typing.
    limit_password_check_per_ip: str = "120/hour"
    limit_reset_per_ip: str = "10/hour"
    # Data-subject requests (POST /me/requests), per signed-in account.
    limit_requests_per_account: str = "10/hour"

    # Logs and metrics (app/telemetry/). One JSON object per line by default;
    # "text" is a readable line for development. Empty metrics token: /metrics
    # answers 404 (disabled); set one and scrape with it as a bearer token.
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: SecretStr = SecretStr("")

    # Email.
    email_backend: str = "console"  # console | smtp
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = 10.0
    smtp_ca_file: str = ""
    mail_from: str = "privid <no-reply@localhost>"

    # SMS.
    sms_backend: str = "console"  # console | http
    sms_http_url: str = ""
    sms_http_token: str = ""
    sms_http_timeout_seconds: float = 10.0

    # Phone numbers without a country code are read in this region.
    default_phone_region: str = "CN"

    # WebAuthn (passkeys). The RP id is the site's registrable domain; origins are
    # comma-separated and may include an Android app's "android:apk-key-hash:..." origin.
    # Empty: the origin of PRIVID_PUBLIC_URL (the service's own pages).
    webauthn_rp_id: str = "localhost"
    webauthn_rp_name: str = "privid"
    webauthn_origins: str = ""
    webauthn_challenge_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    # True: only "packed" attestation is accepted (and the AAGUID list below applies).
    webauthn_require_attestation: bool = False
    webauthn_allowed_aaguids: str = ""  # comma-separated; empty = any authenticator

    # WeChat sign-in (app/wechat). An app id left empty turns that flow off; with
    # none set (the embedded default) the sign-in page shows no WeChat button.
    # web: the website application on the Open Platform (QR code, snsapi_login);
    # mp: the official account (inside WeChat's browser); app: the mobile app's SDK.
    wechat_open_url: str = "https://open.weixin.qq.com"
    wechat_api_url: str = "https://api.weixin.qq.com"
    wechat_web_appid: str = ""
    wechat_web_secret: SecretStr = SecretStr("")
    wechat_mp_appid: str = ""
    wechat_mp_secret: SecretStr = SecretStr("")
    wechat_app_appid: str = ""
    wechat_app_secret: SecretStr = SecretStr("")
    # "snsapi_base" (silent, openid only) or "snsapi_userinfo" inside WeChat.
    wechat_mp_scope: Literal["snsapi_base", "snsapi_userinfo"] = "snsapi_base"
    wechat_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    # Retries on "system busy" (errcode -1) and network errors; never for a code exchange.
    wechat_retries: int = Field(default=2, ge=0, le=5)
    wechat_state_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    # Keep the WeChat nickname (sealed) when the person grants wechat_login.
    wechat_keep_nickname: bool = False

    # Devices. A browser carries a random device cookie (only with the security
    # purpose granted); apps prove their key with DPoP proofs (RFC 9449).
    device_cookie_name: str = "__Host-privid_device"
    device_cookie_max_age_seconds: int = 400 * 86400  # browsers cap cookies at 400 days
    dpop_max_age_seconds: int = Field(default=300, ge=10, le=3600)
    dpop_future_skew_seconds: int = Field(default=30, ge=0, le=300)
    # Revoked devices stay listed this long; devices unseen for this long are forgotten.
    revoked_device_kept_days: int = 30
    idle_device_kept_days: int = 400

    # Real-name identity verification (verification/). "sandbox" answers from
    # its test identities (development only); "http" is the provider's HTTPS
    # JSON API: requests signed with the request key, answers checked with the
    # answer key (both base64, 32 bytes).
    verification_provider: str = "sandbox"  # sandbox | http
    verification_provider_name: str = "provider"
    verification_provider_url: str = ""
    verification_provider_key_id: str = ""
    verification_provider_request_key: str = ""
    verification_provider_answer_key: str = ""
    verification_provider_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    verification_provider_retries: int = Field(default=2, ge=0, le=5)
    verification_provider_backoff_seconds: float = Field(default=0.2, ge=0, le=10)
    verification_breaker_fail_max: int = Field(default=5, ge=1)
    verification_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    # The provider checks data outside mainland China: cross_border consent too.
    verification_provider_abroad: bool = False
    # One identity document binds to one account at most.
    verification_one_account_per_identity: bool = True
    identity_verification_max_auth_age_seconds: int = Field(default=10 * 60, ge=30)
    # Attempts (flask-limiter syntax), per account and per document (keyed hash).
    limit_verification_per_account: str = "5/day"
    limit_verification_per_document: str = "3/day"

    @property
    def webauthn_origin_list(self) -> list[str]:
        listed = [o.strip() for o in self.webauthn_origins.split(",") if o.strip()]
        if listed:
            return listed
        public = urlsplit(self.public_url)
        return [f"{public.scheme}://{public.netloc}"]

    @property
    def webauthn_aaguid_list(self) -> list[str]:
        return [a.strip().lower() for a in self.webauthn_allowed_aaguids.split(",") if a.strip()]

    @field_validator("email_backend")
    @classmethod
    def _email_backend(cls, value: str) -> str:
        if value not in {"console", "smtp"}:
            raise ValueError("must be 'console' or 'smtp'")
        return value

    @field_validator("verification_provider")
    @classmethod
    def _verification_provider(cls, value: str) -> str:
        if value not in {"sandbox", "http"}:
            raise ValueError("must be 'sandbox' or 'http'")
        return value

    @field_validator("sms_backend")
    @classmethod
    def _sms_backend(cls, value: str) -> str:
        if value not in {"console", "http"}:
            raise ValueError("must be 'console' or 'http'")
        return value

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @cached_property
    def key_ring(self) -> dict[str, bytes]:
        ring: dict[str, bytes] = {}
        for entry in filter(None, (p.strip() for p in self.key_encryption_keys.split(","))):
            kid, sep, material = entry.partition(":")
            if not sep or not kid:
                raise SettingsError("PRIVID_KEY_ENCRYPTION_KEYS entries look like 'id:base64key'")
            ring[kid] = decode_key(material, f"PRIVID_KEY_ENCRYPTION_KEYS[{kid}]")
        if self.active_key_id not in ring:
            raise SettingsError(
                f"PRIVID_ACTIVE_KEY_ID '{self.active_key_id}' is not in PRIVID_KEY_ENCRYPTION_KEYS"
            )
        return ring

    @cached_property
    def secret_key_bytes(self) -> bytes:
        return decode_key(self.secret_key, "PRIVID_SECRET_KEY")

    @cached_property
    def signing_key_bytes(self) -> bytes:
        return decode_key(self.signing_key, "PRIVID_SIGNING_KEY")

    @cached_property
    def chain_key_bytes(self) -> bytes:
        if self.chain_key:
            return decode_key(self.chain_key, "PRIVID_CHAIN_KEY")
        return derive_chain_key(self.secret_key_bytes)

    @property
    def oidc_key_publish_seconds(self) -> int:
        """How long a retired signing key stays published: the longest lifetime
        of anything it may have signed."""
        longest = max(self.oidc_id_token_lifetime_seconds, self.oidc_access_token_lifetime_seconds)
        return self.oidc_max_token_lifetime_seconds or longest

    @cached_property
    def blind_index_key_bytes(self) -> bytes:
        return decode_key(self.blind_index_key, "PRIVID_BLIND_INDEX_KEY")

    def check(self) -> None:
        """Validate keys, and in production refuse development values."""
        _ = self.key_ring, self.secret_key_bytes, self.blind_index_key_bytes
        _ = self.signing_key_bytes, self.chain_key_bytes
        longest = max(self.oidc_id_token_lifetime_seconds, self.oidc_access_token_lifetime_seconds)
        if self.oidc_key_publish_seconds < longest:
            # Retired keys would leave the JWKS while tokens they signed are valid.
            raise SettingsError(
                f"PRIVID_OIDC_MAX_TOKEN_LIFETIME_SECONDS must be at least {longest} "
                "(the longest OIDC token lifetime)"
            )
        if not self.is_production:
            return
        problems = []
        if self.secret_key == DEV_SECRET_KEY:
            problems.append("PRIVID_SECRET_KEY is the development key; set a random 32-byte key")
        if self.blind_index_key == DEV_BLIND_INDEX_KEY:
            problems.append(
                "PRIVID_BLIND_INDEX_KEY is the development key; set a random 32-byte key"
            )
        if self.signing_key == DEV_SIGNING_KEY:
            problems.append("PRIVID_SIGNING_KEY is the development key; set a random 32-byte key")
        if self.chain_key_bytes == derive_chain_key(decode_key(DEV_SECRET_KEY, "dev")):
            problems.append(
                "the chain key is the development key: set PRIVID_CHAIN_KEY (a random "
                "32-byte key) or a production PRIVID_SECRET_KEY"
            )
        dev_material = DEV_KEY_ENCRYPTION_KEYS.partition(":")[2]
        if any(key == base64.b64decode(dev_material) for key in self.key_ring.values()):
            problems.append("PRIVID_KEY_ENCRYPTION_KEYS contains the development key; set your own")
        if self.database_url.startswith("sqlite"):
            problems.append("PRIVID_DATABASE_URL must point at PostgreSQL in production")
        if self.ratelimit_storage_uri.startswith("memory"):
            problems.append(
                "PRIVID_RATELIMIT_STORAGE_URI must be shared storage (redis://) in production"
            )
        if self.email_backend == "console":
            problems.append("PRIVID_EMAIL_BACKEND must be 'smtp' in production")
        if self.sms_backend == "console":
            problems.append("PRIVID_SMS_BACKEND must be 'http' in production")
        if self.verification_provider == "sandbox":
            # The sandbox confirms its made-up test identities to anyone.
            problems.append("PRIVID_VERIFICATION_PROVIDER must be 'http' in production")
        # smtplib's timeout is per step (connect, greeting, each command): a
        # send that outlives its claim could be sent again by another worker.
        slowest_send = 3 * max(self.smtp_timeout_seconds, self.sms_http_timeout_seconds)
        if self.outbox_claim_seconds < slowest_send:
            problems.append(
                f"PRIVID_OUTBOX_CLAIM_SECONDS must be at least {slowest_send:g} "
                "(3 x the SMTP and SMS timeouts)"
            )
        metrics_token = self.metrics_token.get_secret_value()
        if metrics_token and len(metrics_token) < 32:
            problems.append("PRIVID_METRICS_TOKEN must be at least 32 characters (or empty)")
        if self.sms_backend == "http" and not self.sms_http_url:
            problems.append("PRIVID_SMS_HTTP_URL is missing")
        if self.email_backend == "smtp" and self.smtp_username and not self.smtp_starttls:
            problems.append("PRIVID_SMTP_STARTTLS must be true when SMTP credentials are set")
        if self.sms_backend == "http" and self.sms_http_url.startswith("http://"):
            problems.append("PRIVID_SMS_HTTP_URL must be https:// (it carries a bearer token)")
        if not self.public_url.startswith("https://"):
            problems.append("PRIVID_PUBLIC_URL must be an https:// URL in production")
        for flow in ("web", "mp", "app"):
            appid = getattr(self, f"wechat_{flow}_appid")
            secret: SecretStr = getattr(self, f"wechat_{flow}_secret")
            if appid and not secret.get_secret_value():
                problems.append(f"PRIVID_WECHAT_{flow.upper()}_SECRET is missing")
        if problems:
            raise SettingsError("refusing to start in production: " + "; ".join(problems))
