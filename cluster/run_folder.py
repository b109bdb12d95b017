"""A run folder's integrity: the table parts each checkpoint vouches for, checked before a resume.

Every checkpoint lists the table parts written up to it (``parts``: file name -> rows). Before a
run resumes, every part its checkpoint lists must be there and readable with that many rows, so
a deleted or truncated part is refused with the file named before any step runs, instead of
being noticed (or not) after the new steps ran. Parts after the checkpoint belong to a discarded
future and are deleted on resume (``RunTables.discard_after``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cluster.outputs import part_step
from scenarios.schema import Scenario

RUN_FORMAT = "simulacra-run"
RUN_FORMAT_VERSION = 1
"""A run folder's format, in its manifest (``format``, ``format_version``; manifests written
before the version was recorded are version 1)."""


class RunFolderError(Exception):
    """A run folder that is damaged (names the file and what is wrong)."""


def read_run_head(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], Scenario]:
    """A run folder's manifest and scenario, for reading the run (measures, the viewer);
    refuses a folder that is not a run folder, or one of another format version, naming the
    file."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no manifest.json)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise RunFolderError(f"{path}: not a simulacra run manifest (format {RUN_FORMAT!r})")
    version = manifest.get("format_version", 1)
    if version != RUN_FORMAT_VERSION:
        raise RunFolderError(
            f"{path}: run folder format version {version!r}; this simulacra reads version "
            f"{RUN_FORMAT_VERSION}"
        )
    try:
        scenario = Scenario.model_validate(manifest["scenario"])
    except (KeyError, ValueError) as exc:
        raise RunFolderError(f"{path}: scenario: {str(exc).splitlines()[0]}") from None
    return manifest, scenario


def list_parts(run_dir: str | os.PathLike[str], up_to_step: int) -> dict[str, int]:
    """The table parts of steps up to ``up_to_step`` (name -> rows), read from their footers."""
    parts_dir = Path(run_dir) / "parts"
    if not parts_dir.is_dir():
        return {}
    found = {}
    for part in sorted(parts_dir.glob("*.parquet")):
        if part_step(part) <= up_to_step:
            found[part.name] = pq.read_metadata(part).num_rows
    return found


def check_parts(run_dir: str | os.PathLike[str], parts: dict[str, int]) -> None:
    """Raises :class:`RunFolderError` naming the first listed part that is missing, unreadable
    or holds another number of rows than its checkpoint recorded."""
    parts_dir = Path(run_dir) / "parts"
    for name, rows in sorted(parts.items()):
        path = parts_dir / name
        if not path.is_file():
            raise RunFolderError(f"{path}: missing (its checkpoint lists it with {rows} rows)")
        try:
            found = pq.read_metadata(path).num_rows
            pq.read_table(path)  # the pages themselves, not only the footer
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise RunFolderError(f"{path}: unreadable ({exc})") from None
        if found != rows:
            raise RunFolderError(f"{path}: {found} rows, its checkpoint lists {rows}")
