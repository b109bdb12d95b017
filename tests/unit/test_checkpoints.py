"""Checkpoints: a kill while one is being written leaves nothing a resume would start from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cluster.checkpoints import (
    CheckpointError,
    checkpoint_dir,
    checkpoint_steps,
    prune_after,
    read_checkpoint,
    write_checkpoint,
)

KILLED_WHILE_WRITING = """
import os, signal, sys
from cluster.checkpoints import write_checkpoint

def die(path):
    path.write_bytes(b"PAR1 half a table")
    os.kill(os.getpid(), signal.SIGKILL)

write_checkpoint(sys.argv[1], 8, {"n": 8}, extra_files={"memories.parquet": die})
"""


def test_a_checkpoint_killed_while_written_is_never_resumed_from(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, 4, {"n": 4}, extra_files={"memories.parquet": _table})
    done = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(tmp_path)])
    assert done.returncode == -9  # killed mid-write, as by a SIGKILL of the driver
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert any(name.startswith(".") for name in leftovers)  # the half-written folder
    assert checkpoint_steps(tmp_path) == [4]
    assert read_checkpoint(tmp_path)["n"] == 4
    prune_after(tmp_path, 4)  # what a resume does first
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [
        checkpoint_dir(tmp_path, 4).name
    ]


def test_a_checkpoint_folder_without_its_state_is_not_a_checkpoint(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, 4, {"n": 4})
    checkpoint_dir(tmp_path, 8).mkdir()
    (checkpoint_dir(tmp_path, 8) / "memories.parquet").write_bytes(b"PAR1")
    assert checkpoint_steps(tmp_path) == [4]


def test_a_damaged_checkpoint_state_is_named(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path, 4, {"n": 4})
    (folder / "state.msgpack").write_bytes(b"\xc1 not msgpack")
    with pytest.raises(CheckpointError, match=r"000000004/state.msgpack: unreadable"):
        read_checkpoint(tmp_path)


def _table(path: Path) -> None:
    path.write_bytes(b"PAR1 a whole table")
