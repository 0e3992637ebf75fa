"""Request and response bodies of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from app.security.passwords import PasswordReason

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


class DecisionIn(Body):
    purpose: str = Field(min_length=1, max_length=40)
    decision: Literal["granted", "refused"]


class ConsentDecisions(Body):
    policy_version: str = Field(
        min_length=1, max_length=32, description="The policy version the user was shown"
    )
    decisions: list[DecisionIn] = Field(min_length=1, max_length=32)


class PolicyAcknowledged(Body):
    policy_version: str = Field(min_length=1, max_length=32)


class RegistrationStart(Body):
    email: str = EmailField
    phone: str = PhoneField
    full_name: str = Field(min_length=1, max_length=400)
    password: str = PasswordField
    consent: ConsentDecisions | None = Field(
        default=None,
        description="Decisions made on the registration form; separate-consent purposes "
        "are granted afterwards, each on its own",
    )


class PasswordCheck(Body):
    password: str = PasswordField
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    full_name: str | None = Field(default=None, max_length=400)


class PolicyPublish(Body):
    version: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    effective_at: AwareDatetime = Field(description="With a time zone, e.g. 2026-12-01T00:00:00Z")
    text: str = Field(min_length=1, max_length=200_000)
    material: bool
    changes: str = Field(min_length=1, max_length=10_000)
    affected_purposes: list[str] = Field(default_factory=list, max_length=32)


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


# The handle a code request returns; the code is checked against it.
FlowHandle = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class SmsLogin(Body):
    phone: str = PhoneField
    flow: str = FlowHandle
    code: str = CodeField
    token_delivery: TokenDelivery = "cookie"


class ResetStart(Body):
    identifier: str = Field(min_length=1, max_length=320)


class ResetFinish(Body):
    identifier: str = Field(min_length=1, max_length=320)
    flow: str = FlowHandle
    code: str = CodeField
    new_password: str = PasswordField


class PasswordChange(Body):
    current_password: str = PasswordField
    new_password: str = PasswordField


class PasswordAdd(Body):
    new_password: str = PasswordField


class PasswordRemove(Body):
    current_password: str = PasswordField


# An account without a password (made through WeChat) sends none: the recent
# sign-in the endpoint's step-up asks for is its proof.
OptionalCurrentPassword = Field(
    default=None, min_length=1, max_length=1024, description="Required when the account has one"
)


class EmailChange(Body):
    email: str = EmailField
    current_password: str | None = OptionalCurrentPassword


class PhoneChange(Body):
    phone: str = PhoneField
    current_password: str | None = OptionalCurrentPassword


class CodeConfirm(Body):
    code: str = CodeField


# -- responses ---------------------------------------------------------------


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


class CodeFlow(Accepted):
    """A code request's answer: send ``flow`` back with the code."""

    flow: str


class PasswordVerdict(BaseModel):
    acceptable: bool
    reason: PasswordReason | None = Field(
        description="Why not: too_short, too_long, common, or personal (built from the "
        "email, phone or name given); null when acceptable"
    )


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
    token_type: Literal["Bearer", "DPoP"] | None = Field(
        default=None,
        description="DPoP: the token is bound to the key of the sign-in's DPoP proof "
        "(RFC 9449); send it as 'Authorization: DPoP <token>' with a proof per request",
    )
    expires_at: datetime
    acr: str
    amr: list[str]


class Texts(BaseModel):
    # Sent as "zh-CN" whoever dumps it; /openapi.json documents the sent shape.
    model_config = ConfigDict(serialize_by_alias=True)
    zh_cn: str = Field(serialization_alias="zh-CN")
    en: str


class PurposeOut(BaseModel):
    code: str
    title: Texts
    description: Texts
    legal_basis: str
    required: bool
    sensitive: bool
    separate_consent: bool
    per_client: bool
    withdrawable: bool
    data_categories: list[str]
    retention: str
    recipients: list[str]
    cross_border: bool
    depends_on_it: list[str]


class ConsentStep(BaseModel):
    policy_version: str
    policy_url: str
    purposes: list[PurposeOut]


class PolicyNotice(BaseModel):
    version: str
    changes: str
    url: str


class SignedIn(SessionOut):
    status: Literal["authenticated", "consent_required"]
    consent_required: ConsentStep | None = None
    policy_notice: PolicyNotice | None = Field(
        default=None, description="The policy changed since the last sign-in (not materially)"
    )


