"""A run in progress, as the viewer sees it: its driver pushes the newest step after every step.

The run's tables reach the folder only at checkpoints (``cluster.outputs.RunTables``), so the
live page reads the steps since the last checkpoint from here: the driver's thread calls
:meth:`LiveFeed.push` after each step, the server's threads read it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any


class LiveFeed:
    """The events not yet in the run folder, and the newest step; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._events: tuple[dict[str, Any], ...] = ()
        self._last = -1
        self._ended = False
        self._version = 0

    def push(self, last_step: int, buffered_events: Sequence[dict[str, Any]]) -> None:
        """After a step: the newest step and the event rows buffered since the last flush."""
        with self._lock:
            self._events = tuple(buffered_events)
            self._last = max(self._last, last_step)
            self._version += 1
            self._lock.notify_all()

    def end(self) -> None:
        """The run is over (finished, interrupted or failed)."""
        with self._lock:
            self._ended = True
            self._version += 1
            self._lock.notify_all()

    def snapshot(self) -> tuple[int, int, bool, tuple[dict[str, Any], ...]]:
        """(version, newest step, ended, buffered events)."""
        with self._lock:
            return self._version, self._last, self._ended, self._events

    def wait(self, version: int, timeout: float) -> int:
        """Waits until the version is past ``version`` (or ``timeout`` seconds); the version."""
        with self._lock:
            self._lock.wait_for(lambda: self._version != version, timeout)
            return self._version
