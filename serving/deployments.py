"""The Ray Serve deployments: the LLM service (handle + OpenAI-compatible HTTP) and embeddings.

The classes here are thin: the LLM work is :class:`serving.server.LLMServer`, the wire format is
``serving.openai_protocol``, the embedder is :class:`serving.embedding.MiniLMEmbedder`.
"""

import hmac
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from serving import openai_protocol as proto
from serving.config import EngineConfig
from serving.embedding import MiniLMEmbedder
from serving.llm import Engine, ModelInfo
from serving.server import LLMServer
from serving.types import LLMError, LLMRequest, LLMResult

LLM_APP = "llm"
LLM_DEPLOYMENT = "LLMService"
EMBEDDING_APP = "embeddings"
EMBEDDING_DEPLOYMENT = "EmbeddingService"

api = FastAPI(title="simulacra LLM service", docs_url=None, redoc_url=None)


@api.exception_handler(LLMError)
async def _llm_error(_: Request, exc: LLMError) -> JSONResponse:
    return JSONResponse(
        proto.error_body(exc.message, exc.error_type, exc.param), status_code=exc.status_code
    )


@api.exception_handler(RequestValidationError)
async def _bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    return JSONResponse(
        proto.error_body(f"{where}: {first['msg']}", "invalid_request_error", where),
        status_code=400,
    )


class _Unauthorized(LLMError):
    status_code = 401
    error_type = "authentication_error"


class _EngineFailure(LLMError):
    status_code = 500
    error_type = "server_error"


@serve.ingress(api)
class LLMService(LLMServer):
    """The LLM service: ``generate`` for Ray handles, OpenAI-compatible routes for HTTP.

    Args:
        config: the engine and model to serve.
        api_key: when set, HTTP requests must carry ``Authorization: Bearer <api_key>``.
        engine: an engine to use instead of the one ``config`` names (tests).
    """

    def __init__(
        self, config: EngineConfig, api_key: str | None = None, engine: Engine | None = None
    ) -> None:
        super().__init__(config, engine)
        self._api_key = api_key
        self.start()

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {self._api_key}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise _Unauthorized("missing or invalid API key", param=None)

    async def _answer(self, requests: list[LLMRequest]) -> list[LLMResult]:
        results = await self.generate(requests)
        failed = proto.failed_result_error(results)
        if failed is not None:
            raise _EngineFailure(failed.error or "engine failure", failed.request_id)
        return results

    @api.get("/v1/models")
    async def http_models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return proto.models_response(self.info())

    @api.post("/v1/chat/completions")
    async def http_chat(self, body: proto.ChatBody, request: Request) -> dict[str, Any]:
        self._authorize(request)
        llm_request = proto.chat_request(body, self.adapter_for_model(body.model))
        (result,) = await self._answer([llm_request])
        return proto.chat_response(result, body.model)

    @api.post("/v1/completions")
    async def http_completions(
        self, body: proto.CompletionBody, request: Request
    ) -> dict[str, Any]:
        self._authorize(request)
        requests = proto.completion_requests(body, self.adapter_for_model(body.model))
        return proto.completion_response(await self._answer(requests), body.model)

    def model_info(self) -> ModelInfo:
        return self.info()


class EmbeddingService:
    """all-MiniLM-L6-v2 as a Serve deployment; concurrent calls are batched."""

    def __init__(self, max_batch_size: int = 64) -> None:
        self._embedder = MiniLMEmbedder(max_batch_size=max_batch_size)
        self._embedder.start()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embedder.embed(list(texts))

    def batch_sizes(self) -> list[int]:
        return list(self._embedder.batch_sizes)


def llm_app(
    config: EngineConfig,
    api_key: str | None = None,
    num_cpus: float = 0,
    num_gpus: float | None = None,
    engine: Engine | None = None,
    quiet: bool = False,
) -> serve.Application:
    """The LLM service bound to its arguments, ready for ``serve.run``.

    ``quiet``: warnings only, no log line per request (simulation runs).
    """
    if num_gpus is None:
        num_gpus = 1 if config.engine == "vllm" else 0
    deployment = serve.deployment(
        name=LLM_DEPLOYMENT,
        num_replicas=1,
        max_ongoing_requests=4096,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        logging_config=_logging(quiet),
    )(LLMService)
    return deployment.bind(config, api_key, engine)


def embedding_app(
    max_batch_size: int = 64, num_cpus: float = 0, quiet: bool = False
) -> serve.Application:
    """The embedding service bound to its arguments, ready for ``serve.run``."""
    deployment = serve.deployment(
        name=EMBEDDING_DEPLOYMENT,
        num_replicas=1,
        max_ongoing_requests=4096,
        ray_actor_options={"num_cpus": num_cpus},
        logging_config=_logging(quiet),
    )(EmbeddingService)
    return deployment.bind(max_batch_size)


def _logging(quiet: bool) -> Any:
    """Serve's logging for a deployment: warnings only and no access log when ``quiet``."""
    from ray.serve.schema import LoggingConfig

    if quiet:
        return LoggingConfig(log_level="WARNING", enable_access_log=False)
    return LoggingConfig()
