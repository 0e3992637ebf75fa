"""The purpose catalogue (config/purposes.toml): what is processed, why, on what
legal basis. Loaded once at start-up; a bad entry stops the service and is named."""

from __future__ import annotations

import re
import tomllib
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.resources import resource_dir

DEFAULT_CATALOGUE = resource_dir("config") / "purposes.toml"
ISO_DURATION = re.compile(r"^P(?:\d+Y)?(?:\d+M)?(?:\d+D)?$")


class LegalBasis(StrEnum):
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    CONSENT = "consent"
    SEPARATE_CONSENT = "separate_consent"


class CatalogueError(RuntimeError):
    """The catalogue file cannot be used; the message names the entry."""


class Texts(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    zh_cn: str = Field(alias="zh-CN", min_length=1)
    en: str = Field(min_length=1)


class Purpose(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")
    title: Texts
    description: Texts
    legal_basis: LegalBasis
    required: bool
    sensitive: bool = False
    # Decided per OAuth client (partner sharing), at that client's authorization.
    per_client: bool = False
    data_categories: list[str] = Field(min_length=1)
    retention: str
    recipients: list[str]
    cross_border: bool
    depends_on_it: list[str]

    @field_validator("retention")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not ISO_DURATION.match(value) or value == "P":
            raise ValueError("must be an ISO 8601 duration such as P3Y or P180D")
        return value

    @property
    def withdrawable(self) -> bool:
        """Only consent can be taken back; contract and legal duties cannot."""
        return self.legal_basis in (LegalBasis.CONSENT, LegalBasis.SEPARATE_CONSENT)

    @property
    def needs_separate_action(self) -> bool:
        return self.legal_basis is LegalBasis.SEPARATE_CONSENT


class Catalogue:
    def __init__(self, purposes: list[Purpose]) -> None:
        self._by_code = {p.code: p for p in purposes}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_code.values())

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def get(self, code: str) -> Purpose | None:
        return self._by_code.get(code)

    def decided_at_sign_in(self) -> list[Purpose]:
        """Purposes every account decides; per-client ones are asked per partner."""
        return [p for p in self if not p.per_client]


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> Catalogue:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"cannot read purpose catalogue {path}: {exc}") from None
    entries = raw.get("purpose")
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{path}: no [[purpose]] entries")
    purposes: list[Purpose] = []
    for index, entry in enumerate(entries):
        name = entry.get("code", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
        try:
            purposes.append(Purpose.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise CatalogueError(f"{path}: purpose {name!r}: {problems}") from None
    codes = [p.code for p in purposes]
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise CatalogueError(f"{path}: purpose code(s) listed twice: {', '.join(duplicates)}")
    for purpose in purposes:
        if purpose.required and purpose.withdrawable:
            raise CatalogueError(
                f"{path}: purpose {purpose.code!r}: a consent-based purpose cannot be required "
                "(refusing it must not block the service, PIPL Art. 16)"
            )
    return Catalogue(purposes)
