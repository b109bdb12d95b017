"""A backend guard: rows the backend failed are sent again for a while, then the caller is told.

A row can fail for two reasons: its answer did not validate or the server refused it (a bad row:
the caller's fallback handles it), or the backend itself failed (unreachable, no answer in time,
HTTP 5xx; ``LLMResult.backend_error``). A bad row comes back as it is; a row the backend failed
says nothing about its request, so it is sent again, with backoff, and when the backend is still
failing after ``wait_s`` the call raises :class:`BackendUnavailableError` instead of letting the
caller fall back on answers that never came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from serving.llm import LLM
from serving.types import LLMRequest, LLMResult
from serving.wrappers.backoff import backoff_s, generate_checked


class BackendUnavailableError(Exception):
    """The model backend kept failing for longer than the guard waits.

    Not an :class:`~serving.types.LLMError` (nothing is wrong with the request). It keeps its
    fields across Ray's serialisation (a host actor raises it to the driver).

    Attributes:
        backend: what failed, as the guard knows it (``"the LLM service"`` on a host).
        last_error: the last failed row's error.
        waited_s: seconds from the first failure to giving up.
        rows: how many rows of the call were still failing.
    """

    def __init__(self, backend: str, last_error: str, waited_s: float, rows: int = 1) -> None:
        self.backend = backend
        self.last_error = last_error
        self.waited_s = waited_s
        self.rows = rows
        super().__init__(
            f"{backend} {self.how} ({rows} request(s) unanswered); last error: {last_error}"
        )

    @property
    def how(self) -> str:
        """``"kept failing for N s"``, or ``"failed"`` when it was not waited for."""
        return f"kept failing for {self.waited_s:.0f} s" if self.waited_s >= 0.5 else "failed"

    def __reduce__(self) -> tuple[Any, ...]:  # keeps the fields across Ray's serialisation
        return (type(self), (self.backend, self.last_error, self.waited_s, self.rows))


class BackendGuardLLM:
    """Re-sends rows the backend failed until they are answered or ``wait_s`` has passed.

    Ok rows and bad rows (failed, not ``backend_error``) come back from the first call as they
    are. Rows marked ``backend_error`` are sent again alone, as a smaller batch with their
    request ids, after sleeping ``backoff_s * 2**(n - 1)`` (at most ``max_backoff_s``, and no
    later than ``wait_s`` after the call's first failed row) before retry ``n``; results keep
    the order of the requests. Rows still failing ``wait_s`` after that first failure raise
    :class:`BackendUnavailableError` (with ``wait_s=0``: at once). Exceptions of ``inner``
    propagate.

    Args:
        inner: the LLM to call.
        wait_s: how long a failing backend is given, from a call's first failed row.
        backoff_s: sleep before the first retry.
        max_backoff_s: cap on one sleep.
        backend: what the backend is, for the error.
        sleep: the sleep function (tests pass a recorder).
        clock: seconds, for ``wait_s`` (tests pass one their sleep advances).
    """

    def __init__(
        self,
        inner: LLM,
        wait_s: float = 120.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        backend: str = "the model backend",
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if wait_s < 0 or backoff_s <= 0 or max_backoff_s <= 0:
            raise ValueError("wait_s must be >= 0, backoff_s and max_backoff_s > 0")
        self.inner = inner
        self.wait_s = wait_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.backend = backend
        self._sleep = sleep
        self._clock = clock

    def delay_s(self, retry: int) -> float:
        """The sleep before retry number ``retry`` (1 for the first)."""
        return backoff_s(retry, self.backoff_s, self.max_backoff_s)

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        requests = list(requests)
        if not requests:
            return []
        results = await generate_checked(self.inner, requests)
        pending = [i for i, r in enumerate(results) if r.backend_error]
        started = self._clock()
        retry = 0
        while pending:
            retry += 1
            waited = self._clock() - started
            if waited >= self.wait_s:
                last = results[pending[-1]].error or "no error message"
                raise BackendUnavailableError(self.backend, last, waited, len(pending))
            await self._sleep(min(self.delay_s(retry), self.wait_s - waited))
            out = await generate_checked(self.inner, [requests[i] for i in pending])
            for i, result in zip(pending, out, strict=True):
                results[i] = result
            pending = [i for i in pending if results[i].backend_error]
        return results
