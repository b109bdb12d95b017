"""One progress display for a whole experiment: a bar over every run's steps (on stderr)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from experiments.grid import RunSpec

if TYPE_CHECKING:
    from cluster.simulation import Simulation
    from experiments.runner import Experiment


class ExperimentProgress:
    """Steps done over all runs, runs finished, and the model's calls/s across them."""

    def __init__(self, experiment: Experiment, runs: Sequence[RunSpec]) -> None:
        from tqdm import tqdm

        self.total_runs = len(experiment.runs)
        self.finished = self.total_runs - len(runs)
        self._done: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self._started = time.perf_counter()
        self._bar: Any = tqdm(
            total=sum(r.steps for r in runs),
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            disable=None,  # off where stderr is not a terminal
        )
        self._postfix()

    def begin(self, run: RunSpec, from_step: int) -> None:
        self._done[run.run_id] = from_step
        self._bar.update(from_step)

    def step(self, run: RunSpec, sim: Simulation) -> None:
        before = self._done.get(run.run_id, 0)
        self._done[run.run_id] = sim.step_no
        self._calls[run.run_id] = sim.stats.llm_calls
        self._bar.update(max(0, sim.step_no - before))
        self._postfix()

    def finish(self, run: RunSpec) -> None:
        self.finished += 1
        self.note(f"{run.run_id}: finished and measured ({self.finished}/{self.total_runs})")
        self._postfix()

    def note(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)

    def _postfix(self) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        running = len(self._done)
        self._bar.set_postfix_str(
            f"runs {self.finished}/{self.total_runs} done, {running} started | "
            f"{sum(self._calls.values()) / elapsed:.1f} calls/s",
            refresh=False,
        )

    def close(self) -> None:
        self._bar.close()
