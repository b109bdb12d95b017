"""The limits on one request, each refused with HTTP 400 and an OpenAI error body naming it:
the body's bytes, max_tokens, the model's context (by characters, then by tokens), a schema's
counted repetitions; and the limits on decoding: a deadline, a caller that goes away."""

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving import deployments
from serving.config import EngineConfig
from serving.engines.hf import HFEngine
from serving.schema import check_schema
from serving.server import LLMServer
from serving.types import ContextLengthError, InvalidSchemaError, LLMRequest, RequestLimitError

CONTEXT = 64  # the tiny model's context, cut short
LIMITS = {"max_request_bytes": 2000, "max_tokens_limit": 100, "max_model_len": CONTEXT}
PROMPT = "At 07:30 the agent walks"
JSON = {"content-type": "application/json"}


def _config(model_dir: Path, **settings: Any) -> EngineConfig:
    adapters = {n: str(model_dir / "adapters" / n) for n in ("alice", "bob")}
    return EngineConfig(model=str(model_dir), adapters=adapters, prefix_cache_mb=0, **settings)


@pytest.fixture(scope="module")
def service(tiny_model_dir: Path) -> Any:
    """The LLM service as Serve runs it (its own class, not the Serve wrapper), no Ray."""
    config = _config(tiny_model_dir, **LIMITS)
    service_class = deployments.LLMService.__mro__[1]  # what @serve.ingress wrapped
    return service_class(config, None, HFEngine(config))


