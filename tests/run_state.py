"""What tests compare between two runs: the last checkpoint's state, without what differs for
reasons that are not the run's behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster.checkpoints import read_checkpoint


def final_state(run_dir: Path, parts: bool = True) -> dict[str, Any]:
    """The last checkpoint's state without the memory vectors (floats recomputed by the
    embedder) and, with ``parts=False``, without the table parts it lists (cut at other steps
    by a run that stopped and resumed)."""
    state = read_checkpoint(run_dir)
    for memory in state["memories"].values():
        memory.pop("vectors")
    if not parts:
        state.pop("parts")
    return state
