"""The ``sub`` a client is told for a user (OIDC Core §8).

First-party apps see the user id itself. Partners get pairwise subjects: one
value per sector host and user, so partners in different sectors cannot link
a person by ``sub``, while the clients of one sector agree on it. The value is
an HMAC under a key derived from the service secret, not a plain hash: without
the key nobody can test a guessed user id against it. Changing the service
secret therefore changes every pairwise subject partners hold."""

from __future__ import annotations

import base64
import hashlib
import hmac

from app.oidc.client_models import ClientView, SubjectType
from app.security.tokens import derive_key
from app.services.container import Services

KEY_LABEL = "oidc-pairwise-subject"


def pairwise_subject(key: bytes, sector: str, user_id: str) -> str:
    # A NUL cannot occur in a host name, so the message reads back one way only.
    message = sector.encode() + b"\x00" + user_id.encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def subject_for(svc: Services, client: ClientView, user_id: str) -> str:
    if client.subject_type == SubjectType.PUBLIC:
        return user_id
    if client.sector_identifier is None:
        # Only clients no user signs in to (client_credentials alone) lack one.
        raise ValueError(f"client {client.client_id} has no sector for pairwise subjects")
    key = derive_key(svc.runtime.settings.secret_key_bytes, KEY_LABEL)
    return pairwise_subject(key, client.sector_identifier, user_id)
