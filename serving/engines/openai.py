"""The ``openai`` engine: any OpenAI-compatible server (vLLM's, this project's, OpenAI's).

A request's adapter is the ``model`` it asks for (the base model is ``config.model``); a JSON
schema goes in ``response_format`` as ``json_schema``. Chat requests use
``/chat/completions``, prompt requests ``/completions`` (the official client has no
``response_format`` there, so it is sent in ``extra_body``; vLLM honours it). Every request of a
call is sent concurrently.

Errors: a row that fails on the server (an HTTP error, a timeout, a dropped connection, an
answer that does not match its schema) comes back as a failed result with the server's message.
The one exception is a 404 that names the model a request asked for an adapter by: the server
does not have that adapter, which is a refusal of the request, so :class:`UnknownAdapterError`
is raised (after every row of the call has finished), as the other engines do when they check
adapters up front. The client does not retry (``max_retries=0``): retrying is the retry
wrapper's job, and a retrying client would hide how long a row really took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx
import openai

from serving.adapters import check_adapter_name
from serving.config import EngineConfig
from serving.engines.common import check_requests, checked_answer
from serving.llm import ModelInfo
from serving.schema import parse_and_validate
from serving.seeds import sampling_seed
from serving.types import FinishReason, LLMError, LLMRequest, LLMResult, UnknownAdapterError

SCHEMA_NAME = "answer"
_MAX_MESSAGE = 500  # characters of a non-JSON error body kept in a result's error

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "stop",
    "function_call": "stop",
}


# -- pure translation ----------------------------------------------------------------------------


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``response_format`` that constrains an answer to ``schema``."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "schema": dict(schema), "strict": True},
    }


def _common_kwargs(request: LLMRequest, base_model: str, base_seed: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": request.adapter or base_model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    seed = sampling_seed(request, base_seed)
    if seed is not None:
        kwargs["seed"] = seed
    if request.stop:
        kwargs["stop"] = list(request.stop)
    return kwargs


def chat_kwargs(
    request: LLMRequest, base_model: str, base_seed: int | None = None
) -> dict[str, Any]:
    """The ``chat.completions.create`` keyword arguments for a chat request.

    Args:
        request: a request with ``messages``.
        base_model: the server's name of the base model, asked for when there is no adapter.
        base_seed: the engine's seed; sampled requests without a seed get one derived from it
            and their content. Greedy requests without a seed send none.
    """
    if request.messages is None:
        raise ValueError(f"request {request.request_id} has no messages")
    kwargs = _common_kwargs(request, base_model, base_seed)
    kwargs["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.json_schema is not None:
        kwargs["response_format"] = response_format(request.json_schema)
    return kwargs


def completion_kwargs(
    request: LLMRequest, base_model: str, base_seed: int | None = None
) -> dict[str, Any]:
    """The ``completions.create`` keyword arguments for a prompt request (see
    :func:`chat_kwargs`)."""
    if request.prompt is None:
        raise ValueError(f"request {request.request_id} has no prompt")
    kwargs = _common_kwargs(request, base_model, base_seed)
    kwargs["prompt"] = request.prompt
    if request.json_schema is not None:
        kwargs["extra_body"] = {"response_format": response_format(request.json_schema)}
    return kwargs


def finish_reason(reason: str | None) -> tuple[FinishReason, str | None]:
    """Our finish reason, and an error for failed rows, from the server's."""
    if reason in _FINISH_REASONS:
        return _FINISH_REASONS[reason], None
    if reason == "content_filter":
        return "error", "the server's content filter stopped the answer"
    return "error", f"the server finished the answer with reason {reason!r}"


def _result(
    request: LLMRequest,
    text: str,
    reason: str | None,
    usage: Any,
    latency_s: float,
    batch_size: int,
) -> LLMResult:
    parsed, finish, error = checked_answer(request, text, *finish_reason(reason))
    return LLMResult(
        request_id=request.request_id,
        text=text,
        parsed=parsed,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        finish_reason=finish,
        latency_s=latency_s,
        engine_s=latency_s,
        batch_size=batch_size,
        cached_tokens=int(
            getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0
        ),
        adapter=request.adapter,
        error=error,
    )


def result_from_chat(
    response: Any, request: LLMRequest, *, latency_s: float = 0.0, batch_size: int = 1
) -> LLMResult:
    """The result of a request from a ``ChatCompletion``; with a schema the answer is parsed and
    validated, and an invalid one gives a failed result."""
    if not response.choices:
        return LLMResult.failure(request, "the server returned no choices", latency_s=latency_s)
    choice = response.choices[0]
    text = choice.message.content or ""
    return _result(request, text, choice.finish_reason, response.usage, latency_s, batch_size)


