"""Ctrl-C in two stages, for the commands that drive runs: the first asks every run to stop after
its step (with a checkpoint of it), the second stops at once."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def two_stage_sigint(
    stopping: Callable[[], bool],
    stop_after_step: Callable[[], None],
    stop_now: Callable[[], Any],
    message: str,
) -> Iterator[None]:
    """While inside: SIGINT calls ``stop_after_step`` (and prints ``message``) unless
    ``stopping()`` already says so, in which case it calls ``stop_now``. Outside the main
    thread (where signals cannot be handled) it does nothing; the previous handler is put back
    after."""

    def interrupt(signum: int, frame: object) -> None:
        if stopping():
            stop_now()
            return
        stop_after_step()
        print(f"\n{message} (Ctrl-C again to stop now)", file=sys.stderr)

    previous = None
    with contextlib.suppress(ValueError):  # signals are the main thread's
        previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
