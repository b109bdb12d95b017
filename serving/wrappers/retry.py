"""Retries: a wrapper that re-sends failed calls and failed rows, with a timeout per call."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable, Sequence

from serving.llm import LLM
from serving.types import LLMError, LLMRequest, LLMResult
from serving.wrappers.backoff import backoff_s, generate_checked


class RetryLLM:
    """Retries transient failures of an inner LLM; never hangs, never raises for them.

    Each attempt is one call of ``inner.generate`` bounded by ``timeout_s``. A call that times
    out or raises one of ``retry_on`` (never an LLMError) is retried whole; rows that
    come back with an error are re-sent alone, as a smaller batch with their request ids.
    Between attempts it sleeps ``backoff_s * 2**(n - 1)`` (at most ``max_backoff_s``), scaled by
    a jitter factor in ``[1 - jitter, 1 + jitter]`` drawn from ``random.Random(seed)``.

    An ``LLMError`` (unknown adapter, invalid schema: the caller's fault) propagates at once.
    Rows still failing after ``attempts`` come back as error results whose ``error`` says
    ``"failed after N attempts: <last error>"``; where that last error was the call's (it timed
    out or raised: the transport failed), the row is marked ``backend_error``.

    Args:
        inner: the LLM to call.
        attempts: most calls per row, the first included (>= 1).
        backoff_s: sleep before the second attempt.
        max_backoff_s: cap on one sleep.
        timeout_s: limit on one call of ``inner``; ``None`` for none.
        jitter: relative spread of the sleeps (0 for none).
        seed: seed of the jitter's random source.
        retry_row_errors: re-send rows that came back with an error.
        retry_on: the exceptions that count as transient; others propagate.
        sleep: the sleep function (tests pass a recorder).
    """

    def __init__(
        self,
        inner: LLM,
        attempts: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        timeout_s: float | None = 60.0,
        jitter: float = 0.1,
        seed: int = 0,
        retry_row_errors: bool = True,
        retry_on: tuple[type[Exception], ...] = (Exception,),
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")
        self.inner = inner
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.jitter = jitter
        self.retry_row_errors = retry_row_errors
        self.retry_on = retry_on
        self._rng = random.Random(seed)
        self._sleep = sleep

    def delay_s(self, retry: int) -> float:
        """The sleep before retry number ``retry`` (1 for the second attempt)."""
        base = backoff_s(retry, self.backoff_s, self.max_backoff_s)
        return min(self.max_backoff_s, base * self._rng.uniform(1 - self.jitter, 1 + self.jitter))

    async def _call(self, batch: list[LLMRequest]) -> list[LLMResult]:
        return await asyncio.wait_for(generate_checked(self.inner, batch), self.timeout_s)

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        requests = list(requests)
        if not requests:
            return []
        results: list[LLMResult | None] = [None] * len(requests)
        last_error: dict[int, str] = {}
        call_failed: set[int] = set()  # rows whose last attempt failed as a call, not a row
        pending = list(range(len(requests)))
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                await self._sleep(self.delay_s(attempt - 1))
            try:
                out = await self._call([requests[i] for i in pending])
            except LLMError:
                raise
            except TimeoutError:
                last_error.update((i, f"timed out after {self.timeout_s}s") for i in pending)
                call_failed.update(pending)
                continue
            except Exception as exc:  # transient: the whole call is tried again
                if not isinstance(exc, self.retry_on):
                    raise
                last_error.update((i, f"{type(exc).__name__}: {exc}") for i in pending)
                call_failed.update(pending)
                continue
            still: list[int] = []
            for i, result in zip(pending, out, strict=True):
                results[i] = result
                call_failed.discard(i)
                if not result.ok:
                    last_error[i] = str(result.error)
                    still.append(i)
            pending = still if self.retry_row_errors else []
            if not pending:
                break
        for i in pending:
            error = f"failed after {self.attempts} attempts: {last_error[i]}"
            row = results[i]
            if row is None:  # no attempt answered this row
                results[i] = LLMResult.failure(requests[i], error, backend_error=True)
            else:
                results[i] = dataclasses.replace(
                    row,
                    request_id=requests[i].request_id,
                    finish_reason="error",
                    error=error,
                    backend_error=row.backend_error or i in call_failed,
                )
        return [r for r in results if r is not None]
