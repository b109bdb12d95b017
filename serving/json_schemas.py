"""Builders of the JSON schemas answers are constrained by, within xgrammar's limits.

Strings are bounded by a pattern of an explicit character class (not maxLength: FACTS.md), arrays
by maxItems, so that even a weak model's constrained answer ends and validates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TEXT_CHARS = r"A-Za-z0-9 ,.;:!?'()\-"


# xgrammar 0.2.8 fails to compile a repetition bound above 128 ("per_rule_fsm_hashes"); longer
# strings are written as chained chunks of at most 128 (the same language).
MAX_REPEAT = 128


def text(max_chars: int = 200, min_chars: int = 1) -> dict[str, Any]:
    """A line of plain text, ``min_chars`` to ``max_chars`` characters."""
    if not 0 <= min_chars <= max_chars or max_chars < 1 or min_chars > MAX_REPEAT:
        raise ValueError(f"text({max_chars}, {min_chars}): bad bounds")
    c = f"[{TEXT_CHARS}]"
    head = min(max_chars, MAX_REPEAT)
    pattern = f"{c}{{{min_chars},{head}}}"
    full, rest = divmod(max_chars - head, MAX_REPEAT)
    if full:
        pattern += f"(?:{c}{{1,{MAX_REPEAT}}}){{0,{full}}}"
    if rest:
        pattern += f"(?:{c}{{1,{rest}}})?"
    return {"type": "string", "pattern": f"^{pattern}$"}


def hhmm() -> dict[str, Any]:
    """A time of day, HH:MM (24 h)."""
    return {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}


def integer(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


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
