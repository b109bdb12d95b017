"""Iteration-level scheduling (continuous batching) for the ``hf`` engine.

Between two forward passes the scheduler admits waiting requests (first come, first served,
within a number of rows and a KV memory budget) and plans the next pass: every row that is
decoding adds its one next token, and rows still reading their prompt add chunks of it within a
per-pass token budget, so one long prompt never stalls the rows that are writing for more than
one chunk. A decoding row whose grammar forced some text after its newest token (jump-forward
decoding) feeds all of those tokens in one pass. Rows leave as soon as they finish, and their
KV is freed.

Plain Python (no torch): the engine supplies rows that know their own sizes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class SchedulableRow(Protocol):
    @property
    def kv_bytes(self) -> int:
        """KV memory the row holds while it runs."""

    @property
    def prompt_left(self) -> int:
        """Prompt tokens not yet run through the model (0 once decoding)."""

    @property
    def feed_tokens(self) -> int:
        """Tokens a decoding row feeds the next pass: its newest, and any the grammar forced."""


R = TypeVar("R", bound=SchedulableRow)


@dataclass(frozen=True)
class SchedulerLimits:
    """What one forward pass and the running rows may take.

    Args:
        max_rows: most rows running at once.
        kv_budget_bytes: most KV memory held by running rows (a lone row always runs).
        prefill_tokens: most prompt tokens in one forward pass, over all rows.
    """

    max_rows: int
    kv_budget_bytes: int
    prefill_tokens: int


class Scheduler(Generic[R]):
    """The waiting queue and the running rows; admits and plans, never runs the model."""

    def __init__(self, limits: SchedulerLimits) -> None:
        self.limits = limits
        self.waiting: deque[R] = deque()
        self.running: list[R] = []

    @property
    def kv_bytes(self) -> int:
        return sum(row.kv_bytes for row in self.running)

    def add(self, row: R) -> None:
        self.waiting.append(row)

    def admit(self, cost: Callable[[R], int]) -> list[R]:
        """Moves waiting rows into the running set, in arrival order, while they fit.

        Args:
            cost: the KV bytes a waiting row will hold (the engine encodes its prompt here).
        Returns:
            The rows admitted now.
        """
        admitted: list[R] = []
        used = self.kv_bytes
        while self.waiting and len(self.running) < self.limits.max_rows:
            need = cost(self.waiting[0])
            if self.running and used + need > self.limits.kv_budget_bytes:
                break
            row = self.waiting.popleft()
            self.running.append(row)
            admitted.append(row)
            used += need
        return admitted

    def plan(self) -> list[tuple[R, int]]:
        """The next forward pass: ``(row, tokens)`` for each row taking part, decoding rows
        first (their newest token, and any forced after it), then prompt chunks within the
        per-pass budget."""
        step = [(row, row.feed_tokens) for row in self.running if row.prompt_left == 0]
        budget = self.limits.prefill_tokens
        for row in self.running:
            left = row.prompt_left
            if left == 0:
                continue
            if budget <= 0:
                break
            take = min(left, budget)
            step.append((row, take))
            budget -= take
        return step

    def remove(self, row: R) -> None:
        """Takes a finished (or failed, or cancelled) row out, freeing its place."""
        if row in self.running:
            self.running.remove(row)
        elif row in self.waiting:
            self.waiting.remove(row)
