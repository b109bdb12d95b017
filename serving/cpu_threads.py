"""How many threads torch uses on a CPU.

On a small machine the model runs beside the host actors and the embedder; torch's default (one
thread per core) then makes its threads spin against the other processes. Measured here (2 cores,
the tiny model, a busy machine): 12.5 ms a decode step with the default, 1.7 ms with 1 thread; a
batch of 12: 88 ms vs 4.3 ms. Half the cores each for the LLM and the embedder avoids that.
"""

from __future__ import annotations

import os


def default_cpu_threads() -> int:
    """Half of this machine's cores, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def set_cpu_threads(threads: int | None = None) -> int:
    """Sets torch's intra-op threads (``threads``, or :func:`default_cpu_threads`); returns it."""
    import torch

    n = threads or default_cpu_threads()
    torch.set_num_threads(n)
    return n
