"""Clients of the Serve deployments that implement the project's interfaces.

A client holds only names; it looks its handle up lazily in the process that uses it, so a
client can be passed to a Ray actor (handles and connections never cross boundaries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from serving.deployments import EMBEDDING_APP, EMBEDDING_DEPLOYMENT, LLM_APP, LLM_DEPLOYMENT
from serving.embedding import EMBEDDING_DIM
from serving.llm import ModelInfo
from serving.types import LLMError, LLMRequest, LLMResult


def _unwrapped(exc: Exception) -> Exception:
    """The service's own error behind Ray's wrapper (an unknown adapter, a bad schema)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, LLMError) else exc


def transport_errors() -> tuple[type[Exception], ...]:
    """What a call of a Serve deployment raises when the transport failed, not the call: a
    replica gone or unreachable, a full queue. Worth retrying (``RetryLLM``); the service's own
    refusals (``LLMError``) and failures are not."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError

    return (RayActorError, BackPressureError, ConnectionError)


def _handle(deployment: str, app: str) -> Any:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=app)


class _HandleClient:
    """Holds a deployment's names; looks its handle up lazily, in the process that uses it."""

    def __init__(self, app: str, deployment: str) -> None:
        self.app = app
        self.deployment = deployment
        self._h: Any = None

    def __getstate__(self) -> dict[str, str]:
        return {"app": self.app, "deployment": self.deployment}

    def __setstate__(self, state: dict[str, str]) -> None:
        _HandleClient.__init__(self, **state)

    @property
    def _handle(self) -> Any:
        if self._h is None:
            self._h = _handle(self.deployment, self.app)
        return self._h


class ServeLLM(_HandleClient):
    """The LLM interface over the LLM service's deployment handle."""

    def __init__(self, app: str = LLM_APP, deployment: str = LLM_DEPLOYMENT) -> None:
        super().__init__(app, deployment)

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        if not requests:
            return []
        response = self._handle.generate.remote(list(requests))
        try:
            return list(await response)
        except asyncio.CancelledError:  # a caller that gives up (a timeout): the rows stop
            response.cancel()
            raise
        except Exception as exc:
            raise _unwrapped(exc) from None

    async def info(self) -> ModelInfo:
        return await self._handle.model_info.remote()

    async def batch_sizes(self) -> list[int]:
        return list(await self._handle.batch_sizes.remote())

    async def busy_seconds(self) -> float:
        """Seconds the service has spent answering (at least one request in flight)."""
        return float(await self._handle.busy_seconds.remote())


class ServeEmbedder(_HandleClient):
    """The embedding interface over the embedding service's deployment handle."""

    def __init__(self, app: str = EMBEDDING_APP, deployment: str = EMBEDDING_DEPLOYMENT) -> None:
        super().__init__(app, deployment)

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return await self._handle.embed.remote(list(texts))

    async def batch_sizes(self) -> list[int]:
        return list(await self._handle.batch_sizes.remote())
