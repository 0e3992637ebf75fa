"""The consent ledger: one record per decision, what is still owed under the
current policy, withdrawal and its effects, signed receipts.

Each account's records form their own chain: a record's keyed hash covers its
fields and the account's previous record's hash (``prev_hash``), and appends
lock only that account's head (``chain_heads`` row ``consent:<user id>``), so
decisions of different accounts never wait for one another. The head carries a
keyed MAC over the number of records and the newest hash: removing an
account's newest records shows even before they are sealed, unless an older
head row is put back with them (only the seals and checkpoints catch that).
The whole ledger is sealed into one chain in batches and checkpointed
(app/services/chain.py), every few seconds by `privid worker`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import insert_if_absent
from app.errors import FieldError, ServiceError, not_found
from app.models import ChainHead, Channel, ConsentRecord, Decision, PolicyVersion, Session, User
from app.security.signing import Signer
from app.services.chain import ChainKeeper, Ledger, Problem, Verdict, keyed_hash
from app.services.checkpoints import CheckpointStore
from app.services.context import RequestContext
from app.services.device_details import SECURITY_PURPOSE as SECURITY_PURPOSE
from app.services.policies import PolicyService, changed_after, touches
from app.services.purposes import Catalogue, Purpose
from app.services.safeguards import Protection, Safeguards

log = logging.getLogger(__name__)

CONSENT_CHAIN = "consent"
REQUIRED_REFUSED = "required-purpose-refused"

# What withdrawing a purpose must stop, registered by the features that depend
# on it (device binding, partner sharing, analytics). Each gets the user id.
WithdrawalEffect = Callable[[DbSession, str], None]
# Whether this user has anything the effect would take away.
Holds = Callable[[DbSession, str], bool]


@dataclass(frozen=True)
class Removal:
    """An effect that takes away a sign-in protection, when the user holds one."""

    protection: Protection
    holds: Holds


@dataclass
class WithdrawalEffects:
    by_purpose: dict[str, list[tuple[WithdrawalEffect, Removal | None]]] = field(
        default_factory=dict
    )

    def register(
        self, purpose: str, effect: WithdrawalEffect, removes: Removal | None = None
    ) -> None:
        """``removes`` declares the sign-in protection the effect takes away:
        the withdrawal then needs what removing that protection directly needs."""
        self.by_purpose.setdefault(purpose, []).append((effect, removes))

    def removals(self, db: DbSession, purpose: str, user_id: str) -> list[Protection]:
        """The protections withdrawing ``purpose`` would take from this user."""
        found = []
        for _, removal in self.by_purpose.get(purpose, []):
            if removal is not None and removal.holds(db, user_id):
                found.append(removal.protection)
        return found

    def run(self, db: DbSession, purpose: str, user_id: str) -> None:
        for effect, _ in self.by_purpose.get(purpose, []):
            effect(db, user_id)


@dataclass(frozen=True)
class DecisionInput:
    purpose: str
    decision: Decision


def sealed_fields(record: ConsentRecord) -> dict[str, Any]:
    return {
        "user_id": record.user_id,
        "purpose": record.purpose,
        "decision": record.decision,
        "policy_version": record.policy_version,
        "policy_sha256": record.policy_sha256,
        "channel": record.channel,
        "client_id": record.client_id,
        "occurred_at": record.occurred_at.isoformat(),
        "ip_prefix": record.ip_prefix,
        "user_agent_hash": record.user_agent_hash,
    }


def hashed_fields(record: ConsentRecord) -> dict[str, Any]:
    return {**sealed_fields(record), "prev_hash": record.prev_hash}


CONSENT_LEDGER = Ledger(CONSENT_CHAIN, ConsentRecord, "record", "records", hashed_fields)


def account_genesis(key: bytes, user_id: str) -> str:
    """Where an account's chain starts: keyed, so it cannot be made up either."""
    return keyed_hash(key, {"chain": CONSENT_CHAIN, "genesis": user_id})


def head_name(user_id: str) -> str:
    return f"{CONSENT_CHAIN}:{user_id}"


