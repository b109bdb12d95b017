"""The one LLM interface of the project: a batch of requests in, one result per request out.

Engines, the Serve client and every wrapper (retry, recording, replay, accounting, batching)
implement it, so each can stand in for the others. The agent's mind sees nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from serving.types import LLMRequest, LLMResult


@runtime_checkable
class LLM(Protocol):
    """Generates one result per request, in the order of the requests.

    A request the service refuses outright (an unknown adapter, an invalid schema) raises an
    :class:`~serving.types.LLMError`; a row that fails while it is generated comes back as a
    result with ``error`` set, so that one bad row never hides the others' answers.
    """

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]: ...


@dataclass(frozen=True)
class ModelInfo:
    """What a service serves: the base model's name and its adapters' names."""

    base_model: str
    adapters: tuple[str, ...] = ()


@runtime_checkable
class Engine(LLM, Protocol):
    """An LLM that loads models: cheap to construct, heavy work in :meth:`start`."""

    def start(self) -> None: ...

    def info(self) -> ModelInfo: ...


@runtime_checkable
class ChecksLimits(Protocol):
    """An engine that knows its model's context: it refuses, before any decoding, a request
    that cannot fit it (the ``hf`` engine; vLLM and an OpenAI server refuse such rows
    themselves)."""

    async def check_limits(
        self, requests: Sequence[LLMRequest], max_tokens_must_fit: bool = False
    ) -> None: ...
