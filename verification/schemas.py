"""The API's bodies. Liveness is the provider's token only: an image, a
video or a biometric template in any field is refused before anything runs
(and no column could hold one: verification/models.py)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from app.api.schemas import Body
from verification.documents import DocumentType

# Provider tokens are short opaque strings; media is long base64 or a data: URI.
LIVENESS_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,256}")
BIOMETRIC_FIELDS = re.compile(r"image|photo|picture|selfie|video|face|template|biometric", re.I)
# Base64 openings of JPEG, PNG, GIF, WebP/RIFF, MP4/MOV boxes and WebM.
MEDIA_PREFIXES = ("data:", "/9j/", "iVBORw0KGgo", "R0lGOD", "UklGR", "AAAA", "GkXfo")
MEDIA_REFUSED = (
    "Images, videos and biometric templates are never accepted: liveness is checked on "
    "your device by the provider's SDK; send only its liveness token."
)


def _refuse_media(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if BIOMETRIC_FIELDS.search(str(key)):
                raise ValueError(MEDIA_REFUSED)
            _refuse_media(item)
    elif isinstance(value, str) and value.startswith(MEDIA_PREFIXES) and len(value) > 64:
        raise ValueError(MEDIA_REFUSED)


class PersonIn(Body):
    full_name: str = Field(min_length=1, max_length=100)
    document_type: DocumentType
    document_number: str = Field(min_length=1, max_length=40)
    liveness_token: str | None = Field(
        default=None, description="The provider SDK's liveness token; never an image"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_media(cls, data: Any) -> Any:
        _refuse_media(data)
        return data

    @field_validator("liveness_token")
    @classmethod
    def _token_shape(cls, value: str | None) -> str | None:
        if value is not None and not LIVENESS_TOKEN.fullmatch(value):
            raise ValueError(MEDIA_REFUSED)
        return value


class VerificationIn(PersonIn):
    guardian: PersonIn | None = Field(
        default=None, description="Required when the document shows an age under 14"
    )


class ResultOut(BaseModel):
    role: str
    status: str
    level: str
    provider: str
    provider_reference: str
    document_type: str
    document_masked: str
    verified_at: datetime
    retain_until: datetime


class ResultsOut(BaseModel):
    results: list[ResultOut]
