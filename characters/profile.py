"""A character's profile: `# <Full Name>` on line 1, then paragraphs separated by blank lines."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ProfileError(ValueError):
    """A profile that cannot be used (names the file and what is wrong)."""


@dataclass(frozen=True)
class Profile:
    """The character's name and its profile's paragraphs (each paragraph is one chunk)."""

    name: str
    paragraphs: tuple[str, ...]
    source: str = ""

    @property
    def first_paragraph(self) -> str:
        return self.paragraphs[0]


def parse_profile(text: str, source: str = "<text>") -> Profile:
    """Reads a profile's text; raises :class:`ProfileError` for an empty or headerless one."""
    lines = text.strip().splitlines()
    if not lines:
        raise ProfileError(f"{source}: the profile is empty")
    header = lines[0].strip()
    if not header.startswith("# ") or not header[2:].strip():
        raise ProfileError(
            f"{source}: line 1 must be the character's name as '# <Full Name>', not {header!r}"
        )
    body = "\n".join(lines[1:])
    paragraphs = tuple(" ".join(p.split()) for p in body.split("\n\n") if p.strip())
    if not paragraphs:
        raise ProfileError(f"{source}: the profile has a name but no paragraphs")
    return Profile(header[2:].strip(), paragraphs, source)


def load_profile(path: str | os.PathLike[str]) -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc.strerror or exc})") from None
    return parse_profile(text, str(path))
