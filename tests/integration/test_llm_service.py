"""The LLM service on local Ray Serve: handles from actors, batching, the OpenAI HTTP app."""

import asyncio
import json
import re
import time

import httpx
import jsonschema
import openai
import pytest
import ray

from serving.config import EngineConfig
from serving.engines.openai import OpenAIEngine
from serving.types import LLMRequest, UnknownAdapterError
from tests.integration.conftest import API_KEY, Services
from tests.schemas import IMPORTANCE, PLAN

pytestmark = pytest.mark.integration

PROMPTS = ["the baker opens the shop", "a letter arrives at noon", "rain on the town square"]


@ray.remote(num_cpus=0)
class Caller:
    """An agent-like actor calling the LLM service through its handle."""

    async def burst(self, requests: list[LLMRequest]) -> list:
        from serving.clients import ServeLLM

        llm = ServeLLM()
        answers = await asyncio.gather(*[llm.generate([r]) for r in requests])
        return [a[0] for a in answers]


def _req(prompt: str, adapter: str | None, **kw) -> LLMRequest:
    kw.setdefault("max_tokens", 12)
    return LLMRequest.chat([("user", prompt)], adapter=adapter, **kw)


async def test_concurrent_handle_calls_from_an_actor_are_batched(services: Services) -> None:
    adapters = [None, "alice", "bob"]
    requests = [_req(PROMPTS[i % 3], adapters[i % 3]) for i in range(48)]
    before = len(await services.llm.batch_sizes())
    results = await Caller.remote().burst.remote(requests)  # type: ignore[attr-defined]

    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    executed = (await services.llm.batch_sizes())[before:]  # rows of each forward pass
    assert max(executed) > 1
    assert len(executed) < sum(r.completion_tokens for r in results)  # passes were shared
    assert max(r.batch_size for r in results) == max(executed)
    # Batching never changes an answer: each equals the same request sent alone.
    for request, result in list(zip(requests, results, strict=True))[:6]:
        (alone,) = await services.llm.generate([request])
        assert alone.text == result.text
        assert alone.adapter == request.adapter


async def test_adapters_change_the_answer(services: Services) -> None:
    texts = {}
    for adapter in (None, "alice", "bob"):
        (r,) = await services.llm.generate([_req(PROMPTS[0], adapter, max_tokens=16)])
        texts[adapter] = r.text
    assert len(set(texts.values())) == 3


async def test_schema_answers_validate_through_the_handle(services: Services) -> None:
    requests = [
        _req(p, a, json_schema=s, max_tokens=200, temperature=t, seed=i)
        for i, (p, a, s, t) in enumerate(
            (p, a, s, t)
            for p in PROMPTS
            for a in (None, "alice")
            for s in (IMPORTANCE, PLAN)
            for t in (0.0, 1.0)
        )
    ]
    results = await services.llm.generate(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        jsonschema.validate(result.parsed, request.json_schema)


async def test_unknown_adapter_through_the_handle_names_it(services: Services) -> None:
    with pytest.raises(UnknownAdapterError) as info:
        await services.llm.generate([_req("hi", "carol")])
    assert info.value.name == "carol"
    assert set(info.value.available) == {"alice", "bob"}


@pytest.fixture
def client(services: Services) -> openai.OpenAI:
    return openai.OpenAI(base_url=services.base_url, api_key=API_KEY, max_retries=0)


def test_openai_client_lists_the_base_model_and_every_adapter(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tiny", "alice", "bob"]


async def test_openai_chat_per_adapter_equals_the_handle(
    client: openai.OpenAI, services: Services
) -> None:
    messages = [{"role": "user", "content": PROMPTS[1]}]
    for model, adapter in (("alice", "alice"), ("bob", "bob"), ("tiny", None)):
        http = client.chat.completions.create(
            model=model, messages=messages, max_tokens=12, temperature=0
        )
        (direct,) = await services.llm.generate([_req(PROMPTS[1], adapter)])
        assert http.choices[0].message.content == direct.text
        assert http.usage is not None
        assert http.usage.completion_tokens == direct.completion_tokens > 0


def test_openai_usage_reports_prompt_tokens_from_the_prefix_cache(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Who keeps the bakery on the square, and since when?"}]
    first, second = (
        client.chat.completions.create(model="bob", messages=messages, max_tokens=4, temperature=0)
        for _ in range(2)
    )
    assert first.usage is not None and second.usage is not None
    assert second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == second.usage.prompt_tokens - 1
    assert second.choices[0].message.content == first.choices[0].message.content


def test_openai_json_schema_answers_validate(client: openai.OpenAI) -> None:
    for model in ("tiny", "alice", "bob"):
        for schema in (IMPORTANCE, PLAN):
            answer = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "rate this"}],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": True},
                },
                max_tokens=200,
                temperature=0.7,
                seed=3,
            )
            jsonschema.validate(json.loads(answer.choices[0].message.content or ""), schema)


