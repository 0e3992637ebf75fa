"""The core capability: accounts, consent, devices, passkeys, second factors,
rights. Its export sections register where their services are defined; what
stops when one of its purposes is withdrawn is declared here."""

from __future__ import annotations

from app import models
from app.capabilities import Capability
from app.services.consent import SECURITY_PURPOSE, Removal, WithdrawalEffects
from app.services.devices import (
    forget_devices,
    holds_any_binding,
    holds_passkey_binding,
    unbind_passkeys_of,
)
from app.services.safeguards import DEVICE_BINDINGS, PASSKEYS
from app.services.sessions import erase_device_details
from app.services.webauthn import (
    DEVICE_BIOMETRICS,
    delete_credentials,
    holds_passkeys,
    keep_a_way_in,
)


def register_withdrawal_effects(effects: WithdrawalEffects) -> None:
    """An effect that takes away a sign-in protection says so: the withdrawal
    then needs what removing that protection directly needs
    (app/services/safeguards.py)."""
    effects.register(SECURITY_PURPOSE, erase_device_details)
    effects.register(
        SECURITY_PURPOSE, forget_devices, removes=Removal(DEVICE_BINDINGS, holds_any_binding)
    )
    # device_biometrics is kept for 0 days after withdrawal: the passkeys go at
    # once, and the devices they bound are bound no more. Passkeys before
    # devices: the order a passkey sign-in writes them in, so the two never
    # wait for each other crosswise.
    effects.register(DEVICE_BIOMETRICS, keep_a_way_in)
    effects.register(
        DEVICE_BIOMETRICS, delete_credentials, removes=Removal(PASSKEYS, holds_passkeys)
    )
    effects.register(
        DEVICE_BIOMETRICS,
        unbind_passkeys_of,
        removes=Removal(DEVICE_BINDINGS, holds_passkey_binding),
    )


capability = Capability(
    name="core",
    withdrawal_effects=register_withdrawal_effects,
    models=tuple(
        model
        for model in (getattr(models, name) for name in models.__all__)
        if isinstance(model, type) and issubclass(model, models.Base) and model is not models.Base
    ),
)
