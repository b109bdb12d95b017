"""The openai engine against a scripted server behind ``httpx.MockTransport``.

The official client does the HTTP work, so these tests see the exact JSON bodies it sends and
how our engine reads what comes back: answers, invalid JSON, 404s, 500s and timeouts.
"""

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from serving.config import EngineConfig
from serving.engines import make_engine
from serving.engines.openai import OpenAIEngine, chat_kwargs, completion_kwargs, result_from_chat
from serving.llm import Engine, ModelInfo
from serving.types import InvalidSchemaError, LLMRequest, UnknownAdapterError
from tests.schemas import IMPORTANCE

BASE = "llama-3-8b"
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": IMPORTANCE, "strict": True},
}


def _chat_response(content: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": BASE,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }


def _completion_response(text: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 0,
        "model": BASE,
        "choices": [{"index": 0, "text": text, "finish_reason": "length", "logprobs": None}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11},
    }


def _error(status: int, message: str, **fields: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, **fields}})


Reply = Callable[[dict[str, Any]], Any]


class Server:
    """A scripted OpenAI-compatible server: records every body, answers with ``reply(body)``
    (a response, a JSON body for 200, or a coroutine for slow answers)."""

    def __init__(self, models: tuple[str, ...] = (BASE, "alice", "bob")) -> None:
        self.models = models
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.reply: Reply = self.default_reply

    @staticmethod
    def default_reply(body: dict[str, Any]) -> Any:
        if "messages" in body:
            answer = '{"importance": 5}' if "response_format" in body else "Hello."
            return _chat_response(answer)
        return _completion_response("a completion")

    def _models(self) -> httpx.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "me"} for m in self.models]
        return httpx.Response(200, json={"object": "list", "data": data})

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith("/models"):
            return self._models()
        body = json.loads(request.content)
        self.bodies.append(body)
        reply = self.reply(body)
        if asyncio.iscoroutine(reply):
            reply = await reply
        return reply if isinstance(reply, httpx.Response) else httpx.Response(200, json=reply)

    def handle_sync(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        assert request.url.path.endswith("/models")
        return self._models()


@pytest.fixture
def server() -> Server:
    return Server()


def _engine(server: Server, start: bool = True, **config: Any) -> OpenAIEngine:
    cfg = EngineConfig(engine="openai", model=BASE, base_url="http://server/v1", **config)
    engine = OpenAIEngine(
        cfg,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server.handle)),
        sync_http_client=httpx.Client(transport=httpx.MockTransport(server.handle_sync)),
    )
    if start:
        engine.start()
    return engine


# -- what the client sends -----------------------------------------------------------------------


async def test_chat_body_for_an_adapter_with_a_schema(server: Server):
    request = LLMRequest.chat(
        [("system", "You are Alice."), ("user", "Rate your day.")],
        adapter="alice",
        json_schema=IMPORTANCE,
        max_tokens=20,
        temperature=0.5,
        top_p=0.9,
        seed=42,
        stop=("\n\n", "END"),
    )
    [result] = await _engine(server).generate([request])
    assert result.ok and result.parsed == {"importance": 5}
    assert server.paths == ["/v1/models", "/v1/chat/completions"]
    assert server.bodies == [
        {
            "model": "alice",
            "messages": [
                {"role": "system", "content": "You are Alice."},
                {"role": "user", "content": "Rate your day."},
            ],
            "max_tokens": 20,
            "temperature": 0.5,
            "top_p": 0.9,
            "seed": 42,
            "stop": ["\n\n", "END"],
            "response_format": RESPONSE_FORMAT,
        }
    ]


async def test_chat_body_for_the_base_model_sends_no_unset_fields(server: Server):
    await _engine(server).generate([LLMRequest.chat([("user", "Hi")])])
    assert server.bodies == [
        {
            "model": BASE,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 256,
            "temperature": 0.0,
            "top_p": 1.0,
        }
    ]


async def test_sampled_requests_without_a_seed_get_a_derived_one(server: Server):
    request = LLMRequest.chat([("user", "Hi")], temperature=0.8)
    await _engine(server, seed=3).generate([request, request])
    seeds = [b["seed"] for b in server.bodies]
    assert seeds[0] == seeds[1] and isinstance(seeds[0], int)
    assert chat_kwargs(request, BASE, base_seed=4)["seed"] != seeds[0]


