"""Domain errors. Each maps to one RFC 9457 problem type; the HTTP layer renders them."""

from __future__ import annotations

from dataclasses import dataclass, field

from app import metrics


@dataclass(frozen=True)
class FieldError:
    pointer: str  # JSON Pointer into the request body, e.g. "#/email"
    detail: str
    # A stable reason a page can say in its own language (e.g. a password
    # policy reason: too_short, common, personal); not sent in problem documents.
    reason: str | None = None


@dataclass
class ServiceError(Exception):
    """A failure a person can act on. ``keep_changes`` means the transaction is
    committed anyway (a failed attempt that must count, an audit event)."""

    slug: str
    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    keep_changes: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.slug}: {self.detail}"


def invalid_field(pointer: str, detail: str, reason: str | None = None) -> ServiceError:
    return ServiceError(
        "validation-error",
        422,
        "Your request has invalid fields",
        detail,
        errors=[FieldError(pointer, detail, reason)],
    )


def invalid_credentials(keep_changes: bool = True) -> ServiceError:
    # One answer for every failed sign-in: it never says which part was wrong.
    return ServiceError(
        "invalid-credentials",
        401,
        "Sign-in failed",
        "The sign-in details are not correct.",
        keep_changes=keep_changes,
    )


def invalid_code() -> ServiceError:
    return ServiceError(
        "invalid-code",
        400,
        "The code is not valid",
        "The code is wrong, expired or already used. Ask for a new code if needed.",
        keep_changes=True,
    )


def too_many_attempts(retry_after: int, detail: str) -> ServiceError:
    # Every back-off and cooldown refusal is built here: counted once.
    metrics.rate_limited("attempts")
    return ServiceError(
        "too-many-attempts",
        429,
        "Too many attempts",
        detail,
        keep_changes=True,
        headers={"Retry-After": str(max(1, retry_after))},
    )


def not_found(what: str) -> ServiceError:
    return ServiceError("not-found", 404, "Not found", f"{what} was not found.")


def authentication_required() -> ServiceError:
    return ServiceError(
        "authentication-required",
        401,
        "Sign-in required",
        "Sign in to use this endpoint.",
        headers={"WWW-Authenticate": 'Bearer realm="privid"'},
    )
