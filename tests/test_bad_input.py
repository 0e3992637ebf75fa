"""Every JSON endpoint refuses bad input with a problem document and changes nothing.

The endpoints come from /openapi.json (every operation with a requestBody), so a
new endpoint is covered as soon as it is documented."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.services.audit import AuditTrail
from tests.helpers import (
    HIGH_LIMITS,
    VALID_BODIES,
    Endpoint,
    World,
    assert_problem,
    body_endpoints,
    make_world,
    new_person,
    nothing_changes,
    pointers,
    row_counts,
    sent_messages,
    table_rows,
)

MARK = "__privid_test_marker__"
FUZZ = hypothesis_settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The point here is the validator, not the rate limiter (tests/test_rate_limits.py).
    return dict(HIGH_LIMITS)


@pytest.fixture
def world(client, mailbox, sms, runtime) -> World:
    return make_world(client, mailbox, sms, runtime)


@pytest.fixture
def endpoints(client) -> list[Endpoint]:
    found = body_endpoints(client.get("/openapi.json").get_json())
    assert found, "no documented endpoint takes a body"
    return found


@pytest.fixture
def refuse(app, runtime, mailbox, sms, client, world):
    """refuse(endpoint, data, status, slug, content_type=...) -> problem body, and
    asserts that the request wrote nothing and sent nothing."""

    def check(
        endpoint: Endpoint,
        data: bytes | str,
        status: int,
        slug: str,
        content_type: str | None = "application/json",
        **kwargs: Any,
    ) -> dict[str, Any]:
        label = f"{endpoint} with {data[:80]!r}"
        with nothing_changes(app, runtime, mailbox, sms, label):
            response = endpoint.send(client, world, data, content_type, **kwargs)
            body = assert_problem(response, status, slug)
        return body

    return check


def first_field(body: dict[str, Any]) -> str:
    return sorted(body)[0]


def with_raw_value(body: dict[str, Any], field: str, raw_json: str) -> str:
    """The body as JSON text, with ``field``'s value replaced by raw JSON text."""
    text = json.dumps({**body, field: MARK})
    assert text.count(f'"{MARK}"') == 1
    return text.replace(f'"{MARK}"', raw_json)


def test_every_documented_body_endpoint_is_exercised(endpoints):
    documented = {(e.method, e.path) for e in endpoints}
    assert documented == set(VALID_BODIES), (
        "tests/helpers.VALID_BODIES must list exactly the documented endpoints with a body"
    )


def test_the_harness_sees_a_change(app, runtime, mailbox, sms, client, world, endpoints):
    """Control: the same harness notices when a valid request does write and send."""
    registration = next(e for e in endpoints if e.path == "/api/v1/registration")
    before_rows, before_sent = table_rows(app), sent_messages(runtime, mailbox, sms)
    response = registration.send(client, world, json.dumps(registration.valid_body(world)))
    assert response.status_code == 202, response.get_json()
    assert row_counts(table_rows(app)) != row_counts(before_rows)
    assert sent_messages(runtime, mailbox, sms) != before_sent


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{",
        "{'email': 'a@example.com'}",
        '{"email": "a@example.com",}',
        '{"email": "a@example.com"} {}',
        '{"email": "a@example.com" /* comment */}',
        "\ufeff{}",  # a byte-order mark is not JSON
        "undefined",
    ],
)
def test_malformed_json(refuse, endpoints, data):
    for endpoint in endpoints:
        refuse(endpoint, data, 400, "malformed-json")


def test_truncated_valid_body_is_malformed(refuse, endpoints, world):
    for endpoint in endpoints:
        text = json.dumps(endpoint.valid_body(world))
        refuse(endpoint, text[:-1], 400, "malformed-json")


@pytest.mark.parametrize("shape", ["array", "string", "number", "null", "true"])
def test_a_json_value_that_is_not_an_object(refuse, endpoints, world, shape):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        data = {
            "array": json.dumps([valid]),
            "string": json.dumps(json.dumps(valid)),
            "number": "1",
            "null": "null",
            "true": "true",
        }[shape]
        refuse(endpoint, data, 400, "malformed-json")


def wrong_values(valid: Any, schema: dict[str, Any]) -> list[Any]:
    """Values of the wrong JSON type for a property; nothing is coerced."""
    variants = schema.get("anyOf", [])
    if {"type": "null"} in variants:
        # An optional field: null is allowed; judge by the other type.
        (other,) = [v for v in variants if v != {"type": "null"}]
        return [w for w in wrong_values(valid, other) if w is not None]
    if schema.get("type") == "string":
        numeric = [int(valid)] if isinstance(valid, str) and valid.lstrip("+").isdigit() else []
        return [*numeric, 1, 1.5, True, False, None, [valid], {"value": valid}]
    return ["1", "true", None, [valid], {"value": valid}]


