"""The plug-in point: a capability listed in INSTALLED brings its blueprints
(on their surface), its withdrawal effects and its export sections, with no
edit anywhere else."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Blueprint, jsonify

from app import build_runtime, capabilities
from app.api.problems import JSON_API
from app.capabilities import Capability
from app.http.access import signed_in
from app.http.gate import current_caller
from app.services import export
from app.services.consent import WithdrawalEffects
from app.services.container import Runtime
from app.services.export import ExportContext, Section
from tests.helpers import assert_problem, baseline_consent, bearer, register

MODULE = "tests_probe_capability"


@pytest.fixture
def probe_capability(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {"withdrawn": []}
    blueprint = Blueprint("probe_capability", __name__, url_prefix="/api/v1/probe")

    @blueprint.get("/hello")
    @signed_in()
    def hello() -> Any:
        return jsonify(user=current_caller().user.id)

    def effects(registry: WithdrawalEffects) -> None:
        registry.register("analytics", lambda _db, user_id: seen["withdrawn"].append(user_id))

    def section(ctx: ExportContext) -> dict[str, str]:
        return {"kept_for": ctx.user.id}

    module = types.ModuleType(MODULE)
    module.capability = Capability(  # type: ignore[attr-defined]
        name="probe",
        blueprints=((blueprint, JSON_API),),
        withdrawal_effects=effects,
        export_sections=(Section("probe_section", (), section),),
    )
    monkeypatch.setitem(sys.modules, MODULE, module)
    monkeypatch.setattr(capabilities, "INSTALLED", (*capabilities.INSTALLED, MODULE))
    capabilities.installed.cache_clear()
    yield seen
    capabilities.installed.cache_clear()
    export.SECTIONS[:] = [s for s in export.SECTIONS if s.name != "probe_section"]


@pytest.fixture
def runtime(probe_capability, settings, clock) -> Runtime:
    # Built once the probe is installed: the runtime collects withdrawal effects
    # from the capabilities.
    return build_runtime(settings, clock=clock)


def test_a_capability_brings_its_views_effects_and_export(
    client, probe_capability, mailbox, sms
) -> None:
    # Behind the gate, on the JSON surface.
    assert_problem(client.get("/api/v1/probe/hello"), 401, "authentication-required")
    _, session = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))
    token = bearer(session["token"])
    user_id = client.get("/api/v1/probe/hello", headers=token).json["user"]
    # Its part of the export.
    exported = client.post("/api/v1/me/export", headers=token)
    assert exported.status_code == 200
    assert exported.json["probe_section"] == {"kept_for": user_id}
    # Its withdrawal effect runs when the purpose is withdrawn.
    assert client.post("/api/v1/me/consent/analytics/withdraw", headers=token).status_code == 200
    assert probe_capability["withdrawn"] == [user_id]
