"""Memory figures read from Linux's ``/proc`` (hosts' usage, packing, scaling studies)."""

from __future__ import annotations


def proc_mb(path: str, key: str, default: float = 0.0) -> float:
    """The ``key:  N kB`` line of a ``/proc`` file (``/proc/self/status``'s ``VmRSS``,
    ``/proc/<pid>/status``'s ``VmHWM``, ``/proc/meminfo``'s ``MemAvailable``) in MB; ``default``
    where the file or the line is not there."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return default