async def test_prompt_requests_use_completions_with_the_schema_in_the_body(server: Server):
    request = LLMRequest(prompt="Once upon", adapter="bob", json_schema=IMPORTANCE, max_tokens=8)
    [result] = await _engine(server).generate([request])
    assert server.paths[-1] == "/v1/completions"
    assert server.bodies == [
        {
            "model": "bob",
            "prompt": "Once upon",
            "max_tokens": 8,
            "temperature": 0.0,
            "top_p": 1.0,
            "response_format": RESPONSE_FORMAT,
        }
    ]
    # "a completion" is not JSON: a failed row, not an exception
    assert result.finish_reason == "error" and "not valid JSON" in (result.error or "")


def test_kwargs_functions_refuse_the_wrong_kind_of_request():
    with pytest.raises(ValueError):
        chat_kwargs(LLMRequest(prompt="x"), BASE)
    with pytest.raises(ValueError):
        completion_kwargs(LLMRequest.chat([("user", "x")]), BASE)


# -- what comes back -----------------------------------------------------------------------------


async def test_answers_are_parsed_with_usage_and_timing(server: Server):
    [result] = await _engine(server).generate(
        [LLMRequest.chat([("user", "Rate")], json_schema=IMPORTANCE, adapter="bob")]
    )
    assert result.ok and result.parsed == {"importance": 5} and result.text == '{"importance": 5}'
    assert (result.prompt_tokens, result.completion_tokens) == (12, 4)
    assert result.finish_reason == "stop" and result.adapter == "bob"
    assert result.latency_s > 0 and result.engine_s == result.latency_s


async def test_invalid_json_from_the_server_is_a_failed_row(server: Server):
    server.reply = lambda body: _chat_response('{"importance": ')
    [result] = await _engine(server).generate(
        [LLMRequest.chat([("user", "Rate")], json_schema=IMPORTANCE)]
    )
    assert result.finish_reason == "error" and "not valid JSON" in (result.error or "")
    assert result.text == '{"importance": ' and result.parsed is None


async def test_json_that_breaks_the_schema_is_a_failed_row(server: Server):
    server.reply = lambda body: _chat_response('{"importance": 99}')
    [result] = await _engine(server).generate(
        [LLMRequest.chat([("user", "Rate")], json_schema=IMPORTANCE)]
    )
    assert result.finish_reason == "error" and "schema" in (result.error or "")


def test_result_from_chat_maps_length_and_content_filter():
    from openai.types.chat import ChatCompletion

    request = LLMRequest.chat([("user", "x")])
    length = ChatCompletion.model_validate(_chat_response("text", "length"))
    assert result_from_chat(length, request).finish_reason == "length"
    filtered = ChatCompletion.model_validate(_chat_response("", "content_filter"))
    result = result_from_chat(filtered, request)
    assert result.finish_reason == "error" and "filter" in (result.error or "")


# -- errors --------------------------------------------------------------------------------------


async def test_unknown_adapter_is_refused_before_sending(server: Server):
    with pytest.raises(UnknownAdapterError) as info:
        await _engine(server).generate([LLMRequest(prompt="x", adapter="mallory")])
    assert info.value.available == ("alice", "bob")
    assert server.bodies == []


async def test_server_404_for_an_adapter_raises_unknown_adapter(server: Server):
    server.reply = lambda body: (
        _error(404, f"The model `{body['model']}` does not exist.", type="NotFoundError", code=404)
        if body["model"] == "carol"
        else server.default_reply(body)
    )
    # adapters configured (so not listed), but the server does not have carol
    engine = _engine(server, adapters={"alice": "/a", "carol": "/c"})
    requests = [LLMRequest(prompt="x", adapter="alice"), LLMRequest(prompt="y", adapter="carol")]
    with pytest.raises(UnknownAdapterError) as info:
        await engine.generate(requests)
    assert info.value.name == "carol" and info.value.available == ("alice", "carol")
    assert info.value.request_id == requests[1].request_id


async def test_404_not_about_the_model_is_a_failed_row(server: Server):
    server.reply = lambda body: _error(404, "Not Found")
    [result] = await _engine(server).generate([LLMRequest(prompt="x", adapter="alice")])
    assert result.finish_reason == "error" and "404" in (result.error or "")
    assert "Not Found" in (result.error or "")


