"""Builds the OpenAPI 3.1 document from the operations declared on the views."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic import BaseModel

from app.api.operations import Operation

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


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_openapi(app: Flask, version: str, cookie_name: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
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
                    "content": {"application/json": {"schema": _schema_ref(op.body, components)}},
                }
                if op.max_body_bytes:
                    entry["requestBody"]["x-max-body-bytes"] = op.max_body_bytes
            for status, (description, model) in sorted(op.responses.items()):
                response: dict[str, Any] = {"description": description}
                if model is not None:
                    response["content"] = {
                        "application/json": {"schema": _schema_ref(model, components)}
                    }
                entry["responses"][str(status)] = response
            entry["responses"]["default"] = {
                "description": "A problem (RFC 9457)",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
            if op.auth:
                entry["security"] = [{"bearer": []}, {"dpop": []}, {"cookie": []}]
            paths.setdefault(path, {})[method.lower()] = entry
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
