"""Privacy policy versions: published by operators, never edited, all readable."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError, invalid_field, not_found
from app.models import PolicyVersion
from app.services.audit import AuditTrail
from app.services.purposes import Catalogue


def material_change_after(
    moment: datetime | ColumnElement[datetime] | InstrumentedAttribute[datetime],
    now: datetime | ColumnElement[datetime],
) -> Exists:
    """The one definition of "a material version has taken effect after
    ``moment``": a SQL condition, so a session can be read with the answer
    (``moment`` its start column) in the same query."""
    return exists().where(
        PolicyVersion.material.is_(True),
        PolicyVersion.effective_at > moment,
        PolicyVersion.effective_at <= now,
    )


def no_policy() -> ServiceError:
    return ServiceError(
        "no-policy",
        503,
        "No privacy policy is published",
        "The service cannot collect consent before an operator publishes a privacy policy.",
        headers={"Retry-After": "60"},
    )


@dataclass(frozen=True)
class NewPolicy:
    version: str
    effective_at: datetime
    text: str
    material: bool
    changes: str
    affected_purposes: list[str]


class PolicyService:
    def __init__(
        self, db: DbSession, clock: Clock, catalogue: Catalogue, audit: AuditTrail
    ) -> None:
        self._db, self._clock, self._catalogue, self._audit = db, clock, catalogue, audit

    def publish(self, new: NewPolicy, *, published_by: str) -> PolicyVersion:
        unknown = [p for p in new.affected_purposes if p not in self._catalogue]
        if unknown:
            raise invalid_field("#/affected_purposes", f"Unknown purpose(s): {', '.join(unknown)}.")
        if new.affected_purposes and not new.material:
            raise invalid_field(
                "#/affected_purposes", "Only a material change asks about purposes again."
            )
        current = self.current()
        if current is not None and new.effective_at < current.effective_at:
            raise invalid_field(
                "#/effective_at", "A new version cannot take effect before the current one."
            )
        policy = PolicyVersion(
            version=new.version,
            effective_at=new.effective_at,
            published_at=self._clock.now(),
            published_by=published_by,
            text=new.text,
            text_sha256=hashlib.sha256(new.text.encode("utf-8")).hexdigest(),
            material=new.material,
            changes=new.changes,
            affected_purposes=sorted(set(new.affected_purposes)),
        )
        try:
            with self._db.begin_nested():
                self._db.add(policy)
                self._db.flush()
        except IntegrityError:
            raise ServiceError(
                "policy-version-exists",
                409,
                "That version exists",
                f"Policy version {new.version!r} is already published; versions never change.",
            ) from None
        self._audit.record(
            "policy.published",
            actor_id=published_by if published_by != "cli" else None,
            version=new.version,
            material=new.material,
            text_sha256=policy.text_sha256,
        )
        return policy

    def current(self) -> PolicyVersion | None:
        return self._db.execute(
            select(PolicyVersion)
            .where(PolicyVersion.effective_at <= self._clock.now())
            .order_by(PolicyVersion.effective_at.desc(), PolicyVersion.id.desc())
            .limit(1)
        ).scalar_one_or_none()

    def require_current(self) -> PolicyVersion:
        policy = self.current()
        if policy is None:
            raise no_policy()
        return policy

    def all(self) -> Sequence[PolicyVersion]:
        return (
            self._db.execute(select(PolicyVersion).order_by(PolicyVersion.effective_at.desc()))
            .scalars()
            .all()
        )

    def get(self, version: str) -> PolicyVersion:
        policy = self._db.execute(
            select(PolicyVersion).where(PolicyVersion.version == version)
        ).scalar_one_or_none()
        if policy is None:
            raise not_found(f"Policy version {version!r}")
        return policy

    def material_since(self, moment: datetime) -> bool:
        """Has a material version taken effect after ``moment``? (one cheap query)"""
        changed = self._db.execute(select(material_change_after(moment, self._clock.now())))
        return bool(changed.scalar_one())

    def material_in_force(self) -> Sequence[PolicyVersion]:
        """Every material version that has taken effect (few: one query per sign-in)."""
        return (
            self._db.execute(
                select(PolicyVersion).where(
                    PolicyVersion.material.is_(True),
                    PolicyVersion.effective_at <= self._clock.now(),
                )
            )
            .scalars()
            .all()
        )


def changed_after(change: PolicyVersion, moment: datetime) -> bool:
    """A decision made before a version took effect or was published (even one
    dated back) was made under an older text."""
    return change.effective_at > moment or change.published_at > moment


def touches(change: PolicyVersion, purpose_code: str) -> bool:
    return not change.affected_purposes or purpose_code in change.affected_purposes
