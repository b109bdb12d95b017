"""What the wrappers that send requests again share: one checked call of the inner LLM, and the
exponential backoff between attempts."""

from __future__ import annotations

from collections.abc import Sequence

from serving.llm import LLM
from serving.types import LLMRequest, LLMResult


async def generate_checked(inner: LLM, batch: Sequence[LLMRequest]) -> list[LLMResult]:
    """``inner.generate(batch)``, checked to give one result per request.

    Raises:
        RuntimeError: ``inner`` broke the interface (another number of results).
    """
    results = list(await inner.generate(batch))
    if len(results) != len(batch):
        raise RuntimeError(f"inner LLM returned {len(results)} results for {len(batch)}")
    return results


def backoff_s(retry: int, base_s: float, cap_s: float) -> float:
    """The sleep before retry number ``retry`` (1 for the first): ``base_s`` doubled each
    retry, at most ``cap_s``."""
    return min(cap_s, base_s * 2 ** (retry - 1))
