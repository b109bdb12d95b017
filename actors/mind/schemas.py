"""The mind's JSON schemas: the builders live in :mod:`serving.json_schemas` (shared with the
character pipeline); the mind imports them from here."""

from serving.json_schemas import (
    MAX_REPEAT,
    SPOKEN_CHARS,
    TEXT_CHARS,
    answer_tokens,
    array,
    boolean,
    choice,
    hhmm_string,
    integer,
    integer_choice,
    keyed,
    obj,
    phrase,
    question,
    sentence,
    text,
)

__all__ = [
    "MAX_REPEAT",
    "SPOKEN_CHARS",
    "TEXT_CHARS",
    "answer_tokens",
    "array",
    "boolean",
    "choice",
    "hhmm_string",
    "integer",
    "integer_choice",
    "keyed",
    "obj",
    "phrase",
    "question",
    "sentence",
    "text",
]