def head_mac(key: bytes, user_id: str, records: int, last_hash: str) -> str:
    """A head's keyed MAC: which account, how many records its chain holds and
    the newest one's hash. Without the key a head can be neither moved back
    (to hide the newest records) nor made up (after deleting it)."""
    return keyed_hash(
        key, {"chain": CONSENT_CHAIN, "head": user_id, "records": records, "last": last_hash}
    )


def account_links(key: bytes, rows: Sequence[ConsentRecord]) -> list[Problem]:
    """Each account's records follow one another, from its keyed start on."""
    problems: list[Problem] = []
    last: dict[str, ConsentRecord] = {}
    for row in rows:
        before = last.get(row.user_id)
        expected = before.hash if before else account_genesis(key, row.user_id)
        if row.prev_hash != expected:
            follows = (
                f"record {before.id}, the account's previous one"
                if before
                else "the start of its account's chain"
            )
            problems.append(
                Problem(
                    f"record {row.id}: does not follow {follows}: records between are "
                    "missing or were moved",
                    row.user_id,
                )
            )
        last[row.user_id] = row
    return problems


@dataclass(frozen=True)
class ConsentRules:
    """The consent ledger's checks beyond each record's MAC (app/services/chain.py
    runs them when verifying the ledger and before sealing it)."""

    key: bytes

    def group_of(self, row: ConsentRecord) -> str:
        return row.user_id

    def row_problems(self, rows: Sequence[ConsentRecord]) -> list[Problem]:
        return account_links(self.key, rows)

    def rows_behind(self, db: DbSession, pending: Sequence[ConsentRecord]) -> list[ConsentRecord]:
        """Every record of the accounts with records to seal: their links."""
        accounts = sorted({row.user_id for row in pending})
        found: list[ConsentRecord] = []
        for start in range(0, len(accounts), 500):
            query = select(ConsentRecord).where(
                ConsentRecord.user_id.in_(accounts[start : start + 500])
            )
            found += db.execute(query).scalars()
        return sorted(found, key=lambda row: row.id)

    def state_problems(
        self, db: DbSession, pending: Sequence[ConsentRecord] | None = None
    ) -> list[Problem]:
        """Each account's head against its records: the head's MAC, and the
        count and newest hash it vouches for. Every account, or (before a seal)
        those with ``pending`` records: what the seal would vouch for."""
        if pending is None:
            return self._head_problems(db, None)
        accounts = sorted({row.user_id for row in pending})
        problems: list[Problem] = []
        for start in range(0, len(accounts), 500):
            problems += self._head_problems(db, accounts[start : start + 500])
        return problems

    def _head_problems(self, db: DbSession, accounts: list[str] | None) -> list[Problem]:
        """One statement, so it reads one snapshot while records are appended."""
        prefix = f"{CONSENT_CHAIN}:"
        counted = select(
            ConsentRecord.user_id.label("user_id"),
            func.count().label("records"),
            func.max(ConsentRecord.id).label("last_id"),
        ).group_by(ConsentRecord.user_id)
        heads = select(
            literal("head").label("kind"),
            ChainHead.name.label("owner"),
            ChainHead.records.label("records"),
            ChainHead.last_hash.label("last_hash"),
            ChainHead.mac.label("mac"),
            literal(0).label("last_id"),
        )
        if accounts is None:
            heads = heads.where(ChainHead.name.startswith(prefix))
        else:
            heads = heads.where(ChainHead.name.in_([prefix + account for account in accounts]))
            counted = counted.where(ConsentRecord.user_id.in_(accounts))
        newest = counted.subquery()
        chains = select(
            literal("chain"),
            newest.c.user_id,
            newest.c.records,
            ConsentRecord.hash,
            literal(""),
            newest.c.last_id,
        ).join(ConsentRecord, ConsentRecord.id == newest.c.last_id)
        found: dict[str, dict[str, Any]] = {}
        for row in db.execute(union_all(heads, chains)):
            user_id = row.owner.removeprefix(prefix) if row.kind == "head" else row.owner
            found.setdefault(user_id, {})[row.kind] = row
        problems = []
        for user_id, parts in sorted(found.items()):
            problem = head_problem(self.key, user_id, parts.get("head"), parts.get("chain"))
            if problem:
                problems.append(Problem(f"account {user_id}: {problem}", user_id))
        return problems


