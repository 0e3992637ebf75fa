"""Builds the OpenAPI 3.1 document from the operations declared on the views."""

from __future__ import annotations

import re
from typing import Any, Literal

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.api.operations import Link, Operation
from app.http.access import access_of

# <name>, <converter:name> and <converter(args):name>, e.g. <any(email,phone):kind>.
_PATH_PARAM = re.compile(r"<(?:[^<>:]+:)?([a-zA-Z_][a-zA-Z0-9_]*)>")

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
}


JsonSchemaMode = Literal["validation", "serialization"]


class _Schemas:
    """Collects the models an operation names, then emits them in one pass.

    A request body is documented as pydantic validates it, a response as it is
    serialised (aliases applied): the two can differ (``Texts.zh_cn`` is sent as
    ``zh-CN``), and pydantic names both shapes apart when they do.
    """

    def __init__(self) -> None:
        self._wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
        self._placeholders: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, str]] = {}

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, str]:
        key = (model, mode)
        if key not in self._placeholders:
            self._wanted.append(key)
            self._placeholders[key] = {}
        return self._placeholders[key]

    def components(self) -> dict[str, Any]:
        if not self._wanted:
            return {}
        refs, top = models_json_schema(
            self._wanted, by_alias=True, ref_template="#/components/schemas/{model}"
        )
        for key, placeholder in self._placeholders.items():
            placeholder.update(refs[key])
        return dict(top.get("$defs", {}))


def _link(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": link.operation_id, "parameters": dict(link.parameters)}
    if link.description:
        out["description"] = link.description
    return out


def _check_links(paths: dict[str, dict[str, Any]]) -> None:
    """A link names an operation and its path parameters exactly, or the
    document is not served: a renamed view must not leave a dangling link."""
    params = {
        entry["operationId"]: {p["name"] for p in entry.get("parameters", [])}
        for methods in paths.values()
        for entry in methods.values()
    }
    for methods in paths.values():
        for entry in methods.values():
            for status, response in entry["responses"].items():
                for name, link in response.get("links", {}).items():
                    target = link["operationId"]
                    if target not in params or set(link["parameters"]) != params[target]:
                        raise ValueError(
                            f"link {name} of {entry['operationId']} ({status}) does not "
                            f"name {target} and its path parameters {params.get(target)}"
                        )


def build_openapi(app: Flask, version: str, cookie_name: str) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        op: Operation | None = getattr(view, "openapi_operation", None)
        if op is None:
            continue
        path = _PATH_PARAM.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            entry: dict[str, Any] = {
                "summary": op.summary,
                "tags": [op.tag],
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "responses": {},
            }
            params = _PATH_PARAM.findall(rule.rule)
            if params:
                entry["parameters"] = [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ]
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schemas.ref(op.body, "validation")}},
                }
                if op.max_body_bytes:
                    entry["requestBody"]["x-max-body-bytes"] = op.max_body_bytes
            for status, (description, model) in sorted(op.responses.items()):
                response: dict[str, Any] = {"description": description}
                if model is not None:
                    response["content"] = {
                        "application/json": {"schema": schemas.ref(model, "serialization")}
                    }
                if status in op.links:
                    response["links"] = {
                        name: _link(link) for name, link in sorted(op.links[status].items())
                    }
                entry["responses"][str(status)] = response
            entry["responses"]["default"] = {
                "description": "A problem (RFC 9457)",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
            declared = access_of(view)
            if declared is not None and declared.signed_in:
                entry["security"] = [{"bearer": []}, {"dpop": []}, {"cookie": []}]
            paths.setdefault(path, {})[method.lower()] = entry
    _check_links(paths)
    components = {"Problem": PROBLEM_SCHEMA, **schemas.components()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "privid", "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                # RFC 9449: a key-bound token, with a DPoP proof header per request.
                "dpop": {
                    "type": "http",
                    "scheme": "DPoP",
                    "description": "Authorization: DPoP <token>, plus a DPoP header holding "
                    "a proof signed by the key the token is bound to",
                },
                "cookie": {"type": "apiKey", "in": "cookie", "name": cookie_name},
            },
        },
    }
