"""Serial: at most one model call in flight, one request per call (the unbatched baseline).

The original generative-agents implementation asks the model one request at a time; this
wrapper reproduces that over any :class:`~serving.llm.LLM`, so the speed-up of batching can be
measured on the same engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from serving.llm import LLM
from serving.types import LLMRequest, LLMResult


class SerialLLM:
    """Passes each request to ``inner`` alone (a 1-request ``generate`` call), one call at a time.

    Every caller shares one :class:`asyncio.Lock`, so however many agents ask concurrently, at
    most one call to ``inner`` is in flight. Results come back in the order of the requests; a
    call that raises stops the batch (as the service refuses a request outright).

    Args:
        inner: the LLM to call.
    """

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self._lock = asyncio.Lock()

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results: list[LLMResult] = []
        for request in requests:
            async with self._lock:
                results.extend(await self.inner.generate([request]))
        return results