async def test_server_500_is_a_failed_row_with_its_message(server: Server):
    def reply(body: dict[str, Any]) -> Any:
        if body["model"] == "bob":
            return _error(500, "CUDA out of memory", type="InternalServerError")
        return server.default_reply(body)

    server.reply = reply
    results = await _engine(server).generate(
        [LLMRequest(prompt="a", adapter="bob"), LLMRequest(prompt="b", adapter="alice")]
    )
    failed, fine = results
    assert failed.finish_reason == "error" and failed.adapter == "bob"
    assert "500" in (failed.error or "") and "CUDA out of memory" in (failed.error or "")
    assert fine.ok and fine.text == "a completion"
    assert len(server.bodies) == 2  # no retries: that is the retry wrapper's job


async def test_a_non_json_error_body_is_kept_in_the_message(server: Server):
    server.reply = lambda body: httpx.Response(502, text="Bad gateway")
    [result] = await _engine(server).generate([LLMRequest(prompt="x")])
    assert result.error == "HTTP 502 from the server: Bad gateway"


async def test_an_unreachable_server_is_a_failed_row(server: Server):
    def reply(body: dict[str, Any]) -> Any:
        raise httpx.ConnectError("connection refused")

    server.reply = reply
    [result] = await _engine(server).generate([LLMRequest(prompt="x")])
    assert result.finish_reason == "error" and "connection refused" in (result.error or "")


async def test_a_timeout_is_a_failed_row_and_comes_back_quickly(server: Server):
    async def slow() -> Any:
        await asyncio.sleep(30)
        return _completion_response("too late")

    server.reply = lambda body: slow() if body["prompt"] == "slow" else server.default_reply(body)
    started = time.perf_counter()
    results = await _engine(server, timeout_s=0.2).generate(
        [LLMRequest(prompt="slow"), LLMRequest(prompt="fast")]
    )
    assert time.perf_counter() - started < 3
    slow_row, fast_row = results
    assert slow_row.finish_reason == "error" and "0.2 s" in (slow_row.error or "")
    assert fast_row.ok


async def test_a_transport_timeout_is_a_failed_row(server: Server):
    def reply(body: dict[str, Any]) -> Any:
        raise httpx.ReadTimeout("read timed out")

    server.reply = reply
    [result] = await _engine(server).generate([LLMRequest(prompt="x")])
    assert result.finish_reason == "error" and result.error


async def test_invalid_schema_is_refused_before_sending(server: Server):
    with pytest.raises(InvalidSchemaError):
        await _engine(server).generate(
            [LLMRequest(prompt="x", json_schema={"type": "object", "required": "importance"})]
        )
    assert server.bodies == []


# -- concurrency and discovery -------------------------------------------------------------------


async def test_requests_are_sent_concurrently(server: Server):
    arrived = 0
    all_here = asyncio.Event()

    async def wait_for_all() -> Any:
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            all_here.set()
        await asyncio.wait_for(all_here.wait(), timeout=2)  # sequential sending would time out
        return _completion_response("together")

    server.reply = lambda body: wait_for_all()
    results = await _engine(server).generate([LLMRequest(prompt=p) for p in "abc"])
    assert [r.text for r in results] == ["together"] * 3
    assert [r.batch_size for r in results] == [3, 3, 3]


def test_adapters_are_listed_from_the_server_at_start():
    server = Server(models=(BASE, "bob", "alice", "meta-llama/Other-Model"))
    engine = _engine(server)
    assert isinstance(engine, Engine)
    assert engine.info() == ModelInfo(base_model=BASE, adapters=("alice", "bob"))
    assert server.paths == ["/v1/models"]


def test_configured_adapters_are_not_listed(server: Server):
    engine = _engine(server, adapters={"carol": "/c"})
    assert engine.info().adapters == ("carol",)
    assert server.paths == []


def test_a_server_that_cannot_list_models_fails_start():
    engine = OpenAIEngine(
        EngineConfig(engine="openai", model=BASE, base_url="http://server/v1"),
        sync_http_client=httpx.Client(
            transport=httpx.MockTransport(lambda request: _error(500, "down"))
        ),
    )
    with pytest.raises(ConnectionError, match="cannot list the models"):
        engine.start()


async def test_before_start_adapters_are_unknown_and_the_server_decides(server: Server):
    server.reply = lambda body: _error(404, f"The model `{body['model']}` does not exist.")
    engine = _engine(server, start=False)
    with pytest.raises(UnknownAdapterError) as info:
        await engine.generate([LLMRequest(prompt="x", adapter="zed")])
    assert info.value.name == "zed" and info.value.available == ()
    await engine.aclose()


def test_make_engine_builds_it():
    engine = make_engine(EngineConfig(engine="openai", model=BASE, base_url="http://x/v1"))
    assert isinstance(engine, OpenAIEngine)