def result_from_completion(
    response: Any, request: LLMRequest, *, latency_s: float = 0.0, batch_size: int = 1
) -> LLMResult:
    """The result of a request from a ``Completion`` (see :func:`result_from_chat`)."""
    if not response.choices:
        return LLMResult.failure(request, "the server returned no choices", latency_s=latency_s)
    choice = response.choices[0]
    text = choice.text or ""
    return _result(request, text, choice.finish_reason, response.usage, latency_s, batch_size)


def adapters_from_models(model_ids: Iterable[str], base_model: str) -> tuple[str, ...]:
    """The adapters among a server's model ids: every id but the base model's that is a valid
    adapter name (an id with a ``/``, such as another base model's hub id, is not)."""
    names = set()
    for model_id in model_ids:
        if model_id == base_model:
            continue
        try:
            names.add(check_adapter_name(model_id))
        except LLMError:
            continue
    return tuple(sorted(names))


def server_message(exc: openai.APIStatusError) -> str:
    """The message of an error response, without the client's ``Error code: ...`` wrapping."""
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    try:
        text = exc.response.text.strip()
    except Exception:  # a streamed or unread body
        text = ""
    return text[:_MAX_MESSAGE] if text else exc.message


def is_backend_status(status: int) -> bool:
    """Whether an HTTP error status is the server failing (5xx; 429 too many requests; 408 no
    answer in time) rather than refusing the request (the other 4xx)."""
    return status >= 500 or status in (408, 429)


def names_model(exc: openai.APIStatusError, model: str) -> bool:
    """Whether an error response is about the model ``model`` not existing."""
    body = exc.body
    if isinstance(body, Mapping) and body.get("code") == "model_not_found":
        return True
    return model in server_message(exc)


class UpstreamError(ConnectionError):
    """The OpenAI-compatible server cannot serve a run (unreachable, without the base model,
    ignoring JSON schemas); the message names its URL."""


PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
PROBE_REQUEST = LLMRequest.chat(
    [("user", "Describe fresh bread in one sentence.")],
    json_schema=PROBE_SCHEMA,
    max_tokens=16,
)
"""What :meth:`OpenAIEngine.check_server` asks: a question that invites prose, under a schema
that only admits ``{"ok": ...}``."""


# -- the engine ----------------------------------------------------------------------------------


