"""Dynamic batching: concurrent callers' items meet in one call of a batch function.

Used by the CPU engine (rows from every caller share one forward pass) and by the embedding
service. While a batch executes, new arrivals queue and form the next batch, so the batch size
grows with the load by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class DynamicBatcher(Generic[T, R]):
    """Collects items from concurrent ``submit`` calls into batches for ``run_batch``.

    Args:
        run_batch: an async function from a list of items to one result per item.
        max_batch_size: most items in one batch.
        wait_s: how long the first item of a batch waits for company, when the previous batch
            had more than one item (a lone caller never waits).
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[Sequence[R]]],
        max_batch_size: int = 32,
        wait_s: float = 0.005,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batch_sizes: list[int] = []

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Submits items; returns their results in order. Raises what the batch raised."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests): start afresh
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work())
        assert self._queue is not None
        futures: list[asyncio.Future[R]] = []
        for item in items:
            fut: asyncio.Future[R] = loop.create_future()
            self._queue.put_nowait((item, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            # Wait for company only under load (the last batch had some): a lone caller is
            # never delayed, and under load arrivals also pile up while a batch executes.
            busy = bool(self.batch_sizes) and self.batch_sizes[-1] > 1
            deadline = asyncio.get_running_loop().time() + (self.wait_s if busy else 0.0)
            while len(batch) < self.max_batch_size:
                if queue.empty():
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except TimeoutError:
                        break
                else:
                    batch.append(queue.get_nowait())
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                results = await self._run_batch([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(
                        f"batch function returned {len(results)} results for {len(live)} items"
                    )
            except Exception as exc:  # every waiter hears of the failure; the worker lives on
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
