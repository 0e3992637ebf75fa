"""Push notifications behind a small interface, and a logging stand-in.

A push goes to a user id: the provider (FCM, APNs, a vendor channel) maps the
id to the user's devices, so no address is needed here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingPush:
    user_id: str
    title: str
    text: str


class PushSender(Protocol):
    def send(self, message: OutgoingPush) -> None:
        """Hand the message to the provider; raise messages.DeliveryError if it refuses."""
        ...


class LoggingPushSender:
    """Development stand-in: logs the push. The incident API refuses the push
    channel in production while this is the configured sender."""

    def send(self, message: OutgoingPush) -> None:
        log.info("push to user %s: %s - %s", message.user_id, message.title, message.text)
