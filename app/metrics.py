"""The service's Prometheus metrics: the metric objects, and one function per
event that the place deciding the event calls (services, the HTTP layer).

Every label value is checked against a closed set here, so no caller can put
a path, an address or an identifier into a label: an unknown value becomes
"other". Gauges that need the database (outbox backlog, overdue requests)
are not here; they are read at scrape time (app/telemetry/scrape.py).

Under gunicorn the values live in PROMETHEUS_MULTIPROC_DIR, one file per
worker, and a scrape adds them up (config/gunicorn.conf.py sets it up)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Our own registry: the default one would also export per-process collectors
# that are wrong under several workers.
REGISTRY = CollectorRegistry(auto_describe=True)
OTHER = "other"

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
SIGN_IN_METHODS = frozenset(
    {"pwd", "sms", "webauthn", "fed", "totp", "recovery_code", "email_code", "sms_code"}
)
SIGN_IN_OUTCOMES = frozenset({"success", "second_factor_required", "failure", "throttled"})
CODE_CHANNELS = frozenset({"email", "sms"})
CODE_PURPOSES = frozenset(
    {
        "register_email",
        "register_phone",
        "login_sms",
        "password_reset",
        "change_email",
        "change_phone",
        "login_email",
        "login_device_sms",
    }
)
# "requests": a request-rate window (flask-limiter); "attempts": a service's
# back-off or cooldown (sign-in throttles, code resends, verification limits).
REFUSAL_KINDS = frozenset({"requests", "attempts"})
GRANT_TYPES = frozenset({"authorization_code", "refresh_token", "client_credentials"})

REQUEST_SECONDS = Histogram(
    "privid_http_request_duration_seconds",
    "Time to answer a request, by route rule (never the raw path), method and status class; "
    "_count is the number of requests.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
SIGN_INS = Counter(
    "privid_sign_ins",
    "Sign-in decisions: method is the factor that failed, or the first factor of a sign-in "
    "that completed or now owes a second factor.",
    ["method", "outcome"],
    registry=REGISTRY,
)
CODES_SENT = Counter(
    "privid_codes_sent",
    "One-time codes queued for sending (the outbox delivers them), by channel and purpose.",
    ["channel", "purpose"],
    registry=REGISTRY,
)
RATE_LIMIT_REFUSALS = Counter(
    "privid_rate_limit_refusals",
    "Requests refused for going too fast: request-rate windows, or attempt back-offs.",
    ["kind"],
    registry=REGISTRY,
)
TOKENS_ISSUED = Counter(
    "privid_oauth_tokens_issued",
    "Token endpoint answers that issued an access token, by grant type.",
    ["grant_type"],
    registry=REGISTRY,
)

# Labelled children by label values: a dict lookup is cheaper than .labels()
# (which validates and locks) on every request.
_request_children: dict[tuple[str, str, str], Histogram] = {}


def _allowed(value: str | None, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


def status_class(status: int) -> str:
    index = status // 100 - 1
    return STATUS_CLASSES[index] if 0 <= index < len(STATUS_CLASSES) else OTHER


def request_finished(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request. ``route`` is the matched rule template (or the
    app's fixed "no route" marker), so the label set stays bounded."""
    key = (route, method, status_class(status))
    child = _request_children.get(key)
    if child is None:
        child = REQUEST_SECONDS.labels(route, _allowed(method, METHODS), key[2])
        _request_children[key] = child
    child.observe(seconds)


def sign_in(method: str, outcome: str) -> None:
    SIGN_INS.labels(_allowed(method, SIGN_IN_METHODS), _allowed(outcome, SIGN_IN_OUTCOMES)).inc()


def code_sent(channel: str, purpose: str) -> None:
    CODES_SENT.labels(_allowed(channel, CODE_CHANNELS), _allowed(purpose, CODE_PURPOSES)).inc()


def rate_limited(kind: str) -> None:
    RATE_LIMIT_REFUSALS.labels(_allowed(kind, REFUSAL_KINDS)).inc()


def token_issued(grant_type: str | None) -> None:
    TOKENS_ISSUED.labels(_allowed(grant_type, GRANT_TYPES)).inc()
