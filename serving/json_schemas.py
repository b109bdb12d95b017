"""Builders of the JSON schemas answers are constrained by, within xgrammar's limits.

Strings are bounded by a pattern of an explicit character class (not maxLength: FACTS.md), arrays
by maxItems, so that even a weak model's constrained answer ends and validates. Where a small
model breaks a rule the schema can carry, it does: a sentence starts with a capital (or a given
name) and ends with a full stop, a question with a question mark; choices are enums of what the
asker knows (places, people, hours, statement numbers). :func:`answer_tokens` bounds the tokens
of the longest answer a schema admits, so a request's ``max_tokens`` can fit its answer.
"""

from __future__ import annotations

import json
import math
import re._parser as _re_parser
from collections.abc import Sequence
from typing import Any

TEXT_CHARS = r"A-Za-z0-9 ,.;:!?'()\-"
SPOKEN_CHARS = r"A-Za-z0-9 ,.;!?'()\-"
"""Speech: no colon, so a line cannot open with a speaker's label ("Anna: ...")."""
WORD_CHARS = r"A-Za-z ,'\-"
"""Words only (no digits, no colons): what a question is written in."""


# xgrammar 0.2.8 fails to compile a repetition bound above 128 ("per_rule_fsm_hashes"); longer
# strings are written as chained chunks of at most 128 (the same language).
MAX_REPEAT = 128


def _run(chars: str, min_chars: int, max_chars: int) -> str:
    """A regex of ``min_chars`` to ``max_chars`` characters of the class ``chars``, written in
    chunks of at most :data:`MAX_REPEAT` (the same language)."""
    c = f"[{chars}]"
    head = min(max_chars, MAX_REPEAT)
    pattern = f"{c}{{{min_chars},{head}}}"
    full, rest = divmod(max_chars - head, MAX_REPEAT)
    if full:
        pattern += f"(?:{c}{{1,{MAX_REPEAT}}}){{0,{full}}}"
    if rest:
        pattern += f"(?:{c}{{1,{rest}}})?"
    return pattern


def text(max_chars: int = 200, min_chars: int = 1) -> dict[str, Any]:
    """A line of plain text, ``min_chars`` to ``max_chars`` characters."""
    if not 0 <= min_chars <= max_chars or max_chars < 1 or min_chars > MAX_REPEAT:
        raise ValueError(f"text({max_chars}, {min_chars}): bad bounds")
    return {"type": "string", "pattern": f"^{_run(TEXT_CHARS, min_chars, max_chars)}$"}


def phrase(max_chars: int = 60) -> dict[str, Any]:
    """A short phrase in words (letters, spaces, commas, apostrophes, hyphens), a letter first:
    no digits, no stray punctuation for a weak model to fill an activity with."""
    if max_chars < 1:
        raise ValueError(f"phrase({max_chars}): bad bound")
    body = f"(?:{_run(WORD_CHARS, 0, max_chars - 1)})?" if max_chars > 1 else ""
    return {"type": "string", "pattern": f"^[A-Za-z]{body}$"}


def literal(words: str) -> str:
    """``words`` as a regex matching exactly them (each non-alphanumeric in a class)."""
    out = []
    for ch in words:
        if (ch.isalnum() and ch.isascii()) or ch == " ":
            out.append(ch)
        else:
            out.append("[" + ("\\" + ch if ch in "\\]^-[" else ch) + "]")
    return "".join(out)


def sentence(
    max_chars: int = 200,
    *,
    starts_with: Sequence[str] = (),
    ends: str = ".!?",
    chars: str = TEXT_CHARS,
) -> dict[str, Any]:
    """One or more sentences of at most ``max_chars`` characters: a capital letter first (or
    one of ``starts_with`` then a space), one of ``ends`` last."""
    head = "(?:" + "|".join(literal(w) for w in starts_with) + ") " if starts_with else "[A-Z]"
    used = max(len(w) + 1 for w in starts_with) if starts_with else 1
    body = max_chars - used - 1
    if body < 1 or not ends:
        raise ValueError(f"sentence({max_chars}): too short for its start and end")
    tail = "[" + "".join("\\" + e if e in "\\]^-[" else e for e in ends) + "]"
    return {"type": "string", "pattern": f"^{head}{_run(chars, 0, body)}{tail}$"}