def test_wrong_types_are_refused_not_coerced(refuse, endpoints, world):
    checked = 0
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        for field, value in valid.items():
            for wrong in wrong_values(value, endpoint.schema["properties"][field]):
                body = refuse(
                    endpoint, json.dumps({**valid, field: wrong}), 422, "validation-error"
                )
                found = pointers(body)
                # The error points at the field, or inside it for lists and objects.
                assert found and all(
                    p == f"#/{field}" or p.startswith(f"#/{field}/") for p in found
                ), (str(endpoint), field, wrong, body)
                checked += 1
    assert checked > 50


def test_refusals_never_echo_a_submitted_secret(refuse, endpoints, world):
    """Passwords and codes are not quoted back, however they were malformed."""
    secret = "S3cret-Marker-Value"
    secret_fields = 0
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        for field in valid:
            if "password" not in field and field != "code":
                continue
            secret_fields += 1
            for wrong, status, slug in (
                ([secret], 422, "validation-error"),
                ({"nested": secret}, 422, "validation-error"),
                (secret * 100, 422, "validation-error"),  # too long for every field
                (secret + "\x00", 400, "bad-unicode"),
            ):
                body = json.dumps({**valid, field: wrong, "extra": 1})
                problem = refuse(endpoint, body, status, slug)
                assert secret not in json.dumps(problem), (str(endpoint), field, problem)
    assert secret_fields >= 8


def test_a_code_sent_as_a_number_is_not_read_as_the_code(refuse, endpoints, world):
    """123456 would be a well-formed code if it were coerced to "123456"."""
    with_code = [e for e in endpoints if "code" in e.schema["properties"]]
    assert len(with_code) >= 4
    for endpoint in with_code:
        body = {**endpoint.valid_body(world), "code": 123456}
        problem = refuse(endpoint, json.dumps(body), 422, "validation-error")
        assert pointers(problem) == {"#/code"}


@pytest.mark.parametrize(
    ("extra", "pointer"),
    [
        ({"is_admin": True}, "#/is_admin"),
        ({"user_id": "00000000-0000-0000-0000-000000000000"}, "#/user_id"),
        ({"a/b~c": 1}, "#/a~1b~0c"),  # JSON Pointer escaping (RFC 6901)
        ({"Email": "x@example.com"}, "#/Email"),  # names are case-sensitive
    ],
)
def test_unknown_fields_are_refused(refuse, endpoints, world, extra, pointer):
    for endpoint in endpoints:
        body = {**endpoint.valid_body(world), **extra}
        problem = refuse(endpoint, json.dumps(body), 422, "validation-error")
        assert pointers(problem) == {pointer}, (str(endpoint), problem)


def test_each_missing_required_field_is_named(refuse, endpoints, world):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        required = endpoint.schema["required"]
        assert required, str(endpoint)
        for field in required:
            body = {k: v for k, v in valid.items() if k != field}
            problem = refuse(endpoint, json.dumps(body), 422, "validation-error")
            assert pointers(problem) == {f"#/{field}"}, (str(endpoint), problem)
        problem = refuse(endpoint, "{}", 422, "validation-error")
        assert pointers(problem) == {f"#/{field}" for field in required}


def test_duplicate_keys_are_refused(refuse, endpoints, world):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        field = first_field(valid)
        text = json.dumps(valid)
        # The same key twice, once with the same value and once with another.
        same = "{" + json.dumps(field) + ": " + json.dumps(valid[field]) + ", " + text[1:]
        other = "{" + json.dumps(field) + ': "decoy", ' + text[1:]
        refuse(endpoint, same, 400, "malformed-json")
        refuse(endpoint, other, 400, "malformed-json")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_not_json(refuse, endpoints, world, constant):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        refuse(endpoint, with_raw_value(valid, first_field(valid), constant), 400, "malformed-json")
        extra = json.dumps(valid)[:-1] + f', "n": {constant}}}'
        refuse(endpoint, extra, 400, "malformed-json")


