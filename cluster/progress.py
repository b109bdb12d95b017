"""The run's progress bar (game time, steps/s, model calls/s and tokens/s, on stderr) and the
line that sums a run up."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scenarios.schema import Scenario

if TYPE_CHECKING:
    from cluster.simulation import Simulation


class Progress:
    """A tqdm bar over the run's steps; silent when disabled."""

    def __init__(self, scenario: Scenario, until_step: int, enabled: bool = True) -> None:
        self.scenario = scenario
        self.enabled = enabled
        self._bar: Any = None
        self._started = time.perf_counter()
        self._until = until_step
        self._base: int | None = None

    def update(self, sim: Simulation) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._base = sim.step_no - 1
            self._started = time.perf_counter() - sum(sim.stats.per_step_s)  # from step one
            self._bar = tqdm(
                total=self._until,
                initial=self._base,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        stats = sim.stats
        failed = f" | {stats.llm_failed_calls:,} failed" if stats.llm_failed_calls else ""
        self._bar.set_postfix_str(
            f"game {sim.now:%a %H:%M} | {stats.steps / elapsed:.2f} steps/s | "
            f"{stats.llm_calls / elapsed:.1f} calls/s | {stats.tokens / elapsed:.0f} tok/s"
            f"{failed}",
            refresh=False,
        )
        self._bar.update(sim.step_no - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def summary_line(stats: Mapping[str, Any]) -> str:
    """A run's counts in words, from its stats (``RunStats.as_dict``, a manifest's ``stats``
    entry): ``"8 steps, 343 model calls, 320 failed, 180 answers fell back"``."""
    return (
        f"{stats.get('steps', 0):,} steps, {stats.get('llm_calls', 0):,} model calls, "
        f"{stats.get('llm_failed_calls', 0):,} failed, "
        f"{stats.get('fallbacks', 0):,} answers fell back"
    )
