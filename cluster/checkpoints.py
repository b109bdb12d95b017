"""Checkpoints: msgpack snapshots of a run (clock, world, every agent, every memory record).

A checkpoint is a folder ``checkpoints/<step>/`` holding ``state.msgpack`` and
``memories.parquet``. It is written into a temporary folder and renamed into place, so a
checkpoint either exists whole or not at all. Nothing is pickled: msgpack of plain data only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgpack

FORMAT = "simulacra-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be read (names the file and what is wrong)."""


def checkpoint_dir(run_dir: str | os.PathLike[str], step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{step:09d}"


def write_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    state: dict[str, Any],
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Writes ``state`` (plain data) as checkpoint ``step``; returns its folder.

    Args:
        extra_files: file name -> a callable that writes that file given its path.
    """
    final = checkpoint_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        payload = {"format": FORMAT, "version": VERSION, "step": step, "state": state}
        for name, write in (extra_files or {}).items():
            write(tmp / name)
        with open(tmp / "state.msgpack", "wb") as f:  # last: the folder's mark of completion
            f.write(msgpack.packb(payload, use_bin_type=True))
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise
    return final


def checkpoint_steps(run_dir: str | os.PathLike[str]) -> list[int]:
    """The steps of the run's complete checkpoints, in order."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(
        int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "state.msgpack").is_file()
    )


def read_checkpoint(run_dir: str | os.PathLike[str], step: int | None = None) -> dict[str, Any]:
    """The state of checkpoint ``step`` (the last one when None), with its ``step``."""
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise CheckpointError(f"{run_dir}: no checkpoint to resume from")
    step = steps[-1] if step is None else step
    path = checkpoint_dir(run_dir, step) / "state.msgpack"
    try:
        payload = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
    except (OSError, ValueError, msgpack.UnpackException) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a simulacra checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')}, this simulacra reads {VERSION}"
        )
    return {"step": int(payload["step"]), **payload["state"]}


def prune_after(run_dir: str | os.PathLike[str], step: int) -> list[int]:
    """Deletes checkpoints after ``step`` (they belong to a discarded future) and what a kill
    left of a checkpoint being written (its temporary folder); returns the steps deleted."""
    gone = [s for s in checkpoint_steps(run_dir) if s > step]
    for s in gone:
        shutil.rmtree(checkpoint_dir(run_dir, s))
    root = Path(run_dir) / "checkpoints"
    if root.is_dir():
        for unfinished in root.glob(".*"):
            shutil.rmtree(unfinished, ignore_errors=True)
    return gone
