"""A message as the outbox keeps it: rendered, then sealed under a data key of
its own (wrapped by the key-encryption key), bound to its outbox row's id.

A data key per message, not per user: registration and unknown-address requests
have no user, and erasing one row's wrapped key erases that message alone.
Payloads are padded to a multiple of PAD_TO bytes, so a ciphertext's length
says nothing about the address, and a row that carries nothing to send looks
like one that does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from app.adapters.messages import OutgoingEmail, OutgoingSms
from app.security.envelope import FieldCipher, KeyRing, WrappedKey

PAD_TO = 512
FIELD = "outbox_payload"


@dataclass(frozen=True)
class Deferred:
    """A message a capability renders when it is sent, not when it is queued
    (a signed token that must be fresh on every try): the name of its
    renderer (``Runtime.outbox_renderers``) and what that needs."""

    renderer: str
    data: Mapping[str, str] = field(default_factory=dict)


Outgoing = OutgoingEmail | OutgoingSms | Deferred


@dataclass(frozen=True)
class Sealed:
    key_id: str
    wrapped_key: bytes
    payload: bytes


def _owner(message_id: str) -> str:
    return f"outbox:{message_id}"


@dataclass(frozen=True)
class Opened:
    message: Outgoing | None  # None: the row carries nothing to send
    not_after: datetime | None  # sending later is pointless (the code has expired)


def seal(
    key_ring: KeyRing,
    message_id: str,
    message: Outgoing | None,
    not_after: datetime | None = None,
) -> Sealed:
    """Seal ``message``; None seals a row the worker discards unsent."""
    data: dict[str, str | bool]
    if isinstance(message, OutgoingEmail):
        data = {"to": message.to, "subject": message.subject, "body": message.body}
    elif isinstance(message, OutgoingSms):
        data = {"to": message.to, "text": message.text}
    elif isinstance(message, Deferred):
        data = {"render": message.renderer, "data": json.dumps(dict(message.data))}
    else:
        data = {"nothing": True}
    if not_after is not None:
        data["not_after"] = not_after.isoformat()
    text = json.dumps(data, ensure_ascii=False)
    text += " " * (-len(text.encode()) % PAD_TO)
    data_key, wrapped = key_ring.new_data_key(_owner(message_id))
    payload = FieldCipher(data_key, _owner(message_id)).encrypt(FIELD, text)
    return Sealed(wrapped.key_id, wrapped.wrapped, payload)


def open_sealed(key_ring: KeyRing, message_id: str, sealed: Sealed) -> Opened:
    """Raises envelope.DecryptionError when the key or the payload is not right."""
    owner = _owner(message_id)
    data_key = key_ring.unwrap(WrappedKey(sealed.key_id, sealed.wrapped_key), owner)
    data = json.loads(FieldCipher(data_key, owner).decrypt(FIELD, sealed.payload))
    not_after = datetime.fromisoformat(data["not_after"]) if "not_after" in data else None
    message: Outgoing | None
    if data.get("nothing"):
        message = None
    elif "render" in data:
        message = Deferred(data["render"], json.loads(data["data"]))
    elif "subject" in data:
        message = OutgoingEmail(to=data["to"], subject=data["subject"], body=data["body"])
    else:
        message = OutgoingSms(to=data["to"], text=data["text"])
    return Opened(message, not_after)