class OpenAIEngine:
    """An :class:`~serving.llm.Engine` on an OpenAI-compatible server.

    Args:
        config: ``base_url``, ``api_key`` (``"EMPTY"`` when unset), ``model`` (the server's name
            of the base model), ``adapters`` (names served; when empty they are listed from the
            server at :meth:`start`), ``timeout_s`` (per request, end to end) and ``seed``.
        http_client: the ``httpx.AsyncClient`` requests go through (tests inject one with a
            ``MockTransport``); by default the client's own.
        sync_http_client: the ``httpx.Client`` :meth:`start` lists models with; by default the
            client's own. :meth:`start` is synchronous and may run inside a running event loop
            (a Serve replica's constructor), so it cannot use the asynchronous client.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        sync_http_client: httpx.Client | None = None,
    ) -> None:
        self.config = config
        self._http_client = http_client
        self._sync_http_client = sync_http_client
        self._client: openai.AsyncOpenAI | None = None
        # None: not known (not started); then adapters are not checked before sending.
        self._adapters: tuple[str, ...] | None = (
            tuple(sorted(config.adapters)) if config.adapters else None
        )
        self._in_flight = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Creates the client and, unless ``config.adapters`` names them, lists the server's
        models to learn its adapters.

        Raises:
            ConnectionError: the server's models could not be listed.
        """
        self._ensure_client()
        if self._adapters is None:
            self._adapters = self._discover_adapters()

    def _ensure_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=self.config.api_key or "EMPTY",
                timeout=self.config.timeout_s,
                max_retries=0,
                http_client=self._http_client,  # type: ignore[arg-type]  # httpx or httpx2
            )
        return self._client

    def _sync_client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.config.base_url,
            api_key=self.config.api_key or "EMPTY",
            timeout=self.config.timeout_s,
            max_retries=0,
            http_client=self._sync_http_client,  # type: ignore[arg-type]  # httpx or httpx2
        )

    def _close_sync(self, client: openai.OpenAI) -> None:
        if self._sync_http_client is None:
            client.close()

    def _model_ids(self, client: openai.OpenAI) -> list[str]:
        try:
            return [model.id for model in client.models.list()]
        except openai.OpenAIError as exc:
            raise UpstreamError(
                f"cannot list the models of {self.config.base_url or 'the OpenAI API'}: {exc}"
            ) from exc

    def _discover_adapters(self) -> tuple[str, ...]:
        client = self._sync_client()
        try:
            return adapters_from_models(self._model_ids(client), self.config.model)
        finally:
            self._close_sync(client)

    def check_server(self) -> None:
        """Checks, before a run starts, that the server can serve it: it answers, it serves
        the base model under ``config.model``, and it decodes under a JSON schema (a server
        that ignores ``response_format``, as vLLM does the old ``guided_json``, answers prose).

        Raises:
            UpstreamError: naming the URL and what is wrong.
        """
        url = self.config.base_url or "the OpenAI API"
        client = self._sync_client()
        try:
            ids = self._model_ids(client)
            if self.config.model not in ids:
                raise UpstreamError(
                    f"{url} does not serve {self.config.model!r} (it serves: "
                    f"{', '.join(sorted(ids)) or 'nothing'}); --model must be the server's name "
                    "of the base model"
                )
            try:
                answer = client.chat.completions.create(
                    **chat_kwargs(PROBE_REQUEST, self.config.model, self.config.seed)
                )
                text = answer.choices[0].message.content or "" if answer.choices else ""
            except openai.OpenAIError as exc:
                raise UpstreamError(f"{url} failed a JSON-schema request: {exc}") from exc
            _, error = parse_and_validate(text, PROBE_SCHEMA)
            if error is not None:
                raise UpstreamError(
                    f"{url} does not decode under a JSON schema (response_format json_schema): "
                    f'asked for {{"ok": true or false}}, it answered {text[:120]!r}'
                )
        finally:
            self._close_sync(client)

    def info(self) -> ModelInfo:
        """The base model and the adapters (configured, or listed at :meth:`start`)."""
        return ModelInfo(base_model=self.config.model, adapters=self._adapters or ())

    async def aclose(self) -> None:
        """Closes the client (and with it an injected ``http_client``)."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- requests ----------------------------------------------------------------------------

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Validates every request, then sends them all concurrently.

        Adapters are checked before sending when they are known (after :meth:`start`); a
        server's 404 for an adapter is the same refusal. ``batch_size`` is the number of this
        engine's requests in flight when the row was sent, its own call's included.

        Raises:
            UnknownAdapterError: a request names an adapter the server does not have.
            InvalidSchemaError: a request's schema is not a valid JSON schema.
        """
        arrival = time.perf_counter()
        requests = list(requests)
        check_requests(requests, self._adapters)
        if not requests:
            return []
        client = self._ensure_client()
        self._in_flight += len(requests)
        batch_size = self._in_flight
        try:
            outcomes = await asyncio.gather(
                *(self._run(client, r, arrival, batch_size) for r in requests),
                return_exceptions=True,
            )
        finally:
            self._in_flight -= len(requests)
        results: list[LLMResult] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
        return results

    async def _run(
        self, client: openai.AsyncOpenAI, request: LLMRequest, arrival: float, batch_size: int
    ) -> LLMResult:
        """One request; every failure but an unknown adapter becomes a failed result, marked
        ``backend_error`` where it is the server's (unreachable, no answer in time, HTTP 5xx,
        408 or 429), not where it is the request's or the answer's (another 4xx, an answer that
        does not validate)."""
        timeout = self.config.timeout_s

        def failed(message: str, backend: bool = False) -> LLMResult:
            elapsed = time.perf_counter() - arrival
            return LLMResult.failure(
                request,
                message,
                latency_s=elapsed,
                engine_s=elapsed,
                batch_size=batch_size,
                backend_error=backend,
            )

        try:
            async with asyncio.timeout(timeout):
                if request.messages is not None:
                    kwargs = chat_kwargs(request, self.config.model, self.config.seed)
                    chat = await client.chat.completions.create(**kwargs)
                    elapsed = time.perf_counter() - arrival
                    return result_from_chat(chat, request, latency_s=elapsed, batch_size=batch_size)
                kwargs = completion_kwargs(request, self.config.model, self.config.seed)
                completion = await client.completions.create(**kwargs)
                elapsed = time.perf_counter() - arrival
                return result_from_completion(
                    completion, request, latency_s=elapsed, batch_size=batch_size
                )
        except openai.NotFoundError as exc:
            if request.adapter is not None and names_model(exc, request.adapter):
                raise UnknownAdapterError(
                    request.adapter, self._adapters or (), request_id=request.request_id
                ) from None
            return failed(f"HTTP 404 from the server: {server_message(exc)}")
        except openai.APIStatusError as exc:
            message = f"HTTP {exc.status_code} from the server: {server_message(exc)}"
            return failed(message, backend=is_backend_status(exc.status_code))
        except (openai.APITimeoutError, TimeoutError):
            return failed(f"no answer from the server within {timeout:g} s", backend=True)
        except openai.APIConnectionError as exc:
            cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            return failed(f"cannot reach the server: {exc}{cause}", backend=True)
        except Exception as exc:  # a malformed response, ...: this row fails, not the call
            return failed(f"request failed: {type(exc).__name__}: {exc}")
