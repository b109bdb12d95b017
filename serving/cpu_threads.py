"""How many threads torch uses on a CPU: the LLM takes the cores the hosts and the embedder leave.

On a small machine the model runs beside the host actors and the embedder; torch's default (one
thread per core) then makes its threads spin against the other processes. Measured here (2 cores,
the tiny model, a busy machine): 12.5 ms a decode step with the default, 1.7 ms with 1 thread; a
batch of 12: 88 ms vs 4.3 ms. So each process gets its own cores: the embedder one for every
eight cores (at least one; it embeds short texts in bursts), each host process one (its agents'
Python and the embedded Qdrant, busy while a step's answers come back), and the LLM the rest, at
least one. With SmolLM2-135M alone on this 2-core machine (no hosts), a decode pass of 32 rows
takes 231 ms on 2 threads and 370 ms on 1, a pass of 1 row 52 ms on either: more threads pay off
only when the cores are free.
"""

from __future__ import annotations

import os


def machine_cores() -> int:
    return os.cpu_count() or 2


def embedder_threads(cores: int | None = None) -> int:
    """The embedder's threads: one for every eight cores, at least one."""
    return max(1, (cores or machine_cores()) // 8)


def llm_threads(hosts: int = 0, cores: int | None = None) -> int:
    """The LLM's threads: the cores left by ``hosts`` host processes and the embedder, at least
    one."""
    cores = cores or machine_cores()
    return max(1, cores - hosts - embedder_threads(cores))


def set_cpu_threads(threads: int | None = None) -> int:
    """Sets torch's intra-op threads (``threads``, or :func:`llm_threads` with no hosts);
    returns it."""
    import torch

    n = threads or llm_threads()
    torch.set_num_threads(n)
    return n
