"""The hf engine on the tiny model: mixed adapters, constrained JSON, batching, sampling, stops."""

import asyncio
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from serving.config import EngineConfig
from serving.engines import make_engine
from serving.engines.hf import HFEngine
from serving.llm import Engine, ModelInfo
from serving.types import InvalidSchemaError, LLMRequest, LLMResult, UnknownAdapterError
from tests.schemas import IMPORTANCE, PLAN

ADAPTERS = (None, "alice", "bob")
TOPICS = (
    "the morning at the cafe",
    "a walk in the park with bob",
    "what to cook tonight",
    "the library opens at 09:00",
    "a quiet evening",
    "meeting the neighbor",
    "plans for the market",
    "painting by the river",
)


def _config(model_dir: Path, **kwargs: Any) -> EngineConfig:
    adapters = {n: str(model_dir / "adapters" / n) for n in ("alice", "bob")}
    return EngineConfig(engine="hf", model=str(model_dir), adapters=adapters, **kwargs)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> HFEngine:
    engine = HFEngine(_config(tiny_model_dir, batch_wait_ms=5))
    engine.start()
    return engine


def _chat(topic: str, adapter: str | None = None, **kwargs: Any) -> LLMRequest:
    return LLMRequest.chat(
        [("system", "You are an agent in a small town."), ("user", f"Tell me about {topic}.")],
        adapter=adapter,
        **kwargs,
    )


async def _alone(engine: HFEngine, request: LLMRequest) -> LLMResult:
    [result] = await engine.generate([request])
    assert result.batch_size == 1
    return result


def test_is_an_engine_and_reports_its_adapters(engine: HFEngine, tiny_model_dir: Path):
    assert isinstance(engine, Engine)
    assert engine.info() == ModelInfo(base_model=str(tiny_model_dir), adapters=("alice", "bob"))


async def test_tiny_model_by_name_serves_its_own_adapters(tiny_cache: Path):
    engine = make_engine(EngineConfig(engine="hf", model="tiny"))
    engine.start()
    assert engine.info() == ModelInfo(base_model="tiny", adapters=("alice", "bob"))
    [result] = await engine.generate([_chat("tea", "bob", max_tokens=4)])
    assert result.ok and result.completion_tokens == 4


async def test_mixed_adapter_batch_equals_each_row_alone(engine: HFEngine):
    requests = [
        _chat(topic, adapter, max_tokens=16) for topic in TOPICS[:4] for adapter in ADAPTERS
    ]
    requests.append(LLMRequest(prompt="At 07:30 the agent", adapter="alice", max_tokens=16))
    batched = await engine.generate(requests)
    assert {r.batch_size for r in batched} == {len(requests)}
    for request, result in zip(requests, batched, strict=True):
        alone = await _alone(engine, request)
        assert result.ok and result.adapter == request.adapter
        assert (result.text, result.completion_tokens) == (alone.text, alone.completion_tokens)
    by_adapter = {r.adapter: r.text for r in batched[:3]}
    assert len(set(by_adapter.values())) == 3  # the adapters really differ


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize(("schema", "max_tokens"), [(IMPORTANCE, 16), (PLAN, 400)])
async def test_schema_answers_always_validate(
    engine: HFEngine, schema: dict, max_tokens: int, temperature: float
):
    requests = [
        _chat(
            f"{topic} (try {i})",
            ADAPTERS[i % 3],
            json_schema=schema,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=i,
        )
        for i, topic in enumerate(TOPICS * 3)
    ]
    results = await engine.generate(requests)
    for result in results:
        assert result.ok, (result.error, result.text)
        assert result.finish_reason == "stop"
        jsonschema.validate(result.parsed, schema)
        for entry in result.parsed.get("entries", []):
            assert list(entry) == ["start", "activity"]  # written in the schema's order
    if temperature > 0:
        assert len({r.text for r in results}) > 1


async def test_unknown_adapter_is_refused_naming_it_before_decoding(engine: HFEngine):
    executed = len(engine.batch_sizes)
    with pytest.raises(UnknownAdapterError, match=r"'carol'.*alice, bob") as info:
        await engine.generate([_chat("tea"), _chat("tea", "carol")])
    assert info.value.available == ("alice", "bob")
    assert len(engine.batch_sizes) == executed


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "nonsense"},
        {"type": "object", "properties": {"x": {"type": "string", "pattern": "(unclosed"}}},
        {"type": "string", "pattern": "(?<=a)b"},  # valid, but xgrammar cannot compile it
        {"$ref": "#/$defs/missing"},
    ],
)
async def test_invalid_schema_is_refused_before_decoding(engine: HFEngine, schema: dict):
    executed = len(engine.batch_sizes)
    with pytest.raises(InvalidSchemaError, match="schema"):
        await engine.generate([_chat("tea"), _chat("tea", json_schema=schema)])
    assert len(engine.batch_sizes) == executed


