"""Prompt template files: a ``### system`` and a ``### user`` section, ``string.Template`` each.

One reader for the agents' prompts (``actors/mind/prompts/``) and the characters' pipeline
(``characters/prompts/``).
"""

from __future__ import annotations

import string
from pathlib import Path


def read_sections(path: Path) -> tuple[string.Template, string.Template]:
    """The system and user templates of the file at ``path``.

    Raises:
        ValueError: the file does not have exactly those two sections (naming the file).
    """
    parts: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
    if set(parts) != {"system", "user"}:
        raise ValueError(f"{path}: needs exactly a '### system' and a '### user' section")
    return string.Template("\n".join(parts["system"])), string.Template("\n".join(parts["user"]))
