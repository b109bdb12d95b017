"""Where a model runs (:func:`torch_device`) and, on a CPU, how many threads the LLM uses: the
cores the hosts and the embedder leave idle.

The model runs beside the host actors and the embedder. Measured during a smollm2 town run on
this 2-core machine (``ps`` CPU time over the run's wall time): each host process about 4-7% of
a core, the embedder about 15% while memories are seeded and less after. So the LLM takes every
core but what they actually use, rounded, and at least one: on 2 cores beside 2 hosts that is 2
threads, where the rule it replaced (a whole core for each host and for the embedder) left one
core idle. A decode pass of smollm2 at 32 rows takes 231 ms on 2 threads and 370 ms on 1. A tiny
model stays on one thread whatever this says (``engines/hf.SMALL_MODEL_PARAMS``): its passes
are too short to split (1.7 ms a step on 1 thread, 12.5 ms on 2 beside busy hosts).
"""

from __future__ import annotations

import os

HOST_CORE_SHARE = 0.1  # a host process's use of a core during a smollm2 run (4-7% measured)
EMBEDDER_CORE_SHARE = 0.15  # the embedder's, at its busiest (seeding memories)


def torch_device(device: str | None = None) -> str:
    """The device a model runs on: ``device`` when given, else ``cuda`` where torch sees one,
    else ``cpu`` (the one rule of the engines and the embedder)."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def machine_cores() -> int:
    return os.cpu_count() or 2


def embedder_threads(cores: int | None = None) -> int:
    """The embedder's threads: one for every eight cores, at least one."""
    return max(1, (cores or machine_cores()) // 8)


def llm_threads(hosts: int = 0, cores: int | None = None) -> int:
    """The LLM's threads: the cores less what ``hosts`` host processes and the embedder use
    (:data:`HOST_CORE_SHARE`, :data:`EMBEDDER_CORE_SHARE` per embedder thread), rounded, at
    least one."""
    cores = cores or machine_cores()
    busy = hosts * HOST_CORE_SHARE + embedder_threads(cores) * EMBEDDER_CORE_SHARE
    return max(1, round(cores - busy))


def set_cpu_threads(threads: int | None = None) -> int:
    """Sets torch's intra-op threads (``threads``, or :func:`llm_threads` with no hosts);
    returns it."""
    import torch

    n = threads or llm_threads()
    torch.set_num_threads(n)
    return n
