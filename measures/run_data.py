"""What a measure reads from a run folder: the manifest, the scenario, the tables and the
checkpoints. Every problem names the file (or the step) and what is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from cluster.checkpoints import CheckpointError, checkpoint_steps, read_checkpoint
from cluster.outputs import TableReadError, read_run_table
from cluster.run_folder import RunFolderError, read_run_head
from scenarios.schema import Scenario


class MeasureError(Exception):
    """A run folder (or a request) that cannot be measured: names the file or step."""


@dataclass(frozen=True)
class RunData:
    """A run folder, read for measuring."""

    run_dir: Path
    manifest: dict[str, Any]
    scenario: Scenario
    steps: tuple[int, ...]  # the steps of its complete checkpoints

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.scenario.agents]

    def checkpoint(self, step: int) -> dict[str, Any]:
        try:
            return read_checkpoint(self.run_dir, step)
        except CheckpointError as exc:
            raise MeasureError(str(exc)) from None

    def table(self, name: str) -> pa.Table:
        """``<name>.parquet`` of a finished run, else its parts so far (a running or
        interrupted run)."""
        try:
            return read_run_table(self.run_dir, name)
        except TableReadError as exc:
            raise MeasureError(str(exc)) from None


def read_run(run_dir: str | Path) -> RunData:
    """The run folder ``run_dir``; refuses one of another format version, or without a
    checkpoint."""
    run_dir = Path(run_dir)
    try:
        manifest, scenario = read_run_head(run_dir)
    except RunFolderError as exc:
        raise MeasureError(str(exc)) from None
    steps = tuple(checkpoint_steps(run_dir))
    if not steps:
        raise MeasureError(f"{run_dir}: no checkpoint to measure (checkpoints/ is empty)")
    return RunData(run_dir, manifest, scenario, steps)


def measured_steps(run: RunData, at: Sequence[int] | None) -> list[int]:
    """The checkpoints to measure: ``at``, or the first and the last."""
    if not at:
        return sorted({run.steps[0], run.steps[-1]})
    missing = [s for s in at if s not in run.steps]
    if missing:
        shown = ", ".join(str(s) for s in run.steps[:12]) + (" ..." if len(run.steps) > 12 else "")
        raise MeasureError(
            f"{run.run_dir}: no checkpoint at step {', '.join(str(s) for s in missing)} "
            f"(checkpoints: {shown})"
        )
    return sorted(set(at))
