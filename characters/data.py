"""The released Character-LLM data layouts (fnlp/character-llm-data), read and written.

- generated (``generated/*.json``): a JSON list of scenes
  ``{setting, dialogue: [{role, action, content}], location, background, source}``;
- prompted (``prompted/*.jsonl``): one ``{prompt, output, source}`` per line (a training example).

Writers are atomic (a temporary file, then a rename); readers name the file and the record of
any problem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypedDict

from serving.files import write_text_atomic


class Turn(TypedDict):
    role: str
    action: str  # "speaking" | "thinking"
    content: str


class Scene(TypedDict):
    setting: str
    dialogue: list[Turn]
    location: str
    background: str
    source: str


class Prompted(TypedDict):
    prompt: str
    output: str
    source: str


class DataError(ValueError):
    """A data file in neither released layout, or a record that breaks its layout."""


SCENE_KEYS = ("setting", "dialogue", "location", "background", "source")
TURN_KEYS = ("role", "action", "content")
PROMPTED_KEYS = ("prompt", "output", "source")


def write_scenes(path: str | os.PathLike[str], scenes: list[Scene]) -> Path:
    return write_text_atomic(path, json.dumps(scenes, ensure_ascii=False, indent=1))


def write_prompted(path: str | os.PathLike[str], records: list[Prompted]) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def check_scene(scene: Any, where: str) -> Scene:
    if not isinstance(scene, dict):
        raise DataError(f"{where}: a scene must be an object, not {type(scene).__name__}")
    missing = [k for k in SCENE_KEYS if k not in scene]
    if missing:
        raise DataError(f"{where}: a scene needs {', '.join(missing)}")
    if not isinstance(scene["dialogue"], list):
        raise DataError(f"{where}.dialogue: must be a list of turns")
    for i, turn in enumerate(scene["dialogue"]):
        if not isinstance(turn, dict) or any(k not in turn for k in TURN_KEYS):
            raise DataError(f"{where}.dialogue[{i}]: a turn needs role, action and content")
    return scene  # type: ignore[return-value]


def check_prompted(record: Any, where: str) -> Prompted:
    if not isinstance(record, dict) or any(
        not isinstance(record.get(k), str) for k in ("prompt", "output")
    ):
        raise DataError(f"{where}: a prompted record needs string 'prompt' and 'output'")
    return {
        "prompt": record["prompt"],
        "output": record["output"],
        "source": str(record.get("source", "")),
    }


def read_scenes(path: str | os.PathLike[str]) -> list[Scene]:
    """A ``generated/*.json`` file's scenes."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: the generated layout is a JSON list of scenes")
    return [check_scene(s, f"{path}[{i}]") for i, s in enumerate(data)]


def read_prompted(path: str | os.PathLike[str]) -> list[Prompted]:
    """A ``prompted/*.jsonl`` file's records."""
    path = Path(path)
    records: list[Prompted] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{n}: not a JSON line ({exc})") from None
        records.append(check_prompted(record, f"{path}:{n}"))
    if not records:
        raise DataError(f"{path}: no records")
    return records
