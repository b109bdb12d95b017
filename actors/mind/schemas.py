"""The mind's JSON schemas: the builders live in :mod:`serving.json_schemas` (shared with the
character pipeline); the mind imports them from here."""

from serving.json_schemas import (
    MAX_REPEAT,
    TEXT_CHARS,
    array,
    boolean,
    choice,
    hhmm,
    integer,
    obj,
    text,
)

__all__ = [
    "MAX_REPEAT",
    "TEXT_CHARS",
    "array",
    "boolean",
    "choice",
    "hhmm",
    "integer",
    "obj",
    "text",
]
