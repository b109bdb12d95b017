"""Accounting: one row per request (tokens, latency, batch size, errors), as an Arrow table."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serving.files import atomic_write
from serving.llm import LLM
from serving.types import LLMRequest, LLMResult

SCHEMA = pa.schema(
    [
        pa.field("call", pa.int64(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("purpose", pa.string(), nullable=False),
        pa.field("adapter", pa.string()),
        pa.field("prompt_tokens", pa.int64(), nullable=False),
        pa.field("completion_tokens", pa.int64(), nullable=False),
        pa.field("latency_s", pa.float64(), nullable=False),
        pa.field("engine_s", pa.float64()),
        pa.field("batch_size", pa.int64()),
        pa.field("cached_tokens", pa.int64()),
        pa.field("queue_s", pa.float64()),
        pa.field("queue_length", pa.int64()),
        pa.field("ok", pa.bool_(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("step", pa.int64()),
        pa.field("agent", pa.string()),
    ]
)
"""The columns of :meth:`AccountingLLM.table`. ``call`` numbers the wrapper's calls from 0;
``latency_s`` is the whole call as its caller saw it; ``engine_s``, ``batch_size`` (the most rows
in one forward pass while the request ran), ``cached_tokens`` (prompt tokens from the prefix
cache), ``queue_s`` (arrival until the engine took it up) and ``queue_length`` (requests waiting
then) come from the result (null when the call raised); ``step`` and ``agent`` come from the
context."""

CONTEXT_FIELDS = ("step", "agent")

_context: ContextVar[dict[str, Any] | None] = ContextVar(
    "simulacra_llm_accounting_context", default=None
)


class AccountingLLM:
    """Passes calls to ``inner`` and keeps one row per request.

    The ``step`` and ``agent`` columns come from :attr:`base_context` (set once, e.g. by a
    driver), overridden by :meth:`context` blocks (per task, through a context variable, so
    concurrent agents each see their own).

    Args:
        inner: the LLM to call.
        clock: seconds for latencies.
    """

    def __init__(self, inner: LLM, clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner = inner
        self.clock = clock
        self.base_context: dict[str, Any] = {}
        self._rows: list[dict[str, Any]] = []
        self._next_call = 0
        self.requests_total = 0  # every request so far, kept across clear()
        self.tokens_total = 0  # their prompt + completion tokens
        self.failed_total = 0  # those of them that failed (an error row, or a call that raised)

    @contextlib.contextmanager
    def context(self, **fields: Any) -> Iterator[None]:
        """Within this block (and tasks started in it), rows get these context fields."""
        unknown = set(fields) - set(CONTEXT_FIELDS)
        if unknown:
            raise TypeError(
                f"unknown accounting context fields {sorted(unknown)}; "
                f"known: {list(CONTEXT_FIELDS)}"
            )
        token = _context.set({**(_context.get() or {}), **fields})
        try:
            yield
        finally:
            _context.reset(token)

    def _current_context(self) -> dict[str, Any]:
        merged = {**self.base_context, **(_context.get() or {})}
        return {name: merged.get(name) for name in CONTEXT_FIELDS}

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        call = self._next_call
        self._next_call += 1
        context = self._current_context()
        start = self.clock()
        try:
            results = await self.inner.generate(requests)
        except Exception as exc:
            latency = self.clock() - start
            error = f"{type(exc).__name__}: {exc}"
            for request in requests:
                self._rows.append(self._row(call, request, None, latency, error, context))
            self.requests_total += len(requests)
            self.failed_total += len(requests)
            raise
        latency = self.clock() - start
        for request, result in zip(requests, results, strict=True):
            self._rows.append(self._row(call, request, result, latency, result.error, context))
        self.requests_total += len(requests)
        self.tokens_total += sum(r.prompt_tokens + r.completion_tokens for r in results)
        self.failed_total += sum(1 for r in results if not r.ok)
        return results

    @staticmethod
    def _row(
        call: int,
        request: LLMRequest,
        result: LLMResult | None,
        latency_s: float,
        error: str | None,
        context: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "call": call,
            "request_id": request.request_id,
            "purpose": request.purpose,
            "adapter": request.adapter,
            "prompt_tokens": 0 if result is None else result.prompt_tokens,
            "completion_tokens": 0 if result is None else result.completion_tokens,
            "latency_s": latency_s,
            "engine_s": None if result is None else result.engine_s,
            "batch_size": None if result is None else result.batch_size,
            "cached_tokens": None if result is None else result.cached_tokens,
            "queue_s": None if result is None else result.queue_s,
            "queue_length": None if result is None else result.queue_length,
            "ok": error is None,
            "error": error,
            **context,
        }

    def rows(self) -> list[dict[str, Any]]:
        """The rows so far (copies)."""
        return [dict(row) for row in self._rows]

    def table(self) -> pa.Table:
        """The rows as an Arrow table with :data:`SCHEMA` (also when there are none)."""
        return pa.Table.from_pylist(self._rows, schema=SCHEMA)

    def write_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Writes :meth:`table` to ``path`` atomically (a temporary file, then a rename)."""
        table = self.table()
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp))

    def summary(self) -> dict[str, Any]:
        """Totals: calls, requests, tokens, mean batch size and latency, errors."""
        rows = self._rows
        sizes = [r["batch_size"] for r in rows if r["batch_size"] is not None]
        return {
            "calls": len({r["call"] for r in rows}),
            "requests": len(rows),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
            "completion_tokens": sum(r["completion_tokens"] for r in rows),
            "cached_tokens": sum(r["cached_tokens"] or 0 for r in rows),
            "mean_batch_size": sum(sizes) / len(sizes) if sizes else 0.0,
            "mean_latency_s": sum(r["latency_s"] for r in rows) / len(rows) if rows else 0.0,
            "errors": sum(1 for r in rows if not r["ok"]),
        }

    def get_state(self) -> dict[str, Any]:
        """The rows and the call numbering as plain data (for checkpoints)."""
        return {"next_call": self._next_call, "rows": self.rows()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`get_state` returned."""
        self._next_call = int(state["next_call"])
        self._rows = [dict(row) for row in state["rows"]]

    def clear(self) -> None:
        """Forgets every row (the call numbering goes on, so chunks written between clears
        still have distinct call numbers)."""
        self._rows = []
