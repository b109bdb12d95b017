"""Continuous batching in the hf engine (tiny model): rows join and leave between passes."""

import asyncio
from typing import Any

import pytest

from serving.engines.hf import HFEngine
from serving.schema import parse_and_validate
from serving.types import LLMRequest, LLMResult
from tests.schemas import PLAN

LONG = LLMRequest(prompt="At 07:30 the agent walks", max_tokens=300)  # runs to its budget


@pytest.fixture(scope="module")
def engine(start_tiny_engine: Any) -> HFEngine:
    return start_tiny_engine(prefix_cache_mb=0)


def _chat(topic: str, adapter: str | None = None, **kwargs: Any) -> LLMRequest:
    return LLMRequest.chat(
        [("system", "You are an agent in a small town."), ("user", f"Tell me about {topic}.")],
        adapter=adapter,
        **kwargs,
    )


async def _passes_reach(engine: HFEngine, n: int) -> None:
    while engine.stats.passes < n:
        await asyncio.sleep(0.001)


async def test_a_short_request_sent_after_a_long_one_finishes_first(engine: HFEngine):
    long_task = asyncio.create_task(engine.generate([LONG]))
    start = engine.stats.passes
    await _passes_reach(engine, start + 20)  # the long one is decoding
    [short] = await engine.generate([_chat("tea", max_tokens=4)])
    assert not long_task.done()
    [long] = await long_task
    assert long.completion_tokens == 300 and short.completion_tokens == 4
    assert short.batch_size == 2 and short.queue_s < long.engine_s
    assert short.latency_s < long.latency_s / 5


async def test_rows_joining_a_running_batch_answer_as_alone(engine: HFEngine):
    joiners = [_chat(t, a, max_tokens=24) for t, a in (("bread", None), ("the river", "alice"))]
    joiners.append(_chat("a walk", "bob", max_tokens=24, temperature=1.0, top_p=0.9, seed=3))
    joiners.append(_chat("the day", "alice", max_tokens=200, json_schema=PLAN))  # jumps forward
    alone = [(await engine.generate([r]))[0] for r in (LONG, *joiners)]
    assert all(r.batch_size == 1 for r in alone)
    long_task = asyncio.create_task(engine.generate([LONG]))
    start = engine.stats.passes
    joined: list[LLMResult] = []
    for i, request in enumerate(joiners):  # each joins at a different point of the long row
        await _passes_reach(engine, start + 10 * (i + 1))
        joined.extend(await engine.generate([request]))
    [long] = await long_task
    for a, b in zip(alone, [long, *joined], strict=True):
        assert b.batch_size >= 2
        assert (b.text, b.completion_tokens) == (a.text, a.completion_tokens)


async def test_finished_rows_leave_and_free_their_kv(engine: HFEngine):
    first_pass = len(engine.batch_sizes)
    requests = [_chat("tea", max_tokens=n) for n in (2, 6, 12)]
    results = await engine.generate(requests)
    assert [r.completion_tokens for r in results] == [2, 6, 12]
    sizes = engine.batch_sizes[first_pass:]
    assert sizes[0] == 3 and sizes[-1] == 1 and sorted(sizes, reverse=True) == sizes
    assert sizes.count(3) == 2 and sizes.count(2) == 4  # no pass computes a finished row
    assert engine._scheduler.running == [] and engine._scheduler.kv_bytes == 0


async def test_kv_is_reserved_per_row_and_the_budget_queues_the_rest(start_tiny_engine: Any):
    small = start_tiny_engine(kv_cache_mb=1, prefix_cache_mb=0)
    per_token = small._forward.spec.bytes_per_token  # 2 layers x 2 x 2 heads x 16 x 4 bytes
    requests = [LLMRequest(prompt=f"At 07:30 the agent {i}", max_tokens=900) for i in range(4)]
    results = await small.generate(requests)
    capacity = max(r.prompt_tokens for r in results) + 900
    fit = (1 << 20) // (capacity * per_token)
    assert 1 <= fit < 4  # the budget lets only some run at once
    assert max(small.batch_sizes) <= fit
    assert sorted(r.queue_length for r in results) == [0, 1, 2, 3]
    assert max(r.queue_s for r in results) > 0.5 * min(r.engine_s for r in results)


async def test_a_long_prompt_is_read_in_chunks_with_the_same_answer(start_tiny_engine: Any):
    chunked = start_tiny_engine(prefill_chunk_tokens=8, prefix_cache_mb=0)
    request = _chat("the market and the library and the river at noon " * 4, max_tokens=16)
    [a] = await chunked.generate([request])
    assert a.prompt_tokens > 40
    assert chunked.stats.passes >= a.prompt_tokens // 8 + a.completion_tokens - 1
    whole = start_tiny_engine(prefill_chunk_tokens=4096, prefix_cache_mb=0)
    [b] = await whole.generate([request])
    assert (a.text, a.completion_tokens) == (b.text, b.completion_tokens)


async def test_a_prompt_longer_than_the_context_fails_alone(start_tiny_engine: Any):
    short_context = start_tiny_engine(max_model_len=32, prefix_cache_mb=0)
    long_prompt = _chat("the market " * 30, max_tokens=4)
    ok_prompt = LLMRequest(prompt="At 07:30", max_tokens=4)
    bad, ok = await short_context.generate([long_prompt, ok_prompt])
    assert bad.finish_reason == "error" and "context is 32" in (bad.error or "")
    assert ok.ok and ok.completion_tokens == 4


async def test_a_cancelled_caller_leaves_the_engine(engine: HFEngine):
    task = asyncio.create_task(engine.generate([LONG]))
    start = engine.stats.passes
    await _passes_reach(engine, start + 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [after] = await engine.generate([_chat("tea", max_tokens=3)])
    assert after.batch_size == 1 and engine._scheduler.running == []


async def test_text_the_grammar_forces_goes_through_the_model_in_one_pass(start_tiny_engine: Any):
    request = _chat("the day", json_schema=PLAN, max_tokens=400)
    answers = {}
    for jump in (True, False):
        engine = start_tiny_engine(prefix_cache_mb=0, jump_forward=jump)
        [result] = await engine.generate([request])
        answers[jump] = (result, engine.stats.passes, engine.stats.forced_tokens)
    (jumped, jump_passes, forced), (stepped, step_passes, none) = answers[True], answers[False]
    for result in (jumped, stepped):
        assert result.ok and result.finish_reason == "stop"
        assert parse_and_validate(result.text, PLAN) == (result.parsed, None)
    assert none == 0 and step_passes == stepped.completion_tokens  # one pass a token
    assert forced >= 5  # '{"entries": [{"start": "' at least
    assert jump_passes == jumped.completion_tokens - forced  # forced ones cost no pass
    assert jumped.text.startswith('{"entries": [{"start": "')