def test_oversized_body_is_refused(refuse, endpoints, world, settings):
    assert settings.max_request_bytes == 64 * 1024
    for endpoint in endpoints:
        # An endpoint may document a larger limit of its own (a policy text).
        limit = endpoint.operation["requestBody"].get(
            "x-max-body-bytes", settings.max_request_bytes
        )
        valid = endpoint.valid_body(world)
        field = first_field(valid)
        big = json.dumps({**valid, field: "a" * (limit + 1)})
        refuse(endpoint, big, 413, "payload-too-large")
        # Whitespace counts too, and so does a body streamed without Content-Length.
        padded = json.dumps(valid) + " " * (limit + 1 - len(json.dumps(valid)))
        assert len(padded.encode()) == limit + 1
        refuse(endpoint, padded, 413, "payload-too-large")
        refuse(
            endpoint,
            b"",
            413,
            "payload-too-large",
            input_stream=io.BytesIO(padded.encode()),
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )


def test_a_body_of_exactly_the_limit_is_read(client, world, endpoints, settings):
    login = next(e for e in endpoints if e.path == "/api/v1/login/password")
    text = json.dumps(login.valid_body(world))
    padded = text + " " * (settings.max_request_bytes - len(text))
    assert len(padded.encode()) == settings.max_request_bytes
    assert login.send(client, world, padded).status_code == 200
    streamed = login.send(
        client,
        world,
        b"",
        input_stream=io.BytesIO(padded.encode()),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert streamed.status_code == 200, streamed.get_json()


@pytest.mark.parametrize(
    "bad_bytes",
    [b"\xff", b"\xc0\xaf", b"\xe4\xb8", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"],
    ids=["0xff", "overlong", "truncated", "encoded-surrogate", "five-byte"],
)
def test_invalid_utf8_is_refused(refuse, endpoints, world, bad_bytes):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        text = with_raw_value(valid, first_field(valid), f'"{MARK}"')
        data = text.encode().replace(MARK.encode(), b"ab" + bad_bytes + b"cd")
        refuse(endpoint, data, 400, "malformed-json")


def test_utf16_body_is_refused(refuse, endpoints, world):
    for endpoint in endpoints:
        refuse(
            endpoint, json.dumps(endpoint.valid_body(world)).encode("utf-16"), 400, "malformed-json"
        )


@pytest.mark.parametrize(
    "escaped",
    ["\\ud800", "x\\udfffy", "\\udc00\\ud800", "\\ud83d"],
    ids=["high", "low", "reversed-pair", "half-emoji"],
)
def test_lone_surrogates_are_refused(refuse, endpoints, world, escaped):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        field = first_field(valid)
        problem = refuse(endpoint, with_raw_value(valid, field, f'"{escaped}"'), 400, "bad-unicode")
        assert pointers(problem) == {f"#/{field}"}, problem
        # In a key as well.
        refuse(endpoint, json.dumps(valid)[:-1] + f', "{escaped}": 1}}', 400, "bad-unicode")


def test_a_real_surrogate_pair_is_fine(client, world, endpoints):
    """Control: an escaped pair that makes one character (😀) is valid text."""
    login = next(e for e in endpoints if e.path == "/api/v1/login/password")
    body = with_raw_value(login.valid_body(world), "password", '"\\ud83d\\ude00-not-it"')
    assert_problem(login.send(client, world, body), 401, "invalid-credentials")


@pytest.mark.parametrize("raw", ['"\\u0000"', '"abc\\u0000def"', '"abc\\u0000"'])
def test_nul_characters_are_refused(refuse, endpoints, world, raw):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        field = first_field(valid)
        problem = refuse(endpoint, with_raw_value(valid, field, raw), 400, "bad-unicode")
        assert pointers(problem) == {f"#/{field}"}, problem
        assert "\x00" not in problem["detail"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
        "application/problem+json",
    ],
)
def test_wrong_content_type(refuse, endpoints, world, content_type):
    for endpoint in endpoints:
        data = json.dumps(endpoint.valid_body(world))
        refuse(endpoint, data, 415, "unsupported-media-type", content_type=content_type)


def test_json_with_a_charset_parameter_is_accepted(client, world, endpoints):
    login = next(e for e in endpoints if e.path == "/api/v1/login/password")
    response = login.send(
        client, world, json.dumps(login.valid_body(world)), "application/json; charset=utf-8"
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("depth", [2_000, 20_000])
def test_deeply_nested_json_is_refused_not_a_crash(refuse, endpoints, depth):
    for endpoint in endpoints:
        refuse(endpoint, "[" * depth + "]" * depth, 400, "malformed-json")
        nested = '{"a": ' * depth + "1" + "}" * depth
        if len(nested) <= 64 * 1024:
            refuse(endpoint, nested, 400, "malformed-json")


def test_huge_integer_is_refused(refuse, endpoints, world):
    for endpoint in endpoints:
        valid = endpoint.valid_body(world)
        body = with_raw_value(valid, first_field(valid), "9" * 5000)
        refuse(endpoint, body, 400, "malformed-json")


# -- routing errors and server errors ------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nothing-here"),
        ("GET", "/nothing-here"),
        ("POST", "/api/v1/me/fax/confirm"),
        ("POST", "/api/v2/login/password"),
    ],
)
def test_unknown_address_is_a_404_problem(client, method, path):
    body = assert_problem(client.open(path, method=method, json={}), 404, "not-found")
    assert path not in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/login/password", "POST"),
        ("PUT", "/api/v1/registration", "POST"),
        ("DELETE", "/api/v1/me", "GET"),
        ("POST", "/healthz", "GET"),
        ("GET", "/api/v1/me/sessions/revoke-others", "POST"),
    ],
)
def test_wrong_method_is_a_405_problem(client, method, path, allowed):
    response = client.open(path, method=method)
    assert_problem(response, 405, "method-not-allowed")
    assert allowed in {m.strip() for m in response.headers["Allow"].split(",")}


