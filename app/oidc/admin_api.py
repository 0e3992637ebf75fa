"""The operators' API for OAuth clients: the same registry as ``flask
oidc-clients``, over HTTP. Operators only, with a recent sign-in; the registry
audits each change with the operator who made it. A client secret appears in
the answer that makes it, and never again."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from werkzeug.routing import BaseConverter

from app.api.operations import Link, operation
from app.http.access import operator_only
from app.http.gate import current_caller
from app.http.scope import services
from app.oidc.admin_schemas import (
    ClientList,
    ClientOut,
    ClientRegistration,
    ClientWithSecret,
    client_out,
)
from app.oidc.clients import Registered, client_registry

bp = Blueprint("oauth_clients_admin", __name__, url_prefix="/api/v1/admin/oauth-clients")
TAG = "admin"


class ClientIdConverter(BaseConverter):
    """Client ids as new_client_id makes them: anything else (a NUL, an
    overlong value) is a 404 before the database sees it."""

    regex = r"[0-9a-f]{32}"


def _add_converter(state: BlueprintSetupState) -> None:
    state.app.url_map.converters["client_id"] = ClientIdConverter


# Recorded before the routes, so the converter exists when they are added.
bp.record_once(_add_converter)


def _json(model: BaseModel, status: int = 200) -> ResponseReturnValue:
    return jsonify(model.model_dump(mode="json")), status


def _with_secret(registered: Registered) -> ClientWithSecret:
    return ClientWithSecret(client=client_out(registered.client), client_secret=registered.secret)


def _client_links(client_id: str) -> dict[str, Link]:
    """What an operator does with a client next."""
    return {
        "ReadClient": Link("oauth_clients_admin.get_client.get", {"client_id": client_id}),
        "DisableClient": Link("oauth_clients_admin.disable_client.post", {"client_id": client_id}),
        "RotateSecret": Link("oauth_clients_admin.rotate_secret.post", {"client_id": client_id}),
    }


@bp.get("")
@operator_only()
@operation(
    "Every OAuth client, disabled ones too (never a secret)",
    tag=TAG,
    responses={200: ("The clients", ClientList)},
    links={200: _client_links("$response.body#/clients/0/client_id")},
)
def list_clients() -> ResponseReturnValue:
    clients = client_registry(services()).all()
    return _json(ClientList(clients=[client_out(c) for c in clients]))


@bp.post("")
@operator_only()
@operation(
    "Register an OAuth client; its secret, if it has one, is shown in this answer only",
    tag=TAG,
    body=ClientRegistration,
    responses={201: ("Registered", ClientWithSecret)},
    links={201: _client_links("$response.body#/client/client_id")},
)
def register_client(body: ClientRegistration) -> ResponseReturnValue:
    operator = current_caller()
    registered = client_registry(services()).register(body.new_client(), actor_id=operator.user.id)
    response: Any = jsonify(_with_secret(registered).model_dump(mode="json"))
    response.headers["Location"] = url_for(".get_client", client_id=registered.client.client_id)
    return response, 201


@bp.get("/<client_id:client_id>")
@operator_only()
@operation(
    "An OAuth client's settings (never its secret)",
    tag=TAG,
    responses={200: ("The client", ClientOut)},
)
def get_client(client_id: str) -> ResponseReturnValue:
    return _json(client_out(client_registry(services()).find(client_id)))


@bp.post("/<client_id:client_id>/secret")
@operator_only()
@operation(
    "Replace a client's secret: the old one stops working at once; the new one is shown once",
    tag=TAG,
    responses={200: ("The new secret", ClientWithSecret)},
)
def rotate_secret(client_id: str) -> ResponseReturnValue:
    operator = current_caller()
    registry = client_registry(services())
    registered = registry.rotate_secret(client_id, actor_id=operator.user.id)
    return _json(_with_secret(registered))


@bp.post("/<client_id:client_id>/disable")
@operator_only()
@operation(
    "Disable a client at once and for good (disabling it again changes nothing)",
    tag=TAG,
    responses={200: ("The disabled client", ClientOut)},
)
def disable_client(client_id: str) -> ResponseReturnValue:
    operator = current_caller()
    client = client_registry(services()).disable(client_id, actor_id=operator.user.id)
    return _json(client_out(client))
