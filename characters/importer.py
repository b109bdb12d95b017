"""``simulacra character import``: the released Character-LLM data files into a data folder.

The input is a ``prompted/*.jsonl`` file, a ``generated/*.json`` file, or a folder holding
``prompted/`` and/or ``generated/`` subfolders (or such files directly). Each file's layout is
told by its content, not its name: a JSON list of scenes is the generated layout, JSON lines of
``{prompt, output}`` the prompted one; anything else is a :class:`DataError` naming the file.

The data folder written (what ``train`` reads):

- ``prompted.jsonl``: the prompted records as they are (their own prompts), then every scene
  turned into a training example with :func:`characters.examples.to_prompted`;
- ``generated.json``: the scenes, when any were given;
- ``import.json``: ``{sources, counts, character}``.

Scenes need the character's name (for the meta-prompt): ``name`` when given, else parsed from
the released file names (:func:`name_from_filename`). Everything is read and converted in memory
first; the files are then written atomically, ``import.json`` last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from characters.data import (
    DataError,
    Prompted,
    Scene,
    check_prompted,
    check_scene,
    write_prompted,
    write_scenes,
)
from characters.examples import to_prompted
from serving.files import write_text_atomic

PROMPTED_FILE = "prompted.jsonl"
GENERATED_FILE = "generated.json"
IMPORT_FILE = "import.json"

# Prefixes of the released file names, longest first: ``wiki_Beethoven.json`` (generated) and
# ``prompted_agent_dialogue_Beethoven.jsonl`` (prompted) both name "Beethoven".
NAME_PREFIXES = ("prompted_agent_dialogue_", "generated_agent_dialogue_", "prompted_", "wiki_")


def name_from_filename(path: str | os.PathLike[str]) -> str | None:
    """The character a released file is about, or ``None`` when its name does not say.

    The file's stem with a known prefix removed (``wiki_``, ``prompted_agent_dialogue_``,
    ``generated_agent_dialogue_``, ``prompted_``); underscores left in the rest become spaces
    (``wiki_Julius_Caesar.json`` names "Julius Caesar"). A stem with none of these prefixes
    names nobody.
    """
    stem = Path(path).name.split(".", 1)[0]
    for prefix in NAME_PREFIXES:
        if stem.startswith(prefix) and len(stem) > len(prefix):
            return stem[len(prefix) :].replace("_", " ").strip() or None
    return None


def detect_layout(path: Path) -> tuple[str, list[Any]]:
    """``("generated", scenes)`` or ``("prompted", records)`` by the file's content."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, list):
        return "generated", [check_scene(s, f"{path}[{i}]") for i, s in enumerate(whole)]
    records: list[Prompted] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not {"prompt", "output"} <= record.keys():
            raise DataError(
                f"{path}: in neither released layout (line {n} is not a JSON object with "
                "'prompt' and 'output'; the generated layout is a JSON list of scenes)"
            )
        records.append(check_prompted(record, f"{path}:{n}"))
    if not records:
        raise DataError(f"{path}: in neither released layout (no records)")
    return "prompted", records


def find_files(path: Path) -> list[Path]:
    """The data files under ``path``: itself, or the ``*.json``/``*.jsonl`` files of the folder,
    of its ``prompted/`` and of its ``generated/`` subfolders, sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files: list[Path] = []
    for folder in (path, path / "prompted", path / "generated"):
        if folder.is_dir():
            files += sorted(
                p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".jsonl")
            )
    if not files:
        raise DataError(
            f"{path}: no .json or .jsonl files in it or in its prompted/ and generated/ folders"
        )
    return files


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / IMPORT_FILE).is_file():
        raise FileExistsError(
            f"{out_dir}: not empty and not a previous import (no {IMPORT_FILE}); "
            "choose an empty or new folder"
        )


def import_data(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str], name: str | None = None
) -> dict[str, Any]:
    """Reads released data files and writes a data folder for ``train``.

    Args:
        path: a prompted ``.jsonl`` file, a generated ``.json`` file, or a folder of them.
        out_dir: the data folder to write: new, empty, or a previous import (replaced).
        name: the character; when unset, parsed from the file names (needed for scenes).

    Returns:
        What ``import.json`` holds: ``{sources, counts, character}``.

    Raises:
        DataError: a file in neither layout, or scenes whose character cannot be named.
        FileExistsError: ``out_dir`` is not empty and not a previous import.
    """
    src, out = Path(path).expanduser(), Path(out_dir).expanduser()
    _check_out_dir(out)
    prompted: list[Prompted] = []
    scenes: list[tuple[Path, Scene]] = []
    sources: list[dict[str, Any]] = []
    for file in find_files(src):
        layout, items = detect_layout(file)
        sources.append({"path": str(file), "layout": layout, "records": len(items)})
        if layout == "prompted":
            prompted += items
        else:
            scenes += [(file, s) for s in items]

    character = name
    if character is None:
        names = {n for f in (s["path"] for s in sources) if (n := name_from_filename(f))}
        if len(names) > 1:
            raise DataError(
                f"{src}: the files name several characters ({', '.join(sorted(names))}); "
                "import one character at a time or give --name"
            )
        character = names.pop() if names else None
    if scenes and character is None:
        raise DataError(
            f"{scenes[0][0]}: cannot tell the character from the file name "
            "(expected e.g. wiki_<Name>.json); give --name"
        )
    converted = [to_prompted(character, s) for _, s in scenes] if character else []
    records = prompted + converted
    summary = {
        "sources": sources,
        "counts": {
            "prompted": len(prompted),
            "scenes": len(scenes),
            "records": len(records),
        },
        "character": character,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_prompted(out / PROMPTED_FILE, records)
    if scenes:
        write_scenes(out / GENERATED_FILE, [s for _, s in scenes])
    else:
        (out / GENERATED_FILE).unlink(missing_ok=True)  # a previous import's
    write_text_atomic(out / IMPORT_FILE, json.dumps(summary, ensure_ascii=False, indent=1))
    return summary
