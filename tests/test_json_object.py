"""What counts as a JSON object in bytes a stranger sent (app/json_object.py),
the one rule behind DPoP proof payloads, WeChat's answers, signed-token
payloads and the `claims` request parameter."""

from __future__ import annotations

import json

import pytest

from app.json_object import json_object


@pytest.mark.parametrize("text", ['{"a": 1}', b'{"a": [1, {"b": null}]}', "{}"])
def test_an_object_is_parsed(text: str | bytes) -> None:
    parsed = json_object(text)
    assert isinstance(parsed, dict)
    assert parsed == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]", '"a string"', "42", "null", "true",  # JSON, but not an object
        "", "{", "{'a': 1}", "NaN", b"\xff\xfe{}", b'{"a": "\xc3"}',  # not JSON
        "[" * 5000, '{"a":' + "[" * 1000, b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}",
    ],
)  # fmt: skip
def test_anything_else_is_none(text: str | bytes) -> None:
    assert json_object(text) is None