def test_openai_completions(client: openai.OpenAI) -> None:
    answer = client.completions.create(
        model="bob", prompt=["once upon", "a time"], max_tokens=8, temperature=0
    )
    assert len(answer.choices) == 2
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_openai_errors(client: openai.OpenAI, services: Services) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="carol", messages=messages)
    body = missing.value.response.json()["error"]
    assert "carol" in body["message"] and "alice" in body["message"]
    assert body["type"] == "not_found_error"

    for bad in ("../alice", "a/b"):
        with pytest.raises(openai.BadRequestError, match="invalid adapter name"):
            client.chat.completions.create(model=bad, messages=messages)

    with pytest.raises(openai.BadRequestError, match="invalid JSON schema"):
        client.chat.completions.create(
            model="alice",
            messages=messages,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": {"type": "nonsense"}},
            },
        )

    for param, value in (
        ("max_tokens", 0),
        ("temperature", -1.0),
        ("top_p", 1.5),
        ("seed", 2**64),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="alice", messages=messages, **{param: value})
        body = refused.value.response.json()["error"]
        assert body["param"] == param and param in body["message"], body
    lone_surrogate = httpx.post(  # JSON may carry one; the request fails alone, as a 400
        f"{services.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        content='{"model": "alice", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
    )
    assert lone_surrogate.status_code == 400, lone_surrogate.text
    assert lone_surrogate.json()["error"]["param"] == "messages[0].content"

    anonymous = httpx.get(f"{services.base_url}/models")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    wrong = openai.OpenAI(base_url=services.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def _chat_body(content: str = "hi", **fields: object) -> dict:
    return {"model": "alice", "messages": [{"role": "user", "content": content}], **fields}


async def test_bad_requests_fail_alone_among_good_ones(services: Services) -> None:
    """Bad requests sent with good ones: every bad one is a 400 naming its parameter, before
    it joins a batch; every good one is answered."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    msg = '"messages": [{"role": "user", "content": "hi"}]'
    ref = '"response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "#/x"}}}'
    bad = [  # (param, the body as sent, what the message says): JSON may carry a lone
        # surrogate, and Python's json reads NaN
        ("seed", f'{{"model": "alice", {msg}, "seed": {2**64}}}', "seed must be in"),
        (
            "messages[0].content",
            '{"model": "alice", "messages": [{"role": "user", "content": "\\ud800"}]}',
            "messages[0].content is not text",
        ),
        ("temperature", f'{{"model": "alice", {msg}, "temperature": NaN}}', "temperature must"),
        ("response_format", f'{{"model": "alice", {msg}, {ref}}}', "'#/x' points nowhere"),
        (
            "messages",
            json.dumps(_chat_body("the market " * 80_000, max_tokens=4)),  # 880 kB
            "the prompt is 880,000 characters; this model's context is 2048 tokens",
        ),
        ("max_tokens", json.dumps(_chat_body(max_tokens=10**9)), "max_tokens is 1,000,000,000;"),
        (None, json.dumps(_chat_body("x" * 20_000_000)), "(max_request_bytes)"),  # 20 MB
    ]
    good = [
        json.dumps(_chat_body(f"{PROMPTS[i % 3]} ({i})", max_tokens=12, temperature=0))
        for i in range(10)
    ]
    url = f"{services.base_url}/chat/completions"
    bodies = [body for _, body, _ in bad] + good
    async with httpx.AsyncClient(timeout=120) as client:
        answers = await asyncio.gather(
            *(client.post(url, content=body, headers=headers) for body in bodies)
        )
    for (param, _, says), answer in zip(bad, answers, strict=False):
        assert answer.status_code == 400, (param, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param and says in error["message"], error
    for answer in answers[len(bad) :]:
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] > 0


async def test_a_client_that_disconnects_stops_its_decoding(services: Services) -> None:
    """Serve cancels the handler of a client that went away (Ray 2.60), and the engine drops
    its row before its next pass."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "tiny", "prompt": "At 07:30 the agent walks", "max_tokens": 2000}
    body["temperature"] = 0  # the base model writes its 2,000 tokens (2-3 s) without a stop
    before = len(await services.llm.batch_sizes())
    async with httpx.AsyncClient(timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{services.base_url}/completions", json=body, headers=headers)
    gone = time.monotonic()
    passes = len(await services.llm.batch_sizes())
    while True:  # until no pass runs any more
        await asyncio.sleep(0.5)
        now = len(await services.llm.batch_sizes())
        if now == passes:
            break
        passes = now
        assert time.monotonic() - gone < 10, "still decoding"
    assert 0 < passes - before < 1500  # it decoded, and stopped well before its 2,000 tokens


async def test_openai_engine_against_our_http_app(services: Services) -> None:
    engine = OpenAIEngine(
        EngineConfig(engine="openai", model="tiny", base_url=services.base_url, api_key=API_KEY)
    )
    engine.start()
    assert set(engine.info().adapters) == {"alice", "bob"}
    requests = [_req(PROMPTS[2], a) for a in (None, "alice", "bob")]
    requests.append(_req(PROMPTS[2], "alice", json_schema=IMPORTANCE, max_tokens=20))
    remote = await engine.generate(requests)
    direct = await services.llm.generate(requests)
    assert [r.text for r in remote] == [r.text for r in direct]
    assert remote[3].parsed == direct[3].parsed
    assert re.fullmatch(r"\{.*\}", remote[3].text)


async def test_embedding_service_batches_unit_vectors(services: Services) -> None:
    import numpy as np

    from serving.embedding import MiniLMEmbedder

    texts = [f"memory number {i} about the town" for i in range(40)]
    before = len(await services.embedder.batch_sizes())
    parts = await asyncio.gather(*[services.embedder.embed([t]) for t in texts])
    vectors = np.concatenate(parts)
    assert vectors.shape == (40, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    executed = (await services.embedder.batch_sizes())[before:]
    assert sum(executed) == 40 and max(executed) > 1
    local = MiniLMEmbedder().embed_sync(texts[:3])
    np.testing.assert_allclose(vectors[:3], local, atol=1e-4)


async def test_record_then_replay_through_the_service(services: Services, tmp_path) -> None:
    from serving.wrappers import RecordingLLM, ReplayLLM

    path = tmp_path / "calls.msgpack"
    recorder = RecordingLLM(services.llm, path)
    requests = [_req(p, a, temperature=1.0, seed=5) for p in PROMPTS for a in (None, "bob")]
    requests.append(_req(PROMPTS[0], "alice", json_schema=PLAN, max_tokens=200))
    recorded = await recorder.generate(requests)
    before = await services.llm.batch_sizes()

    replay = ReplayLLM(path)
    again = [
        LLMRequest.from_dict({**r.to_dict(), "request_id": f"new-{i}"})
        for i, r in enumerate(requests)
    ]
    replayed = await replay.generate(again)
    assert await services.llm.batch_sizes() == before  # no engine call
    assert [r.text for r in replayed] == [r.text for r in recorded]
    assert replayed[-1].parsed == recorded[-1].parsed
    assert [r.request_id for r in replayed] == [r.request_id for r in again]
