"""/openapi.json describes the API as it behaves; /healthz and /readyz.

openapi-spec-validator is not a dependency, so the structure of the document is
checked here: the parts of OpenAPI 3.1 a client generator relies on."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from app import build_runtime, create_app
from tests.fakes import free_port
from tests.helpers import (
    HIGH_LIMITS,
    VALID_BODIES,
    Endpoint,
    World,
    assert_problem,
    body_endpoints,
    make_world,
    pointers,
    resolve_ref,
)

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
FLASK_PARAM = re.compile(r"<(?:[^<>:]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)  # many requests per test; the limits have their own tests


@pytest.fixture
def document(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


@pytest.fixture
def world(client, mailbox, sms, runtime) -> World:
    return make_world(client, mailbox, sms, runtime)


def operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def walk_refs(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from walk_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_refs(item)


# -- the document ----------------------------------------------------------------


def test_document_is_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert isinstance(document["paths"], dict) and document["paths"]
    for path in document["paths"]:
        assert path.startswith("/"), path
        assert "<" not in path and ">" not in path, f"Flask syntax leaked into {path}"


def test_every_api_route_is_documented_with_its_methods(app, document):
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = FLASK_PARAM.sub(r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(
            m.lower() for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}
        )
    documented = {
        path: {m for m in item if m in HTTP_METHODS}
        for path, item in document["paths"].items()
        if path.startswith("/api/")
    }
    assert documented == routes
    assert len(routes) >= 15


def test_documented_paths_exist(app, client, document):
    """Nothing is documented that the service does not serve (no phantom routes)."""
    rules = {FLASK_PARAM.sub(r"{\1}", r.rule) for r in app.url_map.iter_rules()}
    assert set(document["paths"]) <= rules


def test_path_parameters_match_the_path_template(document):
    for path, method, operation in operations(document):
        in_template = re.findall(r"\{([^}]+)\}", path)
        declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert sorted(declared) == sorted(in_template), (method, path)
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["required"] is True
                assert "schema" in parameter


def test_every_ref_resolves(document):
    refs = list(walk_refs(document))
    assert len(refs) > 20
    for ref in refs:
        target = resolve_ref(document, ref)
        assert isinstance(target, dict) and target, ref


def test_operations_are_well_formed(document):
    ids = []
    schemes = document["components"]["securitySchemes"]
    for path, method, operation in operations(document):
        label = f"{method} {path}"
        ids.append(operation["operationId"])
        assert operation["summary"], label
        assert operation["responses"], label
        for status, response in operation["responses"].items():
            assert status == "default" or re.fullmatch(r"[1-5][0-9]{2}", status), label
            assert response["description"], label
        problem = operation["responses"]["default"]["content"]["application/problem+json"]
        assert resolve_ref(document, problem["schema"]["$ref"])["required"] == [
            "type",
            "title",
            "status",
            "detail",
        ]
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), label
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_cookie_scheme_names_the_real_cookie(document, settings):
    cookie = document["components"]["securitySchemes"]["cookie"]
    assert cookie == {"type": "apiKey", "in": "cookie", "name": settings.session_cookie_name}


def test_request_bodies_are_strict_json_objects(document):
    endpoints = body_endpoints(document)
    assert {(e.method, e.path) for e in endpoints} == set(VALID_BODIES)
    for endpoint in endpoints:
        body = endpoint.operation["requestBody"]
        assert body["required"] is True
        assert set(body["content"]) == {"application/json"}
        schema = endpoint.schema
        assert schema["type"] == "object", str(endpoint)
        assert schema.get("additionalProperties") is False, str(endpoint)
        assert schema["required"], str(endpoint)
        assert set(schema["required"]) <= set(schema["properties"]), str(endpoint)


# -- the documented schemas are the ones that validate ---------------------------


def test_documented_schemas_are_what_the_validator_enforces(client, document, world):
    endpoints = body_endpoints(document)
    checked = 0
    for endpoint in endpoints:
        schema = endpoint.schema
        valid = endpoint.valid_body(world)
        assert set(valid) <= set(schema["properties"]), str(endpoint)

        def refused(body: dict[str, Any], endpoint: Endpoint = endpoint) -> set[str]:
            response = endpoint.send(client, world, json.dumps(body))
            return pointers(assert_problem(response, 422, "validation-error"))

        # additionalProperties: false
        assert refused({**valid, "undocumented": "x"}) == {"#/undocumented"}, str(endpoint)
        for name, prop in schema["properties"].items():
            label = f"{endpoint} {name}"
            pointer = f"#/{name}"
            if name in schema["required"]:
                without = {k: v for k, v in valid.items() if k != name}
                assert refused(without) == {pointer}, label
            if prop.get("type") == "string":
                assert refused({**valid, name: 7}) == {pointer}, label
            if "maxLength" in prop:
                assert refused({**valid, name: "9" * (prop["maxLength"] + 1)}) == {pointer}, label
            if "minLength" in prop and prop["minLength"] > 0:
                assert refused({**valid, name: ""}) == {pointer}, label
            if "enum" in prop:
                assert refused({**valid, name: "not-" + prop["enum"][0]}) == {pointer}, label
            if "pattern" in prop:
                candidates = ("12345x", "a b!", "/", "   ")
                bad = next(v for v in candidates if not re.search(prop["pattern"], v))
                assert refused({**valid, name: bad}) == {pointer}, label
            checked += 1
    assert checked >= 20


def test_optional_documented_fields_may_be_left_out(client, document, world):
    """What the document marks optional the validator does not demand."""
    optional_seen = 0
    for endpoint in body_endpoints(document):
        # Fields that one branch of a oneOf requires are alternatives, not optional.
        alternatives = {
            name for branch in endpoint.schema.get("oneOf", []) for name in branch["required"]
        }
        optional = (
            set(endpoint.schema["properties"]) - set(endpoint.schema["required"]) - alternatives
        )
        for name in optional:
            body = {k: v for k, v in endpoint.valid_body(world).items() if k != name}
            response = endpoint.send(client, world, json.dumps(body))
            problem = response.get_json() if response.status_code >= 400 else {}
            assert problem.get("type", "").rsplit("/", 1)[-1] != "validation-error" or (
                f"#/{name}" not in pointers(problem)
            ), (str(endpoint), name, problem)
            optional_seen += 1
    assert optional_seen >= 3  # token_delivery on the three sign-in endpoints


def test_documented_security_is_enforced(client, document, world):
    for path, method, operation in operations(document):
        if not path.startswith("/api/"):
            continue
        endpoint = Endpoint(method, path, operation, {})
        has_body = "requestBody" in operation
        data = json.dumps(VALID_BODIES[(method, path)](world)) if has_body else None
        response = client.open(
            endpoint.url(world),
            method=method.upper(),
            data=data,
            content_type="application/json" if has_body else None,
        )
        if operation.get("security"):
            assert_problem(response, 401, "authentication-required")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            body = response.get_json(silent=True) or {}
            assert body.get("type", "").rsplit("/", 1)[-1] != "authentication-required", path


# -- health ----------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {}}


def test_readyz(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "ratelimit_storage": "ok"},
    }


def test_health_endpoints_are_not_rate_limited(client):
    for _ in range(40):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_readyz_is_a_503_problem_when_the_database_is_unreachable(settings):
    port = free_port()  # nothing listens here: connections are refused at once
    password = "db-secret-pw"
    unreachable = settings.model_copy(
        update={
            "database_url": (
                f"postgresql+psycopg://privid:{password}@127.0.0.1:{port}/privid?connect_timeout=3"
            )
        }
    )
    runtime = build_runtime(unreachable)
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    try:
        client = app.test_client()
        started = time.monotonic()
        response = client.get("/readyz")
        assert time.monotonic() - started < 10
        problem = assert_problem(response, 503, "not-ready")
        assert "database" in problem["detail"]
        assert "ratelimit" not in problem["detail"]
        assert response.headers["Retry-After"].isdigit()
        text = response.get_data(as_text=True)
        for leaked in (password, str(port), "127.0.0.1", "psycopg", "postgresql"):
            assert leaked not in text
        # Liveness does not depend on the database.
        assert client.get("/healthz").status_code == 200
    finally:
        app.extensions["privid.engine"].dispose()


def test_links_name_real_operations_and_their_path_parameters(document):
    operations = {
        entry["operationId"]: {p["name"] for p in entry.get("parameters", [])}
        for methods in document["paths"].values()
        for entry in methods.values()
    }
    links = [
        link
        for methods in document["paths"].values()
        for entry in methods.values()
        for response in entry["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 25
    for link in links:
        assert set(link["parameters"]) == operations[link["operationId"]], link
        for expression in link["parameters"].values():
            assert expression.startswith("$response.body#/"), link


def test_a_link_to_an_operation_that_does_not_exist_stops_the_document():
    from flask import Flask

    from app.api.openapi_doc import build_openapi
    from app.api.operations import Link, operation

    app = Flask(__name__)
    gone = {"Gone": Link("renamed.get", {"id": "$response.body#/id"})}

    @app.get("/things")
    @operation("Things", tag="t", responses={200: ("Things", None)}, links={200: gone})
    def things() -> str:
        return ""

    with pytest.raises(ValueError, match=r"renamed\.get"):
        build_openapi(app, "1", "cookie")
    with pytest.raises(ValueError, match="undocumented"):
        operation("Other things", tag="t", links={201: gone})
