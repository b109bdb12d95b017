"""Which failed rows of the openai engine are the backend's (``LLMResult.backend_error``): a
server that cannot be reached, does not answer in time, or answers HTTP 5xx, 408 or 429 -- not a
4xx refusal or an answer that does not validate. A scripted server behind
``httpx.MockTransport``, as in ``test_openai_engine.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from serving.config import EngineConfig
from serving.engines.openai import OpenAIEngine
from serving.types import LLMRequest, LLMResult
from tests.schemas import IMPORTANCE
from tests.unit.test_openai_engine import _chat_response

BASE = "llama-3-8b"


def _chat(content: str) -> httpx.Response:
    return httpx.Response(200, json=_chat_response(content))


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}})


async def _answer(reply: Callable[[], Any], timeout_s: float = 120.0) -> LLMResult:
    """The engine's one row for a chat request with a schema, the server answering ``reply()``
    (a response, or a coroutine giving one)."""

    async def handle(request: httpx.Request) -> httpx.Response:
        answer = reply()
        return await answer if asyncio.iscoroutine(answer) else answer

    config = EngineConfig(
        engine="openai",
        model=BASE,
        base_url="http://server/v1",
        adapters={"alice": "/a"},  # known: no listing of the server's models
        timeout_s=timeout_s,
    )
    engine = OpenAIEngine(
        config, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle))
    )
    engine.start()
    request = LLMRequest.chat([("user", "Rate your day.")], json_schema=IMPORTANCE)
    [result] = await engine.generate([request])
    await engine.aclose()
    return result


def _raise(exc: Exception) -> Callable[[], Any]:
    def reply() -> Any:
        raise exc

    return reply


@pytest.mark.parametrize(
    "reply, says",
    [
        (lambda: _error(500, "EngineCore encountered an issue"), "HTTP 500"),
        (lambda: httpx.Response(502, text="Bad gateway"), "HTTP 502"),
        (lambda: _error(503, "the engine is dead"), "HTTP 503"),
        (lambda: _error(429, "too many requests"), "HTTP 429"),
        (lambda: _error(408, "request timeout"), "HTTP 408"),
        (_raise(httpx.ConnectError("[Errno 111] Connection refused")), "cannot reach the server"),
        (_raise(httpx.ReadTimeout("read timed out")), "no answer from the server"),
    ],
    ids=["500", "502", "503", "429", "408", "refused", "read-timeout"],
)
async def test_the_servers_failures_are_backend_errors(reply: Callable[[], Any], says: str) -> None:
    result = await _answer(reply)
    assert result.finish_reason == "error" and result.backend_error
    assert says in (result.error or "")


async def test_no_answer_within_the_engines_timeout_is_a_backend_error() -> None:
    async def slow() -> httpx.Response:
        await asyncio.sleep(30)
        return _chat('{"importance": 5}')

    result = await _answer(slow, timeout_s=0.2)
    assert result.backend_error and "0.2 s" in (result.error or "")


@pytest.mark.parametrize(
    "reply, says",
    [
        (lambda: _error(400, "max_tokens is too large"), "HTTP 400"),
        (lambda: _error(404, "Not Found"), "HTTP 404"),
        (lambda: _error(422, "unprocessable"), "HTTP 422"),
        (lambda: _chat("not json at all"), "not valid JSON"),
        (lambda: _chat('{"importance": "very"}'), "schema"),
    ],
    ids=["400", "404", "422", "invalid-json", "invalid-schema"],
)
async def test_refusals_and_bad_answers_are_not_backend_errors(
    reply: Callable[[], Any], says: str
) -> None:
    result = await _answer(reply)
    assert result.finish_reason == "error" and not result.backend_error
    assert says in (result.error or "")


async def test_an_answer_is_not_an_error() -> None:
    result = await _answer(lambda: _chat('{"importance": 5}'))
    assert result.ok and not result.backend_error and result.parsed == {"importance": 5}
