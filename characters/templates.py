"""The pipeline's prompt templates: one file per step in ``prompts/``, with named fields.

A file ``prompts/<name>.txt`` has a ``### system`` and a ``### user`` section (fields ``$name``,
``string.Template``). The generator's system message is the source block
(``prompts/blocks/source.txt``: the character and one profile paragraph), the same for scene
extraction, experience completion and protective experiences of that paragraph, so their
requests share it as a prefix; what changes (the scene) and the task come in the user message.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path
from typing import Any

from serving.prompt_files import read_sections
from serving.types import ChatMessage

PROMPTS_DIR = Path(__file__).parent / "prompts"


@cache
def _sections(name: str) -> tuple[string.Template, string.Template]:
    return read_sections(PROMPTS_DIR / f"{name}.txt")


def fields_of(name: str) -> set[str]:
    """The named fields of template ``name``."""
    found: set[str] = set()
    for t in _sections(name):
        found.update(t.get_identifiers())
    return found


def render(template: str, **fields: Any) -> tuple[ChatMessage, ChatMessage]:
    """The system and user messages of ``template``; every field, and only those."""
    expected = fields_of(template)
    if set(fields) != expected:
        raise KeyError(
            f"prompt {template!r}: missing {sorted(expected - set(fields))}, "
            f"unknown {sorted(set(fields) - expected)}"
        )
    values = {k: str(v) for k, v in fields.items()}
    system, user = _sections(template)
    return (
        ChatMessage("system", system.substitute(values).strip()),
        ChatMessage("user", user.substitute(values).strip()),
    )


@cache
def _source() -> string.Template:
    return string.Template((PROMPTS_DIR / "blocks" / "source.txt").read_text(encoding="utf-8"))


def source_block(name: str, chunk: str) -> str:
    """The generator's system message for one profile paragraph."""
    return _source().substitute(name=name, chunk=chunk).strip()
