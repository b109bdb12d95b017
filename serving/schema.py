"""JSON schemas for answers: checked before decoding, validated after.

No reference ever leaves the schema document: every ``$ref`` / ``$dynamicRef`` must point into
the schema itself (``#``, ``#/json/pointer`` or ``#anchor``) and resolve there, or the schema is
refused; and validation runs with a registry that retrieves nothing, so no file is read and no
request is sent while checking an answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import jsonschema
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

from serving.types import InvalidSchemaError, LLMRequest

_REFERENCE_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")
MAX_SCHEMA_BYTES = 64 * 1024  # as compact JSON
MAX_SCHEMA_PROPERTIES = 256  # over the whole schema; a grammar's compile time grows ~n^2.2
# Counted repetitions: xgrammar 0.2.8 keeps a bound up to 128 in its automaton, for free; above
# that it counts in its parser's state, which grows with every character decoded, most for a
# lower bound (measured on one row: minLength 128 +5 MB over 8,000 tokens, 256 +250 MB, 2,000
# +700 MB over 3,000; 10^5 ran out of memory at 6,000 tokens; maxLength 10^5 +120 MB over
# 8,000). A lower bound no answer within max_tokens could reach must not cost the replica.
MAX_SCHEMA_DEPTH = 32  # nested objects and arrays (deeper ones overflow validators' stacks)
MAX_SCHEMA_LOWER_BOUND = 128  # minLength, minItems, minProperties, minContains
MAX_SCHEMA_UPPER_BOUND = 8192  # maxLength, maxItems, maxProperties, maxContains
_LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minContains")
_UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maxContains")
_DATA_KEYS = ("enum", "const", "default", "examples")  # values, not schemas: not walked
_NAMED_SCHEMAS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")


def _retrieve_nothing(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class


_NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_retrieve_nothing)  # type: ignore[call-arg]


def _references(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every reference in a schema document: (where, the reference's value)."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}/{key}"
            if key in _REFERENCE_KEYS:
                yield here, value
            else:
                yield from _references(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _references(value, f"{path}/{i}")


def _anchors(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(node.get(key), str):
                found.add(node[key])
        for value in node.values():
            found |= _anchors(value)
    elif isinstance(node, list):
        for value in node:
            found |= _anchors(value)
    return found


def _resolves(schema: Any, fragment: str) -> bool:
    """Whether ``#fragment`` names a place in ``schema`` (a JSON pointer or an anchor)."""
    if fragment == "":
        return True
    if not fragment.startswith("/"):
        return fragment in _anchors(schema)
    node = schema
    for raw in fragment[1:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _depth(node: Any) -> int:
    """How deeply objects and arrays nest in ``node`` (iteratively: any depth is measured)."""
    deepest, todo = 0, [(node, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            values = item.values() if isinstance(item, dict) else item
            todo.extend((v, depth + 1) for v in values)
    return deepest


def _pointer(fragment: str) -> tuple[str, ...] | None:
    """A JSON-pointer fragment's parts (None for an anchor)."""
    if not fragment.startswith("/") and fragment != "":
        return None
    return tuple(
        unquote(raw).replace("~1", "/").replace("~0", "~") for raw in fragment.split("/")[1:]
    )


def _recursive_reference(schema: dict[str, Any]) -> tuple[str, str] | None:
    """A reference that leads back into itself (directly or through others), as (where, ref):
    such a grammar may admit no finite answer at all, and its decoding then fails."""
    refs = []  # (where as parts, target as parts)
    for where, ref in _references(schema):
        target = _pointer(ref[1:]) if isinstance(ref, str) else None
        if target is not None:
            refs.append((tuple(where.split("/")[1:-1]), target, where, ref))

    def inside(path: tuple[str, ...], root: tuple[str, ...]) -> bool:
        return path[: len(root)] == root

    # ref j follows ref i when j sits inside i's target; a cycle is a recursive schema
    follows = {
        i: [j for j, r in enumerate(refs) if inside(r[0], refs[i][1])] for i in range(len(refs))
    }
    state: dict[int, int] = {}  # 1: on the path, 2: done
    for start in range(len(refs)):
        stack = [(start, iter(follows[start]))]
        state[start] = state.get(start, 0) or 1
        if state[start] == 2:
            continue
        while stack:
            node, nexts = stack[-1]
            step = next(nexts, None)
            if step is None:
                state[node] = 2
                stack.pop()
            elif state.get(step) == 1:
                return refs[step][2], refs[step][3]
            elif step not in state:
                state[step] = 1
                stack.append((step, iter(follows[step])))
    return None


def _properties(node: Any) -> int:
    if isinstance(node, dict):
        own = len(node["properties"]) if isinstance(node.get("properties"), dict) else 0
        return own + sum(_properties(v) for v in node.values())
    if isinstance(node, list):
        return sum(_properties(v) for v in node)
    return 0


def _counted_bounds(node: Any, path: str = "") -> Iterator[tuple[str, str, float]]:
    """Every repetition bound in a schema: (where, keyword, value)."""
    if isinstance(node, list):
        for i, value in enumerate(node):
            yield from _counted_bounds(value, f"{path}/{i}")
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        here = f"{path}/{key}"
        if key in _LOWER_BOUNDS + _UPPER_BOUNDS and type(value) in (int, float):
            yield here, key, value
        elif key in _NAMED_SCHEMAS and isinstance(value, dict):  # names (any word) to schemas
            for name, sub in value.items():
                yield from _counted_bounds(sub, f"{here}/{name}")
        elif key not in _DATA_KEYS:
            yield from _counted_bounds(value, here)


def _check_bounds(schema: dict[str, Any], request_id: str | None) -> None:
    """Bounds what a row's grammar may hold while it decodes: its counted repetitions."""
    for where, key, value in _counted_bounds(schema):
        most = MAX_SCHEMA_LOWER_BOUND if key in _LOWER_BOUNDS else MAX_SCHEMA_UPPER_BOUND
        if value > most:
            raise InvalidSchemaError(
                f"the JSON schema's {key} at {where} is {value:,}; at most {most:,} is accepted",
                request_id,
                param="response_format",
            )


def _check_size(schema: dict[str, Any], request_id: str | None) -> None:
    """Bounds what a grammar compile may cost: the schema's size and its properties."""
    size = len(json.dumps(schema, separators=(",", ":")))
    if size > MAX_SCHEMA_BYTES:
        raise InvalidSchemaError(
            f"the JSON schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are accepted",
            request_id,
            param="response_format",
        )
    count = _properties(schema)
    if count > MAX_SCHEMA_PROPERTIES:
        raise InvalidSchemaError(
            f"the JSON schema has {count} properties; at most {MAX_SCHEMA_PROPERTIES} are accepted",
            request_id,
            param="response_format",
        )


def _check_references(schema: dict[str, Any], request_id: str | None) -> None:
    for where, ref in _references(schema):
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise InvalidSchemaError(
                f"invalid JSON schema at {where or '(root)'}: the reference {ref!r} leaves the "
                "schema (only references into the schema itself, starting with '#', are allowed)",
                request_id,
                param="response_format",
            )
        if not _resolves(schema, ref[1:]):
            raise InvalidSchemaError(
                f"invalid JSON schema at {where}: the reference {ref!r} points nowhere in it",
                request_id,
                param="response_format",
            )


def check_schema(schema: Any, request_id: str | None = None) -> None:
    """Raises :class:`InvalidSchemaError` unless ``schema`` is a valid JSON schema object."""
    if not isinstance(schema, dict):
        raise InvalidSchemaError(
            f"json_schema must be an object, got {type(schema).__name__}",
            request_id,
            param="response_format",
        )
    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidSchemaError(
            f"the JSON schema nests {depth} levels deep; at most {MAX_SCHEMA_DEPTH} are accepted",
            request_id,
            param="response_format",
        )
    _check_size(schema, request_id)  # before the validator: its cost grows with the size
    try:
        validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidSchemaError(
            f"invalid JSON schema at {where}: {exc.message}", request_id, param="response_format"
        ) from None
    _check_bounds(schema, request_id)
    _check_references(schema, request_id)
    recursive = _recursive_reference(schema)
    if recursive is not None:
        where, ref = recursive
        raise InvalidSchemaError(
            f"invalid JSON schema at {where}: the reference {ref!r} leads back into itself "
            "(recursive schemas are not accepted: an answer must be finite)",
            request_id,
            param="response_format",
        )


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
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls(schema, registry=_NO_RETRIEVAL).validate(value)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return None, f"answer does not match the schema at {where}: {exc.message}"
    except Unresolvable as exc:  # a schema that did not pass check_schema
        return None, f"the schema's reference cannot be resolved here: {exc}"
    return value, None