class ConsentResult(BaseModel):
    status: Literal["authenticated", "consent_required"]
    pending: list[PurposeOut]


class RegistrationVerified(BaseModel):
    flow: FlowOut
    session: SignedIn | None


class PolicyOut(BaseModel):
    version: str
    effective_at: datetime
    published_at: datetime
    material: bool
    changes: str
    affected_purposes: list[str]
    text_sha256: str
    current: bool
    url: str


class PolicyText(PolicyOut):
    text: str


class PolicyList(BaseModel):
    policies: list[PolicyOut]


class PurposeList(BaseModel):
    data_residency: str = Field(description="Where personal data is stored (ISO 3166 code)")
    purposes: list[PurposeOut]


class ConsentRecordOut(BaseModel):
    record_id: int
    purpose: str
    decision: str
    policy_version: str
    policy_sha256: str
    channel: str
    client_id: str | None
    occurred_at: datetime
    ip_prefix: str
    user_agent_hash: str
    prev_hash: str
    hash: str


class ConsentOverview(BaseModel):
    policy_version: str
    pending: list[PurposeOut]
    decisions: list[ConsentRecordOut]


class ConsentHistory(BaseModel):
    records: list[ConsentRecordOut]


class Receipt(BaseModel):
    receipt: str = Field(description="JWS (ES256) over the record; keys at /.well-known/jwks.json")


class ProfileOut(BaseModel):
    user_id: str
    email: str | None  # null: none added yet (an account made through WeChat)
    phone: str
    full_name: str
    created_at: datetime


class SessionSummary(BaseModel):
    session_id: str
    current: bool
    device: str
    device_id: str | None = Field(description="See GET /me/devices (with the security purpose)")
    key_bound: bool = Field(description="The token works only with DPoP proofs (RFC 9449)")
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


# -- privacy rights --------------------------------------------------------------


class NameChange(Body):
    full_name: str = Field(min_length=1, max_length=400)
    current_password: str | None = OptionalCurrentPassword


class RequestIn(Body):
    kind: Literal["deletion", "rectification", "access_export"]
    categories: list[Literal["ended_sessions", "other"]] = Field(
        default_factory=list,
        max_length=4,
        description="For deletion: what to delete; 'other' goes to an operator",
    )


class CancellationIn(Body):
    confirm: Literal["cancel my account"] = Field(
        description="Typed by the user, so nobody cancels an account by accident"
    )


class RequestOut(BaseModel):
    request_id: str
    kind: str
    status: str
    received_at: datetime
    due_at: datetime
    completed_at: datetime | None
    outcome: str | None
    refusal_reason: str | None
    details: dict[str, object]
    overdue: bool = False
    working_days_overdue: int = 0


class RequestList(BaseModel):
    requests: list[RequestOut]


class Cancelled(BaseModel):
    status: Literal["cancelled"] = "cancelled"
    legal_archive_retained_until: datetime


class OperatorOutcome(Body):
    outcome: str = Field(min_length=1, max_length=2000)


class OperatorRefusal(Body):
    reason: str = Field(min_length=1, max_length=2000)


# -- security incidents --------------------------------------------------------

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _omit_null(schema: dict[str, Any]) -> None:
    """Document an optional field as its type alone: leaving it out is how it is
    omitted, and an explicit null is refused (see _not_null)."""
    branches = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
    if branches:
        schema.update(branches[0])
    schema.pop("default", None)


def _single_line(value: str) -> str:
    # The title becomes an email subject: no line breaks or other control characters.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("The title must be one line of text.")
    return value


class IncidentWindow(Body):
    from_: AwareDatetime = Field(alias="from", description="Start of the window, with a UTC offset")
    to: AwareDatetime = Field(description="End of the window (included), with a UTC offset")
    event_types: list[
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")]
    ] = Field(
        min_length=1,
        max_length=32,
        description="Audit event types, e.g. login.succeeded; any of them in the window counts",
    )


NoticeChannel = Literal["email", "push"]


def _email_only() -> list[NoticeChannel]:
    return ["email"]