def test_unknown_registration_flow_is_a_404_problem(client, world, app, runtime, mailbox, sms):
    with nothing_changes(app, runtime, mailbox, sms):
        response = client.post(
            f"/api/v1/registration/{uuid.uuid4()}/verify",
            json={"channel": "email", "code": "123456"},
        )
        assert_problem(response, 404, "not-found")


def test_a_500_never_leaks_the_exception(client, app, runtime, mailbox, sms, monkeypatch, caplog):
    person = new_person()
    secret = f"boom: INSERT INTO users VALUES ('{person.email}', '{person.password}')"
    original = AuditTrail.record

    def failing_record(self: AuditTrail, event_type: str, **kwargs: Any) -> Any:
        if event_type == "registration.started":
            raise RuntimeError(secret)
        return original(self, event_type, **kwargs)

    monkeypatch.setattr(AuditTrail, "record", failing_record)
    caplog.set_level(logging.DEBUG)
    body = {
        "email": person.email,
        "phone": person.phone,
        "full_name": person.full_name,
        "password": person.password,
    }
    with nothing_changes(app, runtime, mailbox, sms, "a failed request"):
        response = client.post("/api/v1/registration", json=body)
        problem = assert_problem(response, 500, "internal-error")
    text = response.get_data(as_text=True)
    for leaked in ("boom", "INSERT", person.email, person.password, "RuntimeError", "Traceback"):
        assert leaked not in text
        assert leaked not in problem["detail"]
    assert "RuntimeError" in caplog.text  # the operator still learns what failed
    for leaked in (person.email, person.password, "INSERT INTO"):
        assert leaked not in caplog.text


# -- fuzzing ------------------------------------------------------------------


def registration_verdict(response: Any) -> None:
    """Never a server error: either accepted (202 with a flow) or a problem document."""
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code == 202:
        flow = response.get_json()
        assert set(flow) == {"flow_id", "expires_at", "email_confirmed", "phone_confirmed"}
    else:
        assert 400 <= response.status_code < 500
        assert_problem(response, response.status_code)


# Any character, lone surrogates and NUL included, with some that addresses use.
any_char = st.one_of(
    st.characters(), st.characters(categories=["Cs"]), st.sampled_from("\x00@+.- 0123456789")
)
any_text = st.text(alphabet=any_char, max_size=80)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def registration_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid registration with some fields replaced, edited or added to."""
    person = new_person()
    body: dict[str, Any] = {
        "email": person.email,
        "phone": person.phone,
        "full_name": person.full_name,
        "password": person.password,
    }
    for name in draw(st.sets(st.sampled_from(sorted(body)), max_size=3)):
        value = body[name]
        body[name] = draw(
            st.one_of(
                any_text,
                json_values,
                # The valid value with text spliced in: exercises the normalisers.
                st.builds(
                    lambda cut, piece, v=value: v[:cut] + piece + v[cut:],
                    st.integers(0, len(value)),
                    any_text,
                ),
            )
        )
    if draw(st.integers(0, 4)) == 0:
        body[draw(any_text)] = draw(json_values)
    return body


@FUZZ
@given(body=registration_bodies())
def test_fuzz_registration_fields(client, runtime, body):
    registration_verdict(client.post("/api/v1/registration", json=body))
    # Deliveries run on worker threads; finish them inside the example, so they do
    # not touch the global random state (Message-ID) while Hypothesis draws.
    runtime.dispatcher.drain()


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_registration_raw_text_body(client, text):
    registration_verdict(
        client.post("/api/v1/registration", data=text.encode(), content_type="application/json")
    )


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_registration_raw_bytes_body(client, data):
    registration_verdict(
        client.post("/api/v1/registration", data=data, content_type="application/json")
    )
