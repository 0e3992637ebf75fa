"""Request and response bodies of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CODE_PATTERN = r"^[0-9]{6}$"
# Generous bounds on raw input; the services apply the real rules and say why.
EmailField = Field(min_length=1, max_length=320)
PhoneField = Field(min_length=1, max_length=40)
PasswordField = Field(min_length=1, max_length=1024)
CodeField = Field(pattern=CODE_PATTERN, description="The 6-digit code that was sent")
Channel = Literal["email", "phone"]
TokenDelivery = Literal["cookie", "bearer"]


class Body(BaseModel):
    # Strict: no coercion of "1" to 1, and unknown fields are an error.
    model_config = ConfigDict(strict=True, extra="forbid")


class RegistrationStart(Body):
    email: str = EmailField
    phone: str = PhoneField
    full_name: str = Field(min_length=1, max_length=400)
    password: str = PasswordField


class RegistrationCode(Body):
    channel: Channel
    code: str = CodeField
    token_delivery: TokenDelivery = "cookie"


class RegistrationResend(Body):
    channel: Channel


class PasswordLogin(Body):
    identifier: str = Field(min_length=1, max_length=320, description="Email or phone number")
    password: str = PasswordField
    token_delivery: TokenDelivery = "cookie"


class SmsCodeRequest(Body):
    phone: str = PhoneField


class SmsLogin(Body):
    phone: str = PhoneField
    code: str = CodeField
    token_delivery: TokenDelivery = "cookie"


class ResetStart(Body):
    identifier: str = Field(min_length=1, max_length=320)


class ResetFinish(Body):
    identifier: str = Field(min_length=1, max_length=320)
    code: str = CodeField
    new_password: str = PasswordField


class PasswordChange(Body):
    current_password: str = PasswordField
    new_password: str = PasswordField


class EmailChange(Body):
    email: str = EmailField
    current_password: str = PasswordField


class PhoneChange(Body):
    phone: str = PhoneField
    current_password: str = PasswordField


class CodeConfirm(Body):
    code: str = CodeField


# -- responses ---------------------------------------------------------------


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


class FlowOut(BaseModel):
    flow_id: str
    expires_at: datetime
    email_confirmed: bool
    phone_confirmed: bool


class SessionOut(BaseModel):
    session_id: str
    token: str | None = Field(
        default=None, description="Only for token_delivery=bearer; cookies carry it otherwise"
    )
    csrf_token: str | None = Field(
        default=None, description="Send as X-CSRF-Token on state changes (cookie sessions)"
    )
    expires_at: datetime
    acr: str
    amr: list[str]


class RegistrationVerified(BaseModel):
    flow: FlowOut
    session: SessionOut | None


class ProfileOut(BaseModel):
    user_id: str
    email: str
    phone: str
    full_name: str
    created_at: datetime


class SessionSummary(BaseModel):
    session_id: str
    current: bool
    device: str
    ip_prefix: str
    created_at: datetime
    last_seen_at: datetime
    transport: str
    acr: str
    amr: list[str]


class SessionList(BaseModel):
    sessions: list[SessionSummary]


class RevokedCount(BaseModel):
    revoked: int


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