def question(max_chars: int = 160) -> dict[str, Any]:
    """One question in words: a capital letter first, a question mark last."""
    return sentence(max_chars, ends="?", chars=WORD_CHARS)


def hhmm_string() -> dict[str, Any]:
    """A time of day, HH:MM (24 h)."""
    return {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}


def integer(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def integer_choice(options: Sequence[int]) -> dict[str, Any]:
    """One of ``options`` (hours, statement numbers)."""
    if not options:
        raise ValueError("a choice needs at least one option")
    return {"type": "integer", "enum": list(dict.fromkeys(int(o) for o in options))}


def choice(options: Sequence[str]) -> dict[str, Any]:
    """One of ``options`` (places, people, yes/no): an enum built from what the agent knows."""
    if not options:
        raise ValueError("a choice needs at least one option")
    return {"type": "string", "enum": list(dict.fromkeys(options))}


def boolean() -> dict[str, Any]:
    return {"type": "boolean"}


def array(items: dict[str, Any], min_items: int, max_items: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": min_items, "maxItems": max_items}


def obj(**properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all required, in this order."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def keyed(keys: Sequence[str], item: dict[str, Any]) -> dict[str, Any]:
    """An object with one property per key (e.g. start times), in this order, each an ``item``:
    the answer's order is the keys' order."""
    if not keys:
        raise ValueError("keyed() needs at least one key")
    return obj(**{k: item for k in keys})


# -- the longest answer, in tokens --------------------------------------------------------------

CHARS_PER_TOKEN = 1.0
"""Characters a token that a budget allows for: every token of a constrained answer (ASCII by its
patterns) is at least one character, so a budget of the longest answer's characters never cuts
an answer short, whatever the model writes (a weak model's degenerate text runs near one
character a token; English text runs 3 to 5, and ends far sooner). The fixed parts of an answer
(keys, braces, enum values, digits) are counted a token a character too."""


def pattern_max_chars(pattern: str) -> int:
    """The most characters a string matching ``pattern`` can have (ValueError if unbounded)."""
    _low, high = _re_parser.parse(pattern).getwidth()
    if high >= _re_parser.MAXREPEAT:
        raise ValueError(f"pattern {pattern!r} is unbounded")
    return int(high)


def _longest(schema: dict[str, Any]) -> tuple[int, int]:
    """(fixed characters, free-text characters) of the longest answer."""
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"]), 0
    if "const" in schema:
        return len(json.dumps(schema["const"])), 0
    if "anyOf" in schema:
        return max((_longest(s) for s in schema["anyOf"]), key=sum)
    kind = schema.get("type")
    if kind == "object":
        fixed = free = 0
        for key, value in schema.get("properties", {}).items():
            f, t = _longest(value)
            fixed, free = fixed + len(json.dumps(key)) + 4 + f, free + t  # "key": and ", "
        return fixed, free
    if kind == "array":
        if "maxItems" not in schema:
            raise ValueError("an array without maxItems has no longest answer")
        n = int(schema["maxItems"])
        f, t = _longest(schema["items"])
        return 2 + n * (f + 2), n * t
    if kind == "string":
        if "pattern" not in schema:
            raise ValueError("a string without a pattern has no longest answer")
        return 2, pattern_max_chars(schema["pattern"])
    if kind == "integer":
        bounds = [schema.get("minimum"), schema.get("maximum")]
        if None in bounds:
            return 20, 0  # a 64-bit integer, signed
        return max(len(str(b)) for b in bounds), 0
    if kind == "boolean":
        return 5, 0
    raise ValueError(f"no longest answer for schema {schema}")


def answer_chars(schema: dict[str, Any]) -> int:
    """The length in characters of the longest JSON answer ``schema`` admits, as constrained
    decoding writes it (``", "`` and ``": "`` between items), or a character or two more.

    Raises ValueError for an unbounded schema (a string without a pattern or enum, an array
    without maxItems), which no budget can fit.
    """
    return sum(_longest(schema))


def answer_tokens(schema: dict[str, Any]) -> int:
    """A token budget that fits the longest answer under ``schema``: its fixed characters a
    token each, its free text at :data:`CHARS_PER_TOKEN`, and the end of the turn. Constrained
    decoding closes the answer within that length, so a row never runs past its longest
    answer, and the budget never cuts an answer short."""
    fixed, free = _longest(schema)
    return fixed + math.ceil(free / CHARS_PER_TOKEN) + 1
