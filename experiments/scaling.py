"""Scaling studies: what a run of a town of a given size cost, measured around the run
(wall time, agent-steps/s, model calls and tokens per second, the engine's executed batch sizes
and busy share, peak memory of the hosts and of the services), into ``scaling.parquet`` and a
figure of cost against agents."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from actors.proc_memory import proc_mb
from cluster.outputs import write_table
from experiments.grid import RunSpec

if TYPE_CHECKING:
    from cluster.simulation import Simulation

SCALING = "scaling.parquet"
SERVICE_MARK = "ServeReplica"
"""In the command line (process title) of every Ray Serve replica: the services' processes."""


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (``VmHWM``) in MB; 0.0 where it cannot be read."""
    return proc_mb(f"/proc/{pid}/status", "VmHWM")


def service_pids() -> list[int]:
    """The Serve replicas on this machine (the LLM and embedding services)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or ())
        if SERVICE_MARK in cmdline:
            found.append(int(proc.info["pid"]))
    return found


class ScalingProbe:
    """Counters of the LLM service read before a run and after its last step."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self._busy0 = 0.0
        self._batches0 = 0
        self._t0 = 0.0

    async def start(self) -> None:
        from serving.clients import ServeLLM

        llm = ServeLLM()
        self._busy0 = await llm.busy_seconds()
        self._batches0 = len(await llm.batch_sizes())
        self._t0 = time.perf_counter()

    async def finish(self, sim: Simulation) -> None:
        from serving.clients import ServeLLM

        llm = ServeLLM()
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        busy = await llm.busy_seconds() - self._busy0
        batches = (await llm.batch_sizes())[self._batches0 :]
        usage = await asyncio.gather(*(h.host.usage() for h in sim.hosts))
        stats = sim.stats
        agents = len(sim.scenario.agents)
        wall = max(stats.wall_s, 1e-9)
        host_peak = sum(u.peak_rss_mb for u in usage)
        host_base = sum(u.baseline_rss_mb for u in usage)
        services = sum(peak_rss_mb(pid) for pid in service_pids())
        self.result = {
            "agents": agents,
            "hosts": len(usage),
            "steps": stats.steps,
            "wall_s": round(stats.wall_s, 3),
            "wall_s_per_step": round(stats.wall_s / max(1, stats.steps), 4),
            "agent_steps_per_s": round(stats.agent_steps / wall, 3),
            "calls_per_s": round(stats.llm_calls / wall, 3),
            "tokens_per_s": round(stats.tokens / wall, 2),
            "model_calls": stats.llm_calls,
            "mean_batch_size": round(sum(batches) / len(batches), 3) if batches else 0.0,
            "max_batch_size": max(batches, default=0),
            "engine_busy_share": round(min(1.0, busy / elapsed), 4),
            "host_peak_mb": round(host_peak, 1),
            "host_mb_per_agent": round(host_peak / agents, 3),
            "host_marginal_mb_per_agent": round((host_peak - host_base) / agents, 3),
            "service_mb": round(services, 1),
            "service_mb_per_agent": round(services / agents, 3),
        }


def write_scaling(folder: Path, runs: Sequence[RunSpec]) -> Path | None:
    """``scaling.parquet`` (one row per run, with its seed) and ``figures/scaling.png``."""
    rows = []
    for run in runs:
        path = folder / "runs" / run.run_id / "scaling.json"
        if path.is_file():
            rows.append({"run_id": run.run_id, "seed": run.seed, **json.loads(path.read_text())})
    if not rows:
        return None
    from experiments.figures import scaling_figure

    out = write_table(pa.Table.from_pylist(rows), folder / SCALING)
    scaling_figure(rows, folder / "figures" / "scaling.png")
    return out