@pytest.fixture
def http(service: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The service's HTTP app, its routes bound to ``service`` as Serve's replica binds them."""
    from ray import serve

    monkeypatch.setattr(
        serve, "get_replica_context", lambda: SimpleNamespace(servable_object=service)
    )
    yield TestClient(deployments.api)


def _refused(response: Any, message: str, param: str | None, code: str | None) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def _tokens(service: Any, request: LLMRequest) -> int:
    return len(service.engine._encode(request))


# -- the HTTP body ------------------------------------------------------------------------------


def test_a_body_over_max_request_bytes_is_refused_before_it_is_read(http: TestClient) -> None:
    body = b'{"model": "base", "prompt": "' + b"x" * 20_000_000 + b'"}'  # 20 MB
    started = time.perf_counter()
    response = http.post("/v1/completions", content=body, headers=JSON)
    message = (
        "the request body is 20,000,031 bytes; this server accepts at most 2,000 bytes "
        "(max_request_bytes)"
    )
    _refused(response, message, None, "request_limit_exceeded")
    assert time.perf_counter() - started < 5


def test_a_chunked_body_over_max_request_bytes_is_refused(http: TestClient) -> None:
    chunks = iter([b'{"model": "base", "prompt": "', b"x" * 3000, b'"}'])  # no Content-Length
    response = http.post("/v1/completions", content=chunks, headers=JSON)
    message = (
        "the request body is more than 2,000 bytes; this server accepts at most 2,000 bytes "
        "(max_request_bytes)"
    )
    _refused(response, message, None, "request_limit_exceeded")


def test_a_chunked_body_within_the_limit_is_served(http: TestClient) -> None:
    chunks = iter([b'{"model": "base", "prompt": "', PROMPT.encode(), b'", "max_tokens": 3}'])
    response = http.post("/v1/completions", content=chunks, headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 3


# -- max_tokens and the context -----------------------------------------------------------------


def test_max_tokens_over_the_servers_limit_is_refused(http: TestClient) -> None:
    response = http.post(
        "/v1/completions", json={"model": "base", "prompt": "hi", "max_tokens": 101}
    )
    message = "max_tokens is 101; this server allows at most 100 (max_tokens_limit)"
    _refused(response, message, "max_tokens", "request_limit_exceeded")
    billion = {
        "model": "base",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10**9,
    }
    response = http.post("/v1/chat/completions", json=billion)
    message = "max_tokens is 1,000,000,000; this server allows at most 100 (max_tokens_limit)"
    _refused(response, message, "max_tokens", "request_limit_exceeded")


def test_a_prompt_and_max_tokens_over_the_context_are_refused(
    http: TestClient, service: Any
) -> None:
    n = _tokens(service, LLMRequest(prompt=PROMPT))
    body = {"model": "alice", "prompt": PROMPT, "max_tokens": CONTEXT - n + 1, "temperature": 0}
    response = http.post("/v1/completions", json=body)
    wanted = CONTEXT - n + 1
    message = (
        f"max_tokens is too large: {wanted}; this model's context is {CONTEXT} tokens and the "
        f"prompt is {n} tokens ({wanted} > {CONTEXT} - {n})"
    )
    _refused(response, message, "max_tokens", "context_length_exceeded")
    response = http.post("/v1/completions", json={**body, "max_tokens": CONTEXT - n})  # fits
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == n


def test_a_prompt_alone_over_the_context_is_refused(http: TestClient, service: Any) -> None:
    content = "the market " * 25  # within the characters the context could hold
    request = LLMRequest.chat([("user", content)])
    n = _tokens(service, request)
    assert n >= CONTEXT and len(content) <= service.engine._max_prompt_chars
    body = {"model": "base", "messages": [{"role": "user", "content": content}], "max_tokens": 1}
    response = http.post("/v1/chat/completions", json=body)
    message = f"the prompt is {n} tokens; this model's context is {CONTEXT} tokens"
    _refused(response, message, "messages", "context_length_exceeded")


def test_a_prompt_of_more_characters_than_the_context_holds_is_refused_untokenized(
    http: TestClient, service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_encode(request: LLMRequest) -> list[int]:
        raise AssertionError("tokenized")

    monkeypatch.setattr(service.engine, "_encode", must_not_encode)
    most = service.engine._max_prompt_chars
    assert most == CONTEXT * 10  # the tiny vocabulary's longest token has 10 characters
    body = {"model": "base", "prompt": "x" * (most + 1), "max_tokens": 1}
    response = http.post("/v1/completions", json=body)
    message = (
        f"the prompt is {most + 1} characters; this model's context is {CONTEXT} tokens, at "
        f"most {most} characters"
    )
    _refused(response, message, "prompt", "context_length_exceeded")


def test_an_omitted_max_tokens_takes_what_the_context_leaves(
    http: TestClient, service: Any
) -> None:
    content = "the market " * 10
    n = _tokens(service, LLMRequest.chat([("user", content)]))
    body = {"model": "base", "messages": [{"role": "user", "content": content}]}
    response = http.post("/v1/chat/completions", json={**body, "temperature": 0})
    assert response.status_code == 200, response.text  # as vLLM: not refused, cut
    assert response.json()["usage"]["prompt_tokens"] == n
    assert 0 < response.json()["usage"]["completion_tokens"] <= CONTEXT - n


async def test_the_http_checks_refuse_a_prompt_that_cannot_fit_and_max_tokens_over_the_limit(
    service: Any,
) -> None:
    server: LLMServer = service
    too_long = LLMRequest(prompt="y" * 1_000_000, max_tokens=4)  # 1 MB: refused by its length
    started = time.perf_counter()
    with pytest.raises(ContextLengthError) as context:
        await server.check_http([LLMRequest(prompt=PROMPT, max_tokens=4), too_long])
    assert time.perf_counter() - started < 0.5
    assert (context.value.status_code, context.value.param) == (400, "prompt")
    assert context.value.message == (
        "the prompt is 1,000,000 characters; this model's context is 64 tokens, at most 640 "
        "characters"
    )
    with pytest.raises(RequestLimitError) as limit:
        await server.check_http([LLMRequest(prompt=PROMPT, max_tokens=101)])
    assert (limit.value.status_code, limit.value.param) == (400, "max_tokens")
    with pytest.raises(ContextLengthError, match=r"max_tokens is too large: 64;"):
        await server.check_http([LLMRequest(prompt=PROMPT, max_tokens=64)], True)


async def test_through_the_handle_a_prompt_that_cannot_fit_fails_its_row_alone(
    service: Any,
) -> None:
    server: LLMServer = service  # the agents' requests: one bad row never fails the others
    ok, too_long = await server.generate(
        [LLMRequest(prompt=PROMPT, max_tokens=4), LLMRequest(prompt="y" * 1_000_000)]
    )
    assert ok.ok and ok.completion_tokens == 4
    assert too_long.finish_reason == "error"
    assert "characters; this model's context is 64 tokens" in (too_long.error or "")


async def test_through_the_handle_max_tokens_past_the_context_and_limit_ends_with_length(
    service: Any,
) -> None:
    server: LLMServer = service  # as vLLM's LLM: the answer ends where the context does
    n = _tokens(service, LLMRequest(prompt=PROMPT))
    for max_tokens in (CONTEXT, 10 * CONTEXT):  # the second over max_tokens_limit (100)
        [result] = await server.generate([LLMRequest(prompt=PROMPT, max_tokens=max_tokens)])
        assert result.ok and result.finish_reason in ("length", "stop")
        assert result.completion_tokens <= CONTEXT - n


async def test_the_engine_alone_fails_a_prompt_that_cannot_fit_alone(service: Any) -> None:
    engine: HFEngine = service.engine
    passes = engine.stats.passes
    ok, chars, tokens = await engine.generate(
        [
            LLMRequest(prompt=PROMPT, max_tokens=3),
            LLMRequest(prompt="z" * 1_000_000),
            LLMRequest(prompt="the market " * 40),  # 440 characters, over 64 tokens
        ]
    )
    assert ok.ok and ok.completion_tokens == 3
    assert chars.finish_reason == tokens.finish_reason == "error"
    assert "characters; this model's context is 64 tokens" in (chars.error or "")
    assert f"tokens; this model's context is {CONTEXT} tokens" in (tokens.error or "")
    assert engine.stats.passes - passes == ok.completion_tokens  # the failed rows ran no pass


# -- schemas ------------------------------------------------------------------------------------


def test_a_schema_lower_bound_over_the_limit_is_refused(http: TestClient) -> None:
    body = {
        "model": "base",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "string", "minLength": 10**9}},
        },
    }
    response = http.post("/v1/chat/completions", json=body)
    message = "the JSON schema's minLength at /minLength is 1,000,000,000; at most 128 is accepted"
    _refused(response, message, "response_format", None)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "array", "minItems": 129}}},
            "minItems at /properties/a/minItems is 129; at most 128",
        ),
        ({"$defs": {"s": {"type": "string", "maxLength": 8193}}}, "maxLength at /$defs/s/max"),
        (
            {"type": "object", "properties": {"enum": {"type": "string", "minLength": 1e9}}},
            "minLength at /properties/enum/minLength is 1,000,000,000.0",
        ),
        ({"anyOf": [{"type": "object", "minProperties": 200}]}, "minProperties at /anyOf/0/"),
    ],
)
def test_schema_repetition_bounds_are_found_anywhere(schema: dict, message: str) -> None:
    with pytest.raises(InvalidSchemaError, match="at most") as info:
        check_schema(schema)
    assert message in info.value.message and info.value.param == "response_format"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 128, "maxLength": 8192},
        {"type": "object", "properties": {"minLength": {"type": "integer"}}},  # a property name
        {"type": "string", "enum": [{"minLength": 10**9}]},  # data, not a schema
    ],
)
def test_schemas_within_the_bounds_pass(schema: dict) -> None:
    check_schema(schema)


# -- decoding -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timed_engine(start_tiny_engine: Callable[..., HFEngine]) -> HFEngine:
    return start_tiny_engine(max_decode_s=0.5, prefix_cache_mb=0)


async def test_a_row_decoding_past_max_decode_s_ends_with_length(timed_engine: HFEngine) -> None:
    expired = timed_engine.stats.expired
    long_task = asyncio.create_task(
        timed_engine.generate([LLMRequest(prompt=PROMPT, max_tokens=2000)])
    )
    [short] = await timed_engine.generate([LLMRequest(prompt="At noon", max_tokens=4)])
    [long] = await long_task
    assert short.ok and (short.finish_reason, short.completion_tokens) == ("length", 4)
    assert long.ok and long.finish_reason == "length"
    assert 0 < long.completion_tokens < 2000 and long.text
    assert 0.5 <= long.engine_s < 2.0
    assert timed_engine.stats.expired == expired + 1


@pytest.fixture(scope="module")
def engine(start_tiny_engine: Callable[..., HFEngine]) -> HFEngine:
    return start_tiny_engine(prefix_cache_mb=0)


async def _passes_reach(engine: HFEngine, n: int) -> None:
    while engine.stats.passes < n:
        await asyncio.sleep(0.001)


async def test_a_cancelled_caller_leaves_the_batch_at_the_next_pass(engine: HFEngine) -> None:
    requests = [
        LLMRequest(prompt=f"{PROMPT} to the {place}", max_tokens=200)
        for place in ("bakery", "river", "library")
    ]
    alone = [(await engine.generate([r]))[0] for r in requests[1:]]
    cancelled = engine.stats.cancelled
    tasks = [asyncio.create_task(engine.generate([r])) for r in requests]
    await _passes_reach(engine, engine.stats.passes + 20)
    assert engine.batch_sizes[-1] == 3
    tasks[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    at = engine.stats.passes  # a pass already under way may still hold the row; none after it
    others = [(await task)[0] for task in tasks[1:]]
    assert engine.batch_sizes[at + 1 : at + 20] == [2] * 19
    assert engine.stats.cancelled == cancelled + 1
    for mixed, single in zip(others, alone, strict=True):  # the other rows are unaffected
        assert (mixed.text, mixed.completion_tokens) == (single.text, single.completion_tokens)
    assert engine._scheduler.running == [] and engine._scheduler.kv_bytes == 0


# -- every client error, an OpenAI error body ---------------------------------------------------


HI = '"messages": [{"role": "user", "content": "hi"}]'
REF = '"response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "#/x"}}}'


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (f'{HI}, "seed": 18446744073709551616', "seed"),
        (f'{HI}, "temperature": NaN', "temperature"),  # not JSON, but Python's json reads it
        ('"messages": [{"role": "user", "content": "hi \\ud800"}]', "messages[0].content"),
        ('"messages": "hi"', "messages"),
        (f'{HI}, "n": 2', "n"),
        (f'{HI}, "max_tokens": 1.5', "max_tokens"),
        (f"{HI}, {REF}", "response_format"),
    ],
)
def test_client_errors_are_400_with_an_openai_body_naming_the_parameter(
    http: TestClient, fields: str, param: str
) -> None:
    content = '{"model": "base", ' + fields + "}"
    response = http.post("/v1/chat/completions", content=content, headers=JSON)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert param in error["message"] or "'#/x' points nowhere" in error["message"]


def test_bad_json_and_unknown_routes_have_openai_bodies(http: TestClient) -> None:
    response = http.post("/v1/chat/completions", content=b'{"model": ', headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("the body is not valid JSON")
    response = http.get("/v1/nowhere")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "Not Found", "type": "not_found_error", "param": None, "code": None}
    }
