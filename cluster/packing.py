"""How many agents each host actor carries, and which ones.

Measured costs (../shared/FACTS.md, 2 cores): an idle Ray actor is a process of about 157 MB
RSS and takes 0.7-1 s to start; 200 agents in 2 asyncio actors cost 0.3 GiB and step at 26.6k
agent-steps/s of bookkeeping. An agent's own cost is its memory (a few MB, see
``bench/bench_town.py``). The model calls, not the hosts, are the bottleneck, so more processes
only help up to about one per core; beyond that they cost memory and start-up time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from actors.proc_memory import proc_mb

ACTOR_MB = 157.0
"""Resident memory of one idle host actor (FACTS.md)."""
AGENT_MB = 8.0
"""A generous estimate of one agent's resident memory in a host (bench_town measures it)."""
MAX_AGENTS_PER_HOST = 250
"""Above this, one event loop's bookkeeping starts to show in a step's wall time."""


def auto_agents_per_host(
    n_agents: int, cpus: int | None = None, memory_mb: float | None = None
) -> int:
    """A packing that fits the machine: about one host per core, fewer when memory is short.

    Args:
        n_agents: agents in the run.
        cpus: cores for hosts (this machine's when None).
        memory_mb: memory the hosts may use (half of this machine's when None).
    """
    if n_agents < 1:
        raise ValueError("a run needs at least one agent")
    cpus = cpus or os.cpu_count() or 1
    if memory_mb is None:
        memory_mb = _available_mb() / 2
    hosts = max(1, min(cpus, n_agents, math.ceil(n_agents / 10)))
    hosts = max(hosts, math.ceil(n_agents / MAX_AGENTS_PER_HOST))
    while hosts > 1 and hosts * ACTOR_MB + n_agents * AGENT_MB > memory_mb:
        hosts -= 1
    return math.ceil(n_agents / hosts)


def pack(names: Sequence[str], per_host: int) -> list[list[str]]:
    """Agents in order, ``per_host`` to a host (the last host may carry fewer)."""
    if per_host < 1:
        raise ValueError(f"agents per host must be >= 1, not {per_host}")
    return [list(names[i : i + per_host]) for i in range(0, len(names), per_host)]


def _available_mb() -> float:
    return proc_mb("/proc/meminfo", "MemAvailable", default=4096.0)
