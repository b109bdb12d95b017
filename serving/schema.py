"""JSON schemas for answers: checked before decoding, validated after."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from serving.types import InvalidSchemaError, LLMRequest


def check_schema(schema: Any, request_id: str | None = None) -> None:
    """Raises :class:`InvalidSchemaError` unless ``schema`` is a valid JSON schema object."""
    if not isinstance(schema, dict):
        raise InvalidSchemaError(
            f"json_schema must be an object, got {type(schema).__name__}",
            request_id,
            param="response_format",
        )
    try:
        validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidSchemaError(
            f"invalid JSON schema at {where}: {exc.message}", request_id, param="response_format"
        ) from None


def check_request_schema(request: LLMRequest) -> None:
    """Checks a request's schema, if it has one."""
    if request.json_schema is not None:
        check_schema(request.json_schema, request.request_id)


def parse_and_validate(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """Parses ``text`` as JSON and validates it against ``schema``.

    Returns:
        ``(value, None)`` on success, ``(None, reason)`` otherwise.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"answer is not valid JSON: {exc.msg} at position {exc.pos}"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return None, f"answer does not match the schema at {where}: {exc.message}"
    return value, None
