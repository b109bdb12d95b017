"""The LLM server: one engine behind the checks every caller gets, as a plain class.

It knows nothing of Ray; ``serving.deployments`` turns it into a Serve deployment, and tests
can construct it directly with any engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from serving.adapters import BASE_MODEL_ALIASES, check_adapter_name
from serving.config import EngineConfig
from serving.engines import make_engine
from serving.engines.common import check_requests
from serving.llm import LLM, ChecksLimits, Engine, ModelInfo
from serving.types import LLMRequest, LLMResult, RequestLimitError, UnknownAdapterError
from serving.wrappers.recording import RecordingLLM, ReplayLLM


class LLMServer:
    """Checks requests, then hands them to the engine.

    Args:
        config: which engine and model to serve.
        engine: an engine to use instead of the one ``config`` names (tests).
    """

    def __init__(self, config: EngineConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine: Engine = engine if engine is not None else make_engine(config)
        self._info: ModelInfo | None = None
        self.answerer: LLM = self.engine
        self._in_flight = 0
        self._busy_since = 0.0
        self._busy_s = 0.0
        if config.replay is not None:
            self.answerer = ReplayLLM(config.replay, repeat_last=True)
        elif config.record is not None:
            self.answerer = RecordingLLM(self.engine, config.record, append=True)

    def start(self) -> None:
        """Loads the engine's models."""
        self.engine.start()
        self._info = self.engine.info()

    def info(self) -> ModelInfo:
        if self._info is None:
            self._info = self.engine.info()
        return self._info

    def adapter_for_model(self, model: str | None) -> str | None:
        """Maps an OpenAI ``model`` field to an adapter name (``None`` for the base model)."""
        info = self.info()
        if model is None or model == info.base_model or model in BASE_MODEL_ALIASES:
            return None
        check_adapter_name(model)
        if model not in info.adapters:
            raise UnknownAdapterError(model, info.adapters)
        return model

    def check(self, requests: Sequence[LLMRequest]) -> None:
        """Raises for the first request the service must refuse, before any decoding: an
        unknown adapter, an invalid schema."""
        check_requests(requests, self.info().adapters)

    async def check_http(
        self, requests: Sequence[LLMRequest], max_tokens_must_fit: bool = False
    ) -> None:
        """The HTTP API's limits, for requests from clients this service does not know: raises
        for ``max_tokens`` over ``config.max_tokens_limit`` and (engines that know the model's
        context: :class:`~serving.llm.ChecksLimits`) a prompt that does not fit it, or with
        ``max_tokens_must_fit`` a ``max_tokens`` that does not fit what the prompt leaves (as
        vLLM's OpenAI server). The agents' own requests (handles) skip these: their longest
        answer is a bound, cut where the context ends (finish reason ``"length"``, as vLLM's
        ``LLM``), and a prompt that cannot fit fails its row alone."""
        self.check(requests)
        limit = self.config.max_tokens_limit
        for request in requests:
            if request.max_tokens > limit:
                raise RequestLimitError(
                    f"max_tokens is {request.max_tokens:,}; this server allows at most "
                    f"{limit:,} (max_tokens_limit)",
                    request.request_id,
                    param="max_tokens",
                )
        if isinstance(self.engine, ChecksLimits):
            await self.engine.check_limits(requests, max_tokens_must_fit)

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Generates one result per request (see :class:`serving.llm.LLM`), after
        :meth:`check`."""
        requests = list(requests)
        self.check(requests)
        if not requests:
            return []
        if self._in_flight == 0:
            self._busy_since = time.perf_counter()
        self._in_flight += 1
        try:
            return await self.answerer.generate(requests)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._busy_s += time.perf_counter() - self._busy_since

    def busy_seconds(self) -> float:
        """Seconds so far during which at least one request was being answered."""
        now = time.perf_counter()
        return self._busy_s + (now - self._busy_since if self._in_flight else 0.0)

    def batch_sizes(self) -> list[int]:
        """Sizes of the batches the engine executed so far (engines that batch themselves)."""
        return list(getattr(self.engine, "batch_sizes", []))
