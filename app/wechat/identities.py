"""Linked WeChat identities: finding the account of a WeChat identity, linking
one to an account, unlinking (never the last way in), and the export."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import ServiceError, not_found
from app.models import User
from app.security.blind_index import BlindIndex
from app.services.audit import AuditTrail
from app.services.container import Services
from app.services.export import ExportContext, Section
from app.services.vault import PersonalDataVault
from app.services.ways_in import kind_of, require_another
from app.wechat.models import LinkedIdentity

PROVIDER = "wechat"
WAY_IN_PREFIX = "wechat:"


@dataclass(frozen=True)
class WeChatIdentity:
    """A person as WeChat vouched for them, under one of the platform's apps."""

    app_id: str
    openid: str
    unionid: str | None
    nickname: str | None = None

    def __repr__(self) -> str:
        return f"WeChatIdentity(app_id={self.app_id!r}, openid=…)"


def identity_taken() -> ServiceError:
    return ServiceError(
        "wechat-linked-elsewhere",
        409,
        "This WeChat account is linked to another account",
        "This WeChat account already signs in to another privid account. Unlink it there first.",
    )


class LinkedIdentities:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        blind_index: BlindIndex,
        vault: PersonalDataVault,
        audit: AuditTrail,
    ) -> None:
        self._db, self._clock, self._index = db, clock, blind_index
        self._vault, self._audit = vault, audit

    @classmethod
    def of(cls, svc: Services) -> LinkedIdentities:
        rt = svc.runtime
        return cls(svc.db, rt.clock, rt.blind_index, svc.vault, svc.audit)

    def _openid_index(self, identity: WeChatIdentity) -> str:
        return self._index("wechat-openid", f"{identity.app_id}\x00{identity.openid}")

    def _unionid_index(self, unionid: str) -> str:
        return self._index("wechat-unionid", unionid)

    def find(self, identity: WeChatIdentity) -> tuple[User, LinkedIdentity | None] | None:
        """The account this identity signs in to: by its openid under this app,
        else by its unionid seen under another of the platform's apps (the row
        for this app is then still to be added: None)."""
        by_openid = LinkedIdentity.openid_index == self._openid_index(identity)
        row = self._db.execute(select(LinkedIdentity).where(by_openid)).scalar_one_or_none()
        if row is not None:
            user = self._db.get(User, row.user_id)
            return (user, row) if user is not None else None
        if identity.unionid is None:
            return None
        sibling = self._db.execute(
            select(LinkedIdentity)
            .where(LinkedIdentity.unionid_index == self._unionid_index(identity.unionid))
            .limit(1)
        ).scalar_one_or_none()
        if sibling is None:
            return None
        user = self._db.get(User, sibling.user_id)
        return (user, None) if user is not None else None

    def link(self, user: User, identity: WeChatIdentity, *, keep_nickname: bool) -> LinkedIdentity:
        """Link (or refresh) this identity on ``user``; refused when it, or
        its unionid, already belongs to another account."""
        self._hold_unionid(identity)
        found = self.find(identity)
        if found is not None and found[0].id != user.id:
            raise identity_taken()
        cipher = self._vault.cipher_for(user.id)
        now = self._clock.now()
        row = found[1] if found is not None else None
        if row is None:
            row = LinkedIdentity(
                user_id=user.id,
                provider=PROVIDER,
                app_id=identity.app_id,
                openid_index=self._openid_index(identity),
                openid_encrypted=cipher.encrypt("wechat_openid", identity.openid),
                created_at=now,
            )
            try:
                with self._db.begin_nested():
                    self._db.add(row)
                    self._db.flush()
            except IntegrityError:
                raise identity_taken() from None  # linked elsewhere meanwhile
            self._audit.record("wechat.linked", user_id=user.id, identity_ref=row.id)
        if identity.unionid is not None:
            row.unionid_index = self._unionid_index(identity.unionid)
            row.unionid_encrypted = cipher.encrypt("wechat_unionid", identity.unionid)
        if keep_nickname and identity.nickname:
            row.nickname_encrypted = cipher.encrypt("wechat_nickname", identity.nickname)
        elif not keep_nickname:
            row.nickname_encrypted = None
        row.last_used_at = now
        self._db.flush()
        return row

    def _hold_unionid(self, identity: WeChatIdentity) -> None:
        """Two of the platform's apps linking one unionid at once would each
        find no owner (its index cannot be unique: every app has its row) and
        make two accounts of one person. Links of one unionid take turns; the
        second then finds the first's row. (SQLite's BEGIN IMMEDIATE already
        serialises every writer.)"""
        if identity.unionid is None or self._db.get_bind().dialect.name != "postgresql":
            return
        self._db.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
            {"k": "wechat-unionid:" + self._unionid_index(identity.unionid)},
        )

    def of_user(self, user_id: str) -> Sequence[LinkedIdentity]:
        query = select(LinkedIdentity).where(LinkedIdentity.user_id == user_id)
        return self._db.execute(query.order_by(LinkedIdentity.created_at)).scalars().all()

    def unlink(self, user: User, ip_prefix: str) -> int:
        """Unlink WeChat (every app's identity of this person): refused while it
        is the account's last way in. Returns how many identities went."""
        self._lock(user.id)
        rows = self.of_user(user.id)
        if not rows:
            raise not_found("A linked WeChat account")
        require_another(self._db, user.id, kind_of(WAY_IN_PREFIX))
        self._db.execute(delete(LinkedIdentity).where(LinkedIdentity.user_id == user.id))
        self._db.flush()
        self._audit.record("wechat.unlinked", user_id=user.id, ip_prefix=ip_prefix)
        return len(rows)

    def _lock(self, user_id: str) -> None:
        # The user row's lock: two removals at once see each other's result.
        self._db.execute(select(User.id).where(User.id == user_id).with_for_update()).first()


def ways_in(db: DbSession, user_id: str) -> list[str]:
    """Capability.ways_in: each linked identity is a way in."""
    refs = db.execute(select(LinkedIdentity.id).where(LinkedIdentity.user_id == user_id))
    return [WAY_IN_PREFIX + ref for ref in refs.scalars()]


def _export(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = ctx.db.execute(
        select(LinkedIdentity)
        .where(LinkedIdentity.user_id == ctx.user.id)
        .order_by(LinkedIdentity.created_at)
    ).scalars()
    cipher = ctx.vault.cipher_for(ctx.user.id)
    out = []
    for row in rows:
        out.append(
            {
                "provider": row.provider,
                "app_id": row.app_id,
                "openid": cipher.decrypt("wechat_openid", row.openid_encrypted),
                "unionid": (
                    cipher.decrypt("wechat_unionid", row.unionid_encrypted)
                    if row.unionid_encrypted is not None
                    else None
                ),
                "nickname": (
                    cipher.decrypt("wechat_nickname", row.nickname_encrypted)
                    if row.nickname_encrypted is not None
                    else None
                ),
                "linked_at": row.created_at.isoformat(),
                "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
            }
        )
    return out


EXPORT_SECTION = Section("linked_identities", ("linked_identities",), _export)