class IncidentCreate(Body):
    # Exactly one way of choosing the affected users, stated in the schema too.
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["user_ids"]}, {"required": ["window"]}]},
    )
    title: Annotated[str, AfterValidator(_single_line)] = Field(min_length=1, max_length=200)
    facts: str = Field(
        min_length=1, max_length=10_000, description="The basic facts of what happened"
    )
    impact: str = Field(min_length=1, max_length=10_000, description="The possible impact")
    measures: str = Field(
        min_length=1, max_length=10_000, description="Measures taken or to be taken"
    )
    advice: str = Field(
        min_length=1, max_length=10_000, description="What users can do to protect themselves"
    )
    remedies: str = Field(min_length=1, max_length=10_000, description="Remedies available")
    occurred_from: AwareDatetime | None = Field(
        default=None, description="Default: the window's start, when selecting by window"
    )
    occurred_to: AwareDatetime | None = Field(
        default=None, description="Default: the window's end, when selecting by window"
    )
    user_ids: list[Annotated[str, Field(pattern=UUID_PATTERN)]] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="The affected users by id; give this or window",
        json_schema_extra=_omit_null,
    )
    window: IncidentWindow | None = Field(
        default=None,
        description="The affected users by activity in a time window; give this or user_ids",
        json_schema_extra=_omit_null,
    )
    channels: list[NoticeChannel] = Field(default_factory=_email_only, min_length=1, max_length=2)

    @field_validator("user_ids", "window")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for a value that was sent: leaving the field out is the way to omit it.
        if value is None:
            raise ValueError("Leave the field out instead of sending null.")
        return value


class DeliveryCountsOut(BaseModel):
    recipients: int
    queued: int = Field(description="Not sent yet; includes those retrying")
    retrying: int = Field(description="Queued messages that failed at least once")
    sent: int
    failed: int = Field(description="Abandoned: retries exhausted, or the account is gone")


class IncidentText(BaseModel):
    """The five parts the policy promises to tell, as users and operators see them."""

    incident_id: str
    title: str
    facts: str
    impact: str
    measures: str
    advice: str
    remedies: str
    occurred_from: datetime | None
    occurred_to: datetime | None


class IncidentOut(IncidentText):
    created_at: datetime
    created_by: str
    notified_at: datetime | None
    counts: DeliveryCountsOut


class DeliveryReportOut(BaseModel):
    sent: int
    retrying: int = Field(description="Failed this time; tried again after a back-off")
    abandoned: int = Field(description="Failed for the last allowed time")
    skipped: int = Field(description="The account was cancelled; nothing sent")


class NoticeOut(IncidentText):
    notified_at: datetime | None


class NoticeList(BaseModel):
    notices: list[NoticeOut]


# -- second factors and step-up ------------------------------------------------------


class SecondFactorNeeded(BaseModel):
    status: Literal["second_factor_required"] = "second_factor_required"
    ticket: str = Field(description="Send it back with the second factor")
    methods: list[str]
    expires_in: int


# A second-factor ticket may carry a pending WeChat link (app/services/after_sign_in.py).
SecondFactorTicketField = Field(min_length=1, max_length=4096)


class SecondFactorIn(Body):
    ticket: str = SecondFactorTicketField
    totp_code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    recovery_code: str | None = Field(default=None, min_length=5, max_length=32)
    email_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, description="Sent by POST /login/second-factor/email"
    )
    sms_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, description="Sent by POST /login/second-factor/sms"
    )


class SecondFactorTicket(Body):
    ticket: str = SecondFactorTicketField


class StepUpIn(Body):
    password: str = PasswordField
    totp_code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")


class TotpEnrolment(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as a QR code (SVG)")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once; each works one time")


class MfaStatus(BaseModel):
    totp_enabled: bool
    recovery_codes_remaining: int


# -- WebAuthn (passkeys) ---------------------------------------------------------------
# Bodies take the JSON a browser's PublicKeyCredential.toJSON() gives, plus our
# challenge_id. Nothing else is accepted: a request carrying an image, a
# template or any other biometric field is refused by extra="forbid".

B64URL_PATTERN = r"^[A-Za-z0-9_-]+$"


def _b64url(max_length: int, alias: str | None = None, *, optional: bool = False) -> Any:
    extra: dict[str, Any] = {"default": None} if optional else {}
    return Field(
        **extra,
        alias=alias,
        min_length=1,
        max_length=max_length,
        pattern=B64URL_PATTERN,
        description="base64url without padding",
    )


class CredPropsOut(Body):
    rk: bool | None = None


class PrfOut(Body):
    enabled: bool | None = None


