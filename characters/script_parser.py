"""Parsing a generated script into a scene (spec section 1, step 4).

A script is a ``Background:`` paragraph, then blocks headed ``<Name> (speaking)`` or
``<Name> (thinking)``. Read line by line:

- a header line starts a turn; ``Name (speaking): text`` (content on the header line, after an
  optional colon) is accepted, and so are markdown decorations (``**Name** (speaking)``);
- ``Background:`` starts the background;
- any other text continues the current turn or the background (a turn of several paragraphs
  keeps them, joined by a newline); text before the first header or background is ignored;
- other stage directions, ``(...)`` and ``[...]``, are stripped from the contents;
- only the target character may think: a thinking turn of anyone else is dropped (the paper's
  rule; we neither turn it into speech nor keep it, as it would teach the character to read
  minds); a role that names the target by part of its name (``Beethoven`` for ``Ludwig van
  Beethoven``) is written as the target's full name;
- a scene with fewer than 3 turns or no background is dropped, with that reason.
"""

from __future__ import annotations

import re

from characters.data import Scene, Turn

MIN_TURNS = 3
TOO_FEW_TURNS = "too few turns"
NO_BACKGROUND = "no background"

_HEADER = re.compile(
    r"^\s*[#>*_\s]*(?P<role>[^()\[\]\n:*#]{1,80}?)[*_\s]*\(\s*(?P<action>speaking|thinking)\s*\)"
    r"[*_\s]*:?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_BACKGROUND = re.compile(r"^\s*[#*_\s]*background[*_\s]*:[*_\s]*(?P<rest>.*)$", re.IGNORECASE)
_DIRECTION = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")


def _clean(text: str) -> str:
    """The text without stage directions, each line's spaces collapsed, empty lines dropped."""
    lines = (" ".join(_DIRECTION.sub(" ", line).split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _is_target(role: str, name: str) -> bool:
    words = role.casefold().split()
    return bool(words) and set(words) <= set(name.casefold().split())


def parse_script(
    text: str,
    name: str,
    *,
    setting: str = "",
    location: str = "",
    source: str = "",
    require_background: bool = True,
) -> tuple[Scene | None, str | None]:
    """``(scene, None)``, or ``(None, reason)`` for a script that is dropped."""
    background: list[str] = []
    turns: list[tuple[str, str, list[str]]] = []
    current: list[str] | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        header = _HEADER.match(line)
        if header:
            role = " ".join(header["role"].split())
            if _is_target(role, name):
                role = name
            current = [header["rest"]]
            turns.append((role, header["action"].lower(), current))
            continue
        bg = _BACKGROUND.match(line)
        if bg and not turns:
            current = background
            background.append(bg["rest"])
            continue
        if current is not None:
            current.append(line)
    dialogue: list[Turn] = []
    for role, action, lines in turns:
        content = _clean("\n".join(lines))
        if not content or (action == "thinking" and role != name):
            continue
        dialogue.append({"role": role, "action": action, "content": content})
    background_text = " ".join(_clean("\n".join(background)).split())
    if len(dialogue) < MIN_TURNS:
        return None, TOO_FEW_TURNS
    if require_background and not background_text:
        return None, NO_BACKGROUND
    scene: Scene = {
        "setting": setting,
        "dialogue": dialogue,
        "location": location,
        "background": background_text,
        "source": source,
    }
    return scene, None