async def test_concurrent_calls_are_batched_and_answer_as_alone(engine: HFEngine):
    requests = [_chat(TOPICS[i % 8], ADAPTERS[i % 3], max_tokens=12) for i in range(16)]
    executed = len(engine.batch_sizes)
    answers = await asyncio.gather(*(engine.generate([r]) for r in requests))
    assert max(engine.batch_sizes[executed:]) > 1
    for request, [result] in zip(requests, answers, strict=True):
        assert result.batch_size > 1
        assert result.latency_s >= result.engine_s > 0
        assert result.text == (await _alone(engine, request)).text


async def test_max_tokens_ends_with_length(engine: HFEngine):
    [result] = await engine.generate([_chat("tea", max_tokens=5)])
    assert (result.finish_reason, result.completion_tokens) == ("length", 5)
    assert result.prompt_tokens > 10 and result.error is None


async def test_stop_string_cuts_the_text_before_it(engine: HFEngine):
    full = await _alone(engine, _chat("the market", "bob", max_tokens=24))
    stop = full.text[6:9]
    expected = full.text[: full.text.index(stop)]
    [result] = await engine.generate([_chat("the market", "bob", max_tokens=24, stop=("zz", stop))])
    assert (result.text, result.finish_reason) == (expected, "stop")
    assert result.completion_tokens < full.completion_tokens


async def test_seeded_sampling_is_reproducible_across_batch_compositions(engine: HFEngine):
    target = _chat("the river", "alice", max_tokens=16, temperature=1.0, top_p=0.9, seed=7)
    alone = await _alone(engine, target)
    others = [
        _chat(t, ADAPTERS[i % 3], max_tokens=20, temperature=1.0) for i, t in enumerate(TOPICS)
    ]
    mixed = await engine.generate([*others[:3], target, *others[3:]])
    assert mixed[3].text == alone.text and mixed[3].batch_size == len(others) + 1
    derived = await _alone(engine, _chat("the river", "alice", max_tokens=16, temperature=1.0))
    derived_again = await _alone(
        engine, _chat("the river", "alice", max_tokens=16, temperature=1.0)
    )
    assert derived.text == derived_again.text  # seed derived from the engine seed and content
    different = [
        await _alone(engine, _chat("the river", "alice", max_tokens=16, temperature=1.0, seed=s))
        for s in (1, 2, 3)
    ]
    assert len({alone.text, *(r.text for r in different)}) > 1


class _FailingEngine(HFEngine):
    """Fails to encode a prompt that says "fail", and fails any forward pass holding a row
    whose prompt says "crash"."""

    def _encode(self, request: LLMRequest) -> list[int]:
        if request.prompt == "fail":
            raise RuntimeError("boom")
        return super()._encode(request)

    def _run_forward(self, plan: list, segments: list) -> Any:
        if any(row.request.prompt == "crash" for row, _ in plan):
            raise RuntimeError("bang")
        return super()._run_forward(plan, segments)


@pytest.fixture(scope="module")
def failing_engine(tiny_model_dir: Path) -> HFEngine:
    engine = _FailingEngine(_config(tiny_model_dir))
    engine.start()
    return engine


async def test_a_request_that_cannot_be_encoded_fails_alone(failing_engine: HFEngine):
    requests = [LLMRequest(prompt="fail"), _chat("tea", max_tokens=4)]
    results = await asyncio.wait_for(failing_engine.generate(requests), timeout=30)
    assert [r.finish_reason for r in results] == ["error", "length"]
    assert "boom" in (results[0].error or "")
    assert [r.request_id for r in results] == [r.request_id for r in requests]


async def test_a_failed_forward_pass_fails_every_row_in_it(failing_engine: HFEngine):
    requests = [LLMRequest(prompt="crash"), _chat("tea", max_tokens=4)]
    results = await asyncio.wait_for(failing_engine.generate(requests), timeout=30)
    assert [r.finish_reason for r in results] == ["error", "error"]
    assert all("bang" in (r.error or "") for r in results)
    assert failing_engine._scheduler.running == []  # their KV is freed
    [ok] = await failing_engine.generate([_chat("tea", max_tokens=4)])  # the engine lives on
    assert ok.ok


async def test_grammars_compile_off_the_loop_into_a_bounded_lru(
    engine: HFEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.engines.hf as hf

    monkeypatch.setattr(hf, "GRAMMAR_CACHE_SIZE", 2)
    schemas = [
        {"type": "object", "properties": {name: {"enum": ["x", "y"]}}, "required": [name]}
        for name in ("a", "b", "c")
    ]
    for schema in (*schemas, schemas[1]):
        [result] = await engine.generate([_chat("tea", json_schema=schema, max_tokens=16)])
        assert result.ok, result.error
    kept = list(engine._grammars)
    assert len(kept) == 2 and kept[-1] == hf.grammar_key(schemas[1])  # "a" went first
    assert hf.grammar_key(schemas[0]) not in kept
