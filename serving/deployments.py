"""The Ray Serve deployments: the LLM service (handle + OpenAI-compatible HTTP) and embeddings.

The classes here are thin: the LLM work is :class:`serving.server.LLMServer`, the wire format is
``serving.openai_protocol``, the embedder is :class:`serving.embedding.MiniLMEmbedder`.
"""

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import openai_protocol as proto
from serving.config import EngineConfig
from serving.embedding import MiniLMEmbedder
from serving.llm import Engine, ModelInfo
from serving.server import LLMServer
from serving.types import LLMError, LLMRequest, LLMResult, RequestLimitError

LLM_APP = "llm"
LLM_DEPLOYMENT = "LLMService"
EMBEDDING_APP = "embeddings"
EMBEDDING_DEPLOYMENT = "EmbeddingService"

api = FastAPI(title="simulacra LLM service", docs_url=None, redoc_url=None)


def _error(exc: LLMError) -> JSONResponse:
    return JSONResponse(
        proto.error_body(exc.message, exc.error_type, exc.param, exc.code),
        status_code=exc.status_code,
    )


@api.exception_handler(LLMError)
async def _llm_error(_: Request, exc: LLMError) -> JSONResponse:
    return _error(exc)


@api.exception_handler(RequestValidationError)
async def _bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
    if first.get("type") == "json_invalid":  # loc is ("body", offset)
        where, message = None, f"the body is not valid JSON: {first['msg']} at {first['loc'][-1]}"
    else:
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        message = f"{where}: {first['msg']}"
    return JSONResponse(proto.error_body(message, "invalid_request_error", where), status_code=400)


@api.exception_handler(HTTPException)
async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (no such route, a method not allowed) as OpenAI error bodies."""
    kind = {404: "not_found_error"}.get(exc.status_code, "invalid_request_error")
    return JSONResponse(
        proto.error_body(str(exc.detail), kind), status_code=exc.status_code, headers=exc.headers
    )


def _service() -> Any:
    """The replica's :class:`LLMService` (what Serve hands the routes as ``self``)."""
    return serve.get_replica_context().servable_object


class _BodyLimit:
    """Refuses a request body over ``EngineConfig.max_request_bytes`` (HTTP 400, an OpenAI
    error body) before it is read whole or parsed: by its Content-Length, before a byte of it
    is read; a body sent without one (chunked), as soon as it passes the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(_service().config.max_request_bytes)
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit:
                await _refuse_body(scope, receive, send, f"{declared:,} bytes", limit)
            else:
                await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:  # no length given: read it here, within the limit, and hand it on
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await _refuse_body(scope, receive, send, f"more than {limit:,} bytes", limit)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse_body(scope: Scope, receive: Receive, send: Send, size: str, limit: int) -> None:
    refused = RequestLimitError(
        f"the request body is {size}; this server accepts at most {limit:,} bytes "
        "(max_request_bytes)",
        param=None,
    )
    await _error(refused)(scope, receive, send)


api.add_middleware(_BodyLimit)


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

    async def _answer(self, requests: list[LLMRequest], max_tokens_given: bool) -> list[LLMResult]:
        # A client that disconnects cancels this task (Serve's proxy cancels the request and
        # the replica cancels its task, Ray 2.60), and the engine drops its rows at once.
        await self.check_http(requests, max_tokens_must_fit=max_tokens_given)
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
        default = min(proto.CHAT_MAX_TOKENS, self.config.max_tokens_limit)
        llm_request = proto.chat_request(body, self.adapter_for_model(body.model), default)
        (result,) = await self._answer([llm_request], proto.chat_max_tokens_given(body))
        return proto.chat_response(result, body.model)

    @api.post("/v1/completions")
    async def http_completions(
        self, body: proto.CompletionBody, request: Request
    ) -> dict[str, Any]:
        self._authorize(request)
        requests = proto.completion_requests(body, self.adapter_for_model(body.model))
        # max_tokens defaults to 16 here, as OpenAI's and vLLM's: one given, it must fit
        return proto.completion_response(await self._answer(requests, True), body.model)

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


def llm_gpus(config: EngineConfig, cluster_gpus: float) -> int:
    """The GPUs the LLM replica asks for: one for an engine that loads the model (``hf``,
    ``vllm``) on a GPU (``device`` cuda, or unset on a cluster that has GPUs); none on the CPU
    (vLLM's CPU build too) and for ``openai``, whose model runs elsewhere.

    Raises:
        RuntimeError: ``device: cuda`` on a cluster without GPUs (the replica would wait for
            one forever).
    """
    wants_gpu = config.device == "cuda" or (config.device is None and cluster_gpus > 0)
    if config.device == "cuda" and cluster_gpus < 1:
        raise RuntimeError("the LLM service asks for a GPU (device: cuda); the cluster has none")
    return 1 if config.engine in ("hf", "vllm") and wants_gpu else 0


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0


def llm_app(
    config: EngineConfig,
    api_key: str | None = None,
    num_cpus: float = 0,
    num_gpus: float | None = None,
    engine: Engine | None = None,
    quiet: bool = False,
    resources: Mapping[str, float] | None = None,
) -> serve.Application:
    """The LLM service bound to its arguments, ready for ``serve.run``.

    ``quiet``: warnings only, no log line per request (simulation runs). ``resources``: the
    custom resources its replica asks for (``cluster.placement``: a node that takes the LLM).
    """
    if num_gpus is None:
        num_gpus = llm_gpus(config, _cluster_gpus())
    deployment = serve.deployment(
        name=LLM_DEPLOYMENT,
        num_replicas=1,
        max_ongoing_requests=4096,
        ray_actor_options={
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "resources": dict(resources or {}),
        },
        logging_config=_logging(quiet),
    )(LLMService)
    return deployment.bind(config, api_key, engine)


def embedding_app(
    max_batch_size: int = 64,
    num_cpus: float = 0,
    quiet: bool = False,
    resources: Mapping[str, float] | None = None,
) -> serve.Application:
    """The embedding service bound to its arguments, ready for ``serve.run``."""
    deployment = serve.deployment(
        name=EMBEDDING_DEPLOYMENT,
        num_replicas=1,
        max_ongoing_requests=4096,
        ray_actor_options={"num_cpus": num_cpus, "resources": dict(resources or {})},
        logging_config=_logging(quiet),
    )(EmbeddingService)
    return deployment.bind(max_batch_size)


def _logging(quiet: bool) -> Any:
    """Serve's logging for a deployment: warnings only and no access log when ``quiet``."""
    from ray.serve.schema import LoggingConfig

    if quiet:
        return LoggingConfig(log_level="WARNING", enable_access_log=False)
    return LoggingConfig()
