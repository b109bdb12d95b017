"""The engine contract: what every engine behind the LLM interface does, on a real model.

One suite, run against every engine: ``hf`` in-process (``tests/unit``), ``vllm`` in-process and
``openai`` against vLLM's own server (``tests/vllm``, in ``.venv-vllm``), and ``openai`` against
``simulacra serve`` (``tests/integration``). A test module subclasses :class:`EngineContract`
and gives it a ``backend`` fixture (:class:`Backend`): the engine, started, serving smollm2 with
the adapters ``alice`` and ``bob`` (``tests/lora_adapters.py``).

Where engines legitimately differ, :class:`EngineTraits` says so, and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from serving.engines.common import encode_prompt
from serving.llm import LLM
from serving.types import LLMRequest, LLMResult, UnknownAdapterError
from tests.schemas import IMPORTANCE, PLAN

ADAPTERS = ("alice", "bob")
ROWS = (None, *ADAPTERS)


@dataclass(frozen=True)
class EngineTraits:
    """How an engine may legitimately differ from the others.

    ``batch_invariant``: a row's greedy answer is the same whatever else is in its batch (the
    ``hf`` engine, float32, one row's arithmetic never depends on the others'). vLLM is not
    (FACTS.md: bf16 kernels whose reductions depend on the batch shape), so for it only the
    same request, alone, repeats. ``reports_cached_tokens``: prefix-cache hits come back in
    ``cached_tokens`` (vLLM's server only with ``--enable-prompt-tokens-details``).
    ``cache_block``: the granularity of a prefix-cache hit in tokens (vLLM caches whole KV
    blocks, 128 tokens on the CPU; the ``hf`` engine's radix tree any prefix), so a hit covers
    at least the
    shared prefix less one block.
    """

    name: str
    batch_invariant: bool
    reports_cached_tokens: bool = True
    cache_block: int = 1


@dataclass
class Backend:
    """An engine under contract: ``llm`` (started), its traits, the model's tokenizer (for the
    token counts), and ``running`` (how many requests the engine still works on; ``None``
    where that cannot be seen from outside)."""

    llm: LLM
    traits: EngineTraits
    tokenizer: Any
    running: Callable[[], int] | None = None


def chat(text: str, adapter: str | None = None, **kwargs: Any) -> LLMRequest:
    return LLMRequest.chat(
        [("system", "You are Ada, a baker in a small town."), ("user", text)],
        adapter=adapter,
        **kwargs,
    )


async def alone(llm: LLM, request: LLMRequest) -> LLMResult:
    [result] = await llm.generate([request])
    assert result.ok, result.error
    return result


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


LONG_PREFIX = " ".join(
    f"Rule {i}: the bakery opens at {6 + i % 3}:00 and the bread is sold by noon."
    for i in range(24)
)


@pytest.mark.asyncio(loop_scope="session")
class EngineContract:
    """The contract's tests; a subclass named ``Test...`` in a module with a ``backend``
    fixture runs them."""

    async def test_greedy_answers_repeat(self, backend: Backend):
        request = chat("What do you do first in the morning? One sentence.", max_tokens=24)
        first = await alone(backend.llm, request)
        second = await alone(backend.llm, request)
        assert first.text == second.text and first.text.strip()
        if backend.traits.batch_invariant:
            others = [
                chat(f"Name a bread, {i}.", adapter, max_tokens=24)
                for i, adapter in enumerate(ROWS)
            ]
            mixed = await backend.llm.generate([*others, request])
            assert mixed[-1].text == first.text

    async def test_every_schema_answer_validates_in_a_mixed_batch(self, backend: Backend):
        topics = ("the oven broke", "a new recipe", "the market opens", "rain all day")
        requests = [
            chat(
                f"{topic}: how important is it, and what is your plan?",
                ROWS[i % 3],
                json_schema=IMPORTANCE if i % 2 else PLAN,
                max_tokens=400,
            )
            for i, topic in enumerate(topics * 3)
        ]
        results = await backend.llm.generate(requests)
        assert [r.request_id for r in results] == [r.request_id for r in requests]
        for request, result in zip(requests, results, strict=True):
            assert result.ok, result.error
            assert result.adapter == request.adapter
            assert request.json_schema is not None
            jsonschema.validate(result.parsed, request.json_schema)
            assert result.finish_reason == "stop"
            # no free whitespace (every engine decodes so): nothing for a weak model to pad with
            assert result.text in (json.dumps(result.parsed), compact(result.parsed)), result.text

    async def test_an_adapter_changes_the_answer(self, backend: Backend):
        texts = set()
        for adapter in ROWS:
            result = await alone(
                backend.llm, chat("Who are you? One sentence.", adapter, max_tokens=24)
            )
            assert result.adapter == adapter
            texts.add(result.text)
        assert len(texts) >= 2

    async def test_an_unknown_adapter_is_refused_naming_it(self, backend: Backend):
        with pytest.raises(UnknownAdapterError) as refused:
            await backend.llm.generate([chat("Hello.", "mallory", max_tokens=4)])
        assert "mallory" in str(refused.value)

    async def test_max_tokens_ends_with_length(self, backend: Backend):
        result = await alone(backend.llm, chat("Tell me a long story about bread.", max_tokens=5))
        assert result.completion_tokens == 5
        assert result.finish_reason == "length"

    async def test_a_stop_string_cuts_the_text_before_it(self, backend: Backend):
        request = chat("Describe your bakery in two sentences.", max_tokens=32)
        full = (await alone(backend.llm, request)).text
        words = [w for w in full.split() if len(w) >= 4 and w.isalpha()]
        assert len(words) >= 2, full
        stop = " " + words[1]
        assert stop in full
        cut = await alone(
            backend.llm, chat("Describe your bakery in two sentences.", max_tokens=32, stop=(stop,))
        )
        assert cut.text == full[: full.index(stop)]
        assert cut.finish_reason == "stop"

    async def test_token_counts_are_the_models(self, backend: Backend):
        request = chat("Say good morning.", max_tokens=8)
        result = await alone(backend.llm, request)
        assert result.prompt_tokens == len(encode_prompt(backend.tokenizer, request))
        assert 1 <= result.completion_tokens <= 8

    async def test_a_repeated_prefix_is_served_from_the_cache(self, backend: Backend):
        if not backend.traits.reports_cached_tokens:
            pytest.fail(f"{backend.traits.name} reports no cached tokens: give it a flag")
        first = chat(LONG_PREFIX + " When do you open?", max_tokens=4)
        second = chat(LONG_PREFIX + " Who buys bread?", max_tokens=4)
        ids = [encode_prompt(backend.tokenizer, r) for r in (first, second)]
        shared = next(i for i, (a, b) in enumerate(zip(*ids, strict=False)) if a != b)
        block = backend.traits.cache_block
        await alone(backend.llm, first)
        result = await alone(backend.llm, second)
        cached = result.cached_tokens
        assert (shared - 1) // block * block <= cached <= shared, (shared, cached)

    async def test_seeded_sampling_repeats_and_seeds_differ(self, backend: Backend):
        def sampled(seed: int) -> LLMRequest:
            return chat("Invent a name for a cake.", max_tokens=16, temperature=1.0, seed=seed)

        first = await alone(backend.llm, sampled(7))
        again = await alone(backend.llm, sampled(7))
        others = {(await alone(backend.llm, sampled(s))).text for s in (8, 9, 10)}
        assert first.text == again.text
        assert len(others | {first.text}) >= 2

    async def test_a_cancelled_call_stops_its_rows(self, backend: Backend):
        long = chat("Write a very long story about a baker.", max_tokens=1500)
        task = asyncio.create_task(backend.llm.generate([long]))
        await asyncio.sleep(1.0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t0 = time.perf_counter()
        result = await alone(backend.llm, chat("Say hi.", max_tokens=4))
        assert result.completion_tokens >= 1
        if backend.running is not None:
            deadline = time.perf_counter() + 10
            while backend.running() and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)
            assert backend.running() == 0
        assert time.perf_counter() - t0 < 60  # never waited for the 1,500 tokens