def head_problem(key: bytes, user_id: str, head: Any, chain: Any) -> str | None:
    """What is wrong between an account's head and its records, if anything."""
    if head is None:
        return (
            f"its chain head is missing, so whether records after record {chain.last_id} "
            "were removed cannot be told"
        )
    if head_mac(key, user_id, head.records, head.last_hash) != head.mac:
        return "its chain head does not match its keyed MAC (reset, or written without the key)"
    held = chain.records if chain else 0
    newest = chain.last_hash if chain else account_genesis(key, user_id)
    if head.records > held:
        return (
            f"its chain head vouches for {head.records} records, but {held} are left: "
            + (f"the records after record {chain.last_id} are missing" if chain else
               "every record is missing")
        )  # fmt: skip
    if head.records != held or head.last_hash != newest:
        return f"its chain head vouches for {head.records} records that are not these {held}"
    return None


def required_refused(purposes: list[Purpose]) -> ServiceError:
    names = ", ".join(p.title.en for p in purposes)
    return ServiceError(
        REQUIRED_REFUSED,
        403,
        "The service cannot be provided without this",
        f"{names} {'is' if len(purposes) == 1 else 'are'} needed to provide the account at all, "
        "so signing in ends here. Your refusal is recorded. You can come back and agree at "
        "any time, or ask us to delete your account.",
        keep_changes=True,
    )


