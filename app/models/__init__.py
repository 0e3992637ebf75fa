"""All models, so Alembic and the export walk see every table."""

from .audit import AuditEvent, ChainHead, ChainSeal
from .base import Base
from .codes import CodePurpose, OneTimeCode
from .consent import Channel, ConsentRecord, Decision, PolicyVersion
from .device import BindingMethod, Device, TrustState
from .incident import Incident, IncidentRecipient
from .mfa import RecoveryCode, TotpFactor
from .outbox import OutboxChannel, OutboxKind, OutboxMessage
from .registration import RegistrationFlow
from .rights import (
    DataSubjectRequest,
    LegalArchiveRecord,
    RequestKind,
    RequestStatus,
)
from .session import Session
from .throttle import LoginThrottle
from .ticket import SpentTicket
from .user import Role, User, UserDataKey, UserStatus
from .webauthn import WebAuthnChallenge, WebAuthnCredential

__all__ = [
    "AuditEvent",
    "Base",
    "BindingMethod",
    "ChainHead",
    "ChainSeal",
    "Channel",
    "CodePurpose",
    "ConsentRecord",
    "DataSubjectRequest",
    "Decision",
    "Device",
    "Incident",
    "IncidentRecipient",
    "LegalArchiveRecord",
    "LoginThrottle",
    "OneTimeCode",
    "OutboxChannel",
    "OutboxKind",
    "OutboxMessage",
    "PolicyVersion",
    "RecoveryCode",
    "RegistrationFlow",
    "RequestKind",
    "RequestStatus",
    "Role",
    "Session",
    "SpentTicket",
    "TotpFactor",
    "TrustState",
    "User",
    "UserDataKey",
    "UserStatus",
    "WebAuthnChallenge",
    "WebAuthnCredential",
]
