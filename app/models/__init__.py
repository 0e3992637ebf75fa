"""All models, so Alembic and the export walk see every table."""

from .audit import AuditEvent, ChainHead
from .base import Base
from .codes import CodePurpose, OneTimeCode
from .registration import RegistrationFlow
from .session import Session
from .throttle import LoginThrottle
from .user import User, UserDataKey, UserStatus

__all__ = [
    "AuditEvent",
    "Base",
    "ChainHead",
    "CodePurpose",
    "LoginThrottle",
    "OneTimeCode",
    "RegistrationFlow",
    "Session",
    "User",
    "UserDataKey",
    "UserStatus",
]
