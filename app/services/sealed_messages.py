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
from dataclasses import dataclass

from app.adapters.messages import OutgoingEmail, OutgoingSms
from app.security.envelope import FieldCipher, KeyRing, WrappedKey

PAD_TO = 512
FIELD = "outbox_payload"

Outgoing = OutgoingEmail | OutgoingSms


@dataclass(frozen=True)
class Sealed:
    key_id: str
    wrapped_key: bytes
    payload: bytes


def _owner(message_id: str) -> str:
    return f"outbox:{message_id}"


def seal(key_ring: KeyRing, message_id: str, message: Outgoing | None) -> Sealed:
    """Seal ``message``; None seals a row the worker discards unsent."""
    data: dict[str, str | bool]
    if isinstance(message, OutgoingEmail):
        data = {"to": message.to, "subject": message.subject, "body": message.body}
    elif isinstance(message, OutgoingSms):
        data = {"to": message.to, "text": message.text}
    else:
        data = {"nothing": True}
    text = json.dumps(data, ensure_ascii=False)
    text += " " * (-len(text.encode()) % PAD_TO)
    data_key, wrapped = key_ring.new_data_key(_owner(message_id))
    payload = FieldCipher(data_key, _owner(message_id)).encrypt(FIELD, text)
    return Sealed(wrapped.key_id, wrapped.wrapped, payload)


def open_sealed(key_ring: KeyRing, message_id: str, sealed: Sealed) -> Outgoing | None:
    """The message, or None when the row carries nothing to send. Raises
    envelope.DecryptionError when the key or the payload is not right."""
    owner = _owner(message_id)
    data_key = key_ring.unwrap(WrappedKey(sealed.key_id, sealed.wrapped_key), owner)
    data = json.loads(FieldCipher(data_key, owner).decrypt(FIELD, sealed.payload))
    if data.get("nothing"):
        return None
    if "subject" in data:
        return OutgoingEmail(to=data["to"], subject=data["subject"], body=data["body"])
    return OutgoingSms(to=data["to"], text=data["text"])