class ClientExtensionResults(Body):
    """The extension outputs we know; an unknown member is refused."""

    cred_props: CredPropsOut | None = Field(default=None, alias="credProps")
    appid: bool | None = None
    appid_exclude: bool | None = Field(default=None, alias="appidExclude")
    hmac_create_secret: bool | None = Field(default=None, alias="hmacCreateSecret")
    prf: PrfOut | None = None


TransportName = Annotated[str, Field(pattern=r"^[a-z-]{1,32}$")]


class AttestationResponseIn(Body):
    client_data_json: str = _b64url(4096, "clientDataJSON")
    attestation_object: str = _b64url(32768, "attestationObject")
    authenticator_data: str | None = _b64url(8192, "authenticatorData", optional=True)
    transports: list[TransportName] | None = Field(default=None, max_length=8)
    public_key: str | None = _b64url(4096, "publicKey", optional=True)
    public_key_algorithm: int | None = Field(default=None, alias="publicKeyAlgorithm")


class AssertionResponseIn(Body):
    client_data_json: str = _b64url(4096, "clientDataJSON")
    authenticator_data: str = _b64url(8192, "authenticatorData")
    signature: str = _b64url(2048)
    user_handle: str | None = _b64url(128, "userHandle", optional=True)


class _CredentialIn(Body):
    challenge_id: str = Field(min_length=1, max_length=36, description="From the options")
    id: str = _b64url(1400)
    raw_id: str = _b64url(1400, "rawId")
    type: Literal["public-key"]
    authenticator_attachment: Literal["platform", "cross-platform"] | None = Field(
        default=None, alias="authenticatorAttachment"
    )
    client_extension_results: ClientExtensionResults = Field(
        default_factory=ClientExtensionResults, alias="clientExtensionResults"
    )

    def credential(self) -> dict[str, Any]:
        """The credential as py_webauthn reads it (the browser's JSON names)."""
        fields = {"id", "raw_id", "type", "authenticator_attachment", "response"}
        fields.add("client_extension_results")
        return self.model_dump(by_alias=True, exclude_none=True, include=fields)


class WebAuthnRegistrationIn(_CredentialIn):
    response: AttestationResponseIn
    nickname: str | None = Field(default=None, min_length=1, max_length=64)


class WebAuthnSignInIn(_CredentialIn):
    response: AssertionResponseIn
    token_delivery: TokenDelivery = "cookie"


class WebAuthnStepUpIn(_CredentialIn):
    response: AssertionResponseIn


class CredentialRename(Body):
    nickname: str = Field(min_length=1, max_length=64)


class WebAuthnOptionsOut(BaseModel):
    """PublicKeyCredentialCreationOptionsJSON or ...RequestOptionsJSON, as
    PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON
    take them, plus the challenge_id to send back with the answer."""

    model_config = ConfigDict(extra="allow")
    challenge_id: str
    challenge: str


class CredentialOut(BaseModel):
    id: str
    nickname: str
    kind: Literal["synced passkey", "bound to this device"]
    state: Literal["active", "possibly_cloned"] = Field(
        description="possibly_cloned: its use counter went backwards, so it is blocked; "
        "remove it and register a new one"
    )
    flagged_cloned_at: datetime | None
    transports: list[str]
    aaguid: str
    backed_up: bool
    user_verified_at_registration: bool
    created_at: datetime
    last_used_at: datetime | None


class CredentialList(BaseModel):
    credentials: list[CredentialOut]


# -- devices ----------------------------------------------------------------------


class DeviceOut(BaseModel):
    id: str
    label: str
    platform: str
    binding_method: Literal["none", "webauthn", "app_key"]
    trust_state: Literal["recognised", "bound", "revoked"]
    current: bool = Field(description="The device this session was opened on")
    first_seen_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None


class DeviceList(BaseModel):
    devices: list[DeviceOut]


class DeviceRename(Body):
    label: str = Field(min_length=1, max_length=64, pattern=r"\S")


class BindingChallengeOut(BaseModel):
    challenge_id: str
    nonce: str = Field(
        description="Put it in the 'nonce' claim of the binding request's DPoP proof"
    )
    expires_in: int


class AppKeyBinding(Body):
    challenge_id: str = Field(min_length=1, max_length=36)
    label: str = Field(
        min_length=1, max_length=64, pattern=r"\S", description="e.g. 'Li Wei's phone'"
    )
    platform: Literal["android", "ios", "harmonyos", "other"]


class DeviceRevoked(BaseModel):
    sessions_ended: int