class ConsentService:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        catalogue: Catalogue,
        policies: PolicyService,
        signer: Signer,
        effects: WithdrawalEffects,
        chain_key: bytes,
        checkpoints: CheckpointStore,
        safeguards: Safeguards,
    ) -> None:
        self._db, self._clock, self._catalogue = db, clock, catalogue
        self._policies, self._signer, self._effects = policies, signer, effects
        self._key, self._checkpoints = chain_key, checkpoints
        self._heads: dict[str, ChainHead] = {}
        self._safeguards = safeguards

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    @property
    def policies(self) -> PolicyService:
        return self._policies

    # -- reading ---------------------------------------------------------------

    def history(self, user_id: str) -> Sequence[ConsentRecord]:
        return (
            self._db.execute(
                select(ConsentRecord)
                .where(ConsentRecord.user_id == user_id)
                .order_by(ConsentRecord.id)
            )
            .scalars()
            .all()
        )

    def current(self, user_id: str) -> dict[tuple[str, str | None], ConsentRecord]:
        """The latest decision per (purpose, client). Only those rows are read:
        every sign-in asks, and a history grows with every decision ever made."""
        latest_ids = (
            select(func.max(ConsentRecord.id))
            .where(ConsentRecord.user_id == user_id)
            .group_by(ConsentRecord.purpose, ConsentRecord.client_id)
        )
        records = self._db.execute(
            select(ConsentRecord).where(ConsentRecord.id.in_(latest_ids)).order_by(ConsentRecord.id)
        ).scalars()
        return {(record.purpose, record.client_id): record for record in records}

    def is_granted(self, user_id: str, purpose: str, client_id: str | None = None) -> bool:
        record = self.current(user_id).get((purpose, client_id))
        return record is not None and record.decision == Decision.GRANTED

    def pending(
        self,
        user_id: str,
        current: dict[tuple[str, str | None], ConsentRecord] | None = None,
    ) -> list[Purpose]:
        """Purposes the user must decide (again) before a full sign-in: never
        decided, touched by a material policy change since, or a required one
        not granted. Pass ``current`` when already read, to save a query."""
        latest = self.current(user_id) if current is None else current
        material = self._policies.material_in_force()
        owed = []
        for purpose in self._catalogue.decided_at_sign_in():
            record = latest.get((purpose.code, None))
            if (
                record is None
                or (purpose.required and record.decision != Decision.GRANTED)
                or any(
                    touches(change, purpose.code) and changed_after(change, record.occurred_at)
                    for change in material
                )
            ):
                owed.append(purpose)
        return owed

    # -- deciding --------------------------------------------------------------

    def validate(self, policy_version: str, decisions: list[DecisionInput]) -> PolicyVersion:
        """Check a batch of decisions without recording it; the current policy."""
        policy = self._policies.require_current()
        if policy_version != policy.version:
            raise ServiceError(
                "stale-policy-version",
                409,
                "The policy has changed",
                f"These decisions were made under policy {policy_version!r}, but "
                f"{policy.version!r} is in force now. Read it and decide again.",
            )
        errors = []
        seen = set()
        for i, item in enumerate(decisions):
            purpose = self._catalogue.get(item.purpose)
            pointer = f"#/decisions/{i}/purpose"
            if purpose is None:
                errors.append(FieldError(pointer, f"There is no purpose {item.purpose!r}."))
            elif item.purpose in seen:
                errors.append(FieldError(pointer, "This purpose is decided twice."))
            elif purpose.per_client:
                errors.append(
                    FieldError(pointer, "This purpose is decided when you authorise a partner.")
                )
            elif item.decision == Decision.WITHDRAWN:
                errors.append(
                    FieldError(f"#/decisions/{i}/decision", "Withdraw through the withdraw action.")
                )
            elif (
                purpose.needs_separate_action
                and item.decision == Decision.GRANTED
                and len(decisions) > 1
            ):
                errors.append(
                    FieldError(
                        pointer,
                        "This purpose needs its own, separate consent: grant it alone, "
                        "not together with other decisions.",
                    )
                )
            seen.add(item.purpose)
        if errors:
            raise ServiceError(
                "validation-error",
                422,
                "Your request has invalid fields",
                "; ".join(e.detail for e in errors),
                errors=errors,
            )
        return policy

    def decide(
        self,
        user_id: str,
        policy_version: str,
        decisions: list[DecisionInput],
        channel: Channel,
        context: RequestContext,
        *,
        session: Session | None = None,
    ) -> list[ConsentRecord]:
        """Record a batch; refuses a batch that changes nothing (a replay).
        Refusing a purpose that is granted is a withdrawal: it needs what
        withdrawing it needs (from ``session``), and stops the same things."""
        policy = self.validate(policy_version, decisions)
        # The account's removal lock first (a refusal may remove protections),
        # then its chain head: two identical batches must not both pass as
        # changes. Other accounts' decisions do not wait.
        self._safeguards.hold(user_id)
        self._lock(user_id)
        latest = self.current(user_id)
        owed = {p.code for p in self.pending(user_id)}
        changes = [
            d
            for d in decisions
            if d.purpose in owed
            or (rec := latest.get((d.purpose, None))) is None
            or rec.decision != d.decision
        ]
        if not changes:
            raise ServiceError(
                "no-change",
                409,
                "Nothing to change",
                "These decisions are already on record under the current policy.",
            )
        ending = [
            d.purpose
            for d in changes
            if d.decision != Decision.GRANTED
            and (rec := latest.get((d.purpose, None))) is not None
            and rec.decision == Decision.GRANTED
        ]
        removed = self._removable(user_id, ending, session)
        records = [
            self._append(user_id, d.purpose, d.decision, policy, channel, context) for d in changes
        ]
        self._stop(user_id, ending, removed, "refused")
        refused = [
            p
            for d in changes
            if d.decision == Decision.REFUSED
            and (p := self._catalogue.get(d.purpose))
            and p.required
        ]
        if refused:
            raise required_refused(refused)
        return records

    def withdraw(
        self,
        user_id: str,
        purpose_code: str,
        context: RequestContext,
        *,
        session: Session | None = None,
    ) -> list[ConsentRecord]:
        """Withdraw from ``session`` (the user's own). Where the effects take
        away a sign-in protection, the session must have signed in as recently
        as removing that protection directly needs, and the owner is emailed.
        A per-client purpose (partner sharing) is withdrawn from every client
        it is granted to: one record each, then its effects once."""
        purpose = self._purpose(purpose_code)
        if not purpose.withdrawable:
            raise ServiceError(
                "not-withdrawable",
                409,
                "This cannot be withdrawn on its own",
                f"{purpose.title.en} rests on {purpose.legal_basis.value.replace('_', ' ')}, not "
                "on consent. To end it, cancel your account (POST /api/v1/me/cancellation).",
            )
        # The account's removal lock before its chain head, as everywhere.
        self._safeguards.hold(user_id)
        self._lock(user_id)
        clients = self._granted_clients(user_id, purpose)
        if not clients:
            raise ServiceError(
                "not-granted", 409, "Nothing to withdraw", f"{purpose.title.en} is not granted."
            )
        removed = self._removable(user_id, [purpose.code], session)
        policy = self._policies.require_current()
        records = [
            self._append(
                user_id, purpose.code, Decision.WITHDRAWN, policy, Channel.SETTINGS, context,
                client_id=client_id,
            )
            for client_id in clients
        ]  # fmt: skip
        self._stop(user_id, [purpose.code], removed, "withdrawn")
        return records

    def _granted_clients(self, user_id: str, purpose: Purpose) -> Sequence[str | None]:
        """Where ``purpose`` stands granted: the clients of a per-client one,
        else the account as a whole (``None``)."""
        if not purpose.per_client:
            return [None] if self.is_granted(user_id, purpose.code) else []
        return sorted(
            client_id
            for (code, client_id), record in self.current(user_id).items()
            if code == purpose.code
            and client_id is not None
            and record.decision == Decision.GRANTED
        )

    # -- ending a grant (withdrawn, or refused when asked again) ------------------

    def _removable(
        self, user_id: str, purposes: Sequence[str], session: Session | None
    ) -> list[Protection]:
        """The sign-in protections ending these grants takes away; refused (RFC
        9470 challenge) unless ``session`` may remove them. The account is held."""
        if session is not None and session.user_id != user_id:
            raise ValueError("a session ends only its own user's consent")
        removed = [p for code in purposes for p in self._effects.removals(self._db, code, user_id)]
        self._safeguards.require(session, removed)
        return removed

    def _stop(
        self, user_id: str, purposes: Sequence[str], removed: Sequence[Protection], verb: str
    ) -> None:
        """Stop what depends on these grants now (what was done before stays
        lawful) and tell the owner which protections went."""
        for code in purposes:
            self._effects.run(self._db, code, user_id)
        user = self._db.get(User, user_id)
        if removed and user is not None:
            named = " and ".join(f"'{code}'" for code in purposes)
            self._safeguards.tell_owner(user, removed, f"consent to {named} was {verb}")

    def grant(
        self, user_id: str, purpose_code: str, policy_version: str, context: RequestContext
    ) -> ConsentRecord:
        """A single, explicit grant (the settings page's switch)."""
        purpose = self._purpose(purpose_code)
        self.validate(policy_version, [DecisionInput(purpose.code, Decision.GRANTED)])
        return self.decide(
            user_id,
            policy_version,
            [DecisionInput(purpose.code, Decision.GRANTED)],
            Channel.SETTINGS,
            context,
        )[0]

    def grant_by_guardian(
        self, user_id: str, purpose_code: str, context: RequestContext
    ) -> ConsentRecord:
        """A verified guardian's grant for a child's account (PIPL Art. 31):
        recorded even when the account already granted the purpose, since it
        is another person's decision."""
        purpose = self._purpose(purpose_code)
        self._lock(user_id)
        policy = self._policies.require_current()
        return self._append(
            user_id, purpose.code, Decision.GRANTED, policy, Channel.GUARDIAN, context
        )

    def decide_for_client(
        self,
        user_id: str,
        purpose_code: str,
        client_id: str,
        decision: Decision,
        context: RequestContext,
        channel: Channel = Channel.OAUTH,
    ) -> ConsentRecord:
        """A decision on a per-client purpose (sharing with one partner), made
        on that partner's authorisation page or in the privacy centre."""
        purpose = self._purpose(purpose_code)
        if not purpose.per_client:
            raise ValueError(f"{purpose.code} is decided for every client at once")
        self._lock(user_id)
        policy = self._policies.require_current()
        return self._append(
            user_id, purpose.code, decision, policy, channel, context, client_id=client_id
        )

    def _lock(self, user_id: str) -> ChainHead:
        """Lock the account's chain head (made with its first record) for this
        transaction. A head the key does not vouch for is never extended: that
        would seal a gap in with a fresh MAC."""
        head = self._heads.get(user_id)
        if head is not None:
            return head
        query = select(ChainHead).where(ChainHead.name == head_name(user_id)).with_for_update()
        head = self._db.execute(query).scalar_one_or_none()
        if head is None:
            if self._db.execute(
                select(ConsentRecord.id).where(ConsentRecord.user_id == user_id).limit(1)
            ).first():
                raise ledger_unavailable(user_id, "its chain head is missing")
            genesis = account_genesis(self._key, user_id)
            insert_if_absent(
                self._db,
                ChainHead,
                {
                    "name": head_name(user_id),
                    "last_hash": genesis,
                    "records": 0,
                    "mac": head_mac(self._key, user_id, 0, genesis),
                },
                ["name"],
            )
            head = self._db.execute(query).scalar_one()
        if head_mac(self._key, user_id, head.records, head.last_hash) != head.mac:
            raise ledger_unavailable(user_id, "its chain head does not match its keyed MAC")
        self._heads[user_id] = head
        return head

    def _purpose(self, code: str) -> Purpose:
        purpose = self._catalogue.get(code)
        if purpose is None:
            raise not_found(f"Purpose {code!r}")
        return purpose

    def _append(
        self,
        user_id: str,
        purpose: str,
        decision: Decision,
        policy: PolicyVersion,
        channel: Channel,
        context: RequestContext,
        client_id: str | None = None,
    ) -> ConsentRecord:
        record = ConsentRecord(
            user_id=user_id,
            purpose=purpose,
            decision=decision,
            policy_version=policy.version,
            policy_sha256=policy.text_sha256,
            channel=channel,
            client_id=client_id,
            occurred_at=self._clock.now(),
            ip_prefix=context.ip_prefix,
            user_agent_hash=context.user_agent_hash,
        )
        head = self._lock(user_id)
        record.prev_hash = head.last_hash
        record.hash = CONSENT_LEDGER.row_hash(self._key, record)
        head.last_hash, head.records = record.hash, head.records + 1
        head.mac = head_mac(self._key, user_id, head.records, head.last_hash)
        self._db.add(record)
        self._db.flush()
        return record

    # -- proof -------------------------------------------------------------------

    def receipt(self, user_id: str, record_id: int) -> str:
        record = self._db.get(ConsentRecord, record_id)
        if record is None or record.user_id != user_id:
            raise not_found("The consent record")
        return self._signer.sign(
            {
                "iss": "privid",
                "typ": "consent-receipt",
                "record_id": record.id,
                **sealed_fields(record),
                "hash": record.hash,
                "prev_hash": record.prev_hash,
            }
        )

    def chain(self) -> ChainKeeper:
        """Seals and verifies the ledger as a whole: each record's MAC, the links
        of each account's chain and each account's keyed head."""
        return ChainKeeper(
            self._db,
            CONSENT_LEDGER,
            self._key,
            self._checkpoints,
            self._clock,
            rules=ConsentRules(self._key),
        )

    def verify_chain(self) -> Verdict:
        return self.chain().verify()


def ledger_unavailable(user_id: str, why: str) -> ServiceError:
    # No account id in the log: `flask consent-verify` names the account.
    log.error("a consent chain was not extended: %s; run flask consent-verify", why)
    return ServiceError(
        "ledger-unavailable",
        503,
        "Consent decisions cannot be recorded right now",
        "Your consent record needs an operator's attention before it can take new "
        "decisions. Nothing was changed; please try again later.",
    )


def decisions_from(items: list[Any]) -> list[DecisionInput]:
    return [DecisionInput(item.purpose, Decision(item.decision)) for item in items]
