"""No reference leaves an answer's schema: refused before decoding, never fetched after."""

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from serving.schema import check_schema, parse_and_validate
from serving.types import InvalidSchemaError

LOCAL = {
    "$defs": {"place": {"type": "string", "enum": ["cafe", "park"]}},
    "type": "object",
    "properties": {"where": {"$ref": "#/$defs/place"}, "again": {"$ref": "#/properties/where"}},
    "required": ["where"],
}


def test_references_into_the_schema_itself_work() -> None:
    check_schema(LOCAL)
    assert parse_and_validate('{"where": "cafe", "again": "park"}', LOCAL) == (
        {"where": "cafe", "again": "park"},
        None,
    )
    value, error = parse_and_validate('{"where": "moon"}', LOCAL)
    assert value is None and error is not None and "where" in error


@pytest.mark.parametrize(
    "ref",
    ["file:///etc/passwd", "http://127.0.0.1:9/schema.json", "other.json#/x", "//host/x"],
)
def test_a_reference_that_leaves_the_schema_is_refused_naming_it(ref: str, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"x": {"$ref": ref}}}
    with pytest.raises(InvalidSchemaError, match="leaves the schema") as info:
        check_schema(schema)
    assert "/properties/x/$ref" in str(info.value) and ref in str(info.value)


def test_a_reference_to_nowhere_in_the_schema_is_refused() -> None:
    with pytest.raises(InvalidSchemaError, match="points nowhere"):
        check_schema({"properties": {"x": {"$ref": "#/$defs/missing"}}})


def test_validating_an_answer_never_fetches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"const": "the secret"}')
    fetched: list[Any] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: fetched.append(a))
    schema = {"properties": {"x": {"$ref": secret.as_uri()}}}  # never passed check_schema
    value, error = parse_and_validate('{"x": 1}', schema)
    assert value is None and error is not None and "the secret" not in error
    assert fetched == []


def test_a_schema_too_big_to_compile_quickly_is_refused_naming_the_limit() -> None:
    wide = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(300)}}
    with pytest.raises(InvalidSchemaError, match="300 properties; at most 256"):
        check_schema(wide)
    long = {"type": "string", "description": "x" * 70_000}
    with pytest.raises(InvalidSchemaError, match="bytes; at most 65536"):
        check_schema(long)


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},  # no answer at all
        {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    ],
)
def test_a_recursive_reference_is_refused(schema: dict) -> None:
    with pytest.raises(InvalidSchemaError, match="leads back into itself"):
        check_schema(schema)


def test_references_that_share_a_target_are_not_recursive() -> None:
    word = {"type": "string", "maxLength": 5}
    check_schema(
        {"$defs": {"w": word}, "type": "array", "items": [{"$ref": "#/$defs/w"}] * 3}
        | {"prefixItems": [{"$ref": "#/$defs/w"}], "items": {"$ref": "#/$defs/w"}}
    )


def test_a_schema_nested_too_deeply_is_refused_before_validation() -> None:
    schema: dict = {"type": "string"}
    for _ in range(900):  # deeper than jsonschema's validator can recurse
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidSchemaError, match=r"nests 901 levels deep; at most 32"):
        check_schema(schema)
