"""The vllm engine for real: vLLM's AsyncLLM on the tiny model, base and two LoRA adapters.

GPU tier: needs CUDA and vLLM (``pytest -m gpu``); skipped, with the reason, where either is
missing. All tests share one engine and one event loop: AsyncLLM binds its output handler to
the loop of its first request.
"""

from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from serving.config import EngineConfig
from serving.engines.vllm import VLLMEngine
from serving.types import LLMRequest, UnknownAdapterError
from tests.schemas import IMPORTANCE, PLAN

pytestmark = pytest.mark.gpu

ADAPTERS = (None, "alice", "bob")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMEngine]:
    # Checked here, not at import, so that `-m "not gpu"` deselects without a skip.
    pytest.importorskip("vllm", reason="vLLM is not installed (optional extra: simulacra[vllm])")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU and none is available")
    with pytest.MonkeyPatch.context() as patch:
        cache: Path = tmp_path_factory.mktemp("simulacra-cache")
        patch.setenv("SIMULACRA_CACHE", str(cache))  # the tiny model is built there
        patch.setenv("HF_HUB_OFFLINE", "1")
        config = EngineConfig(
            engine="vllm", model="tiny", gpu_memory_utilization=0.3, max_model_len=1024
        )
        engine = VLLMEngine(config)
        engine.start()
        try:
            yield engine
        finally:
            engine.shutdown()


def _chat(topic: str, adapter: str | None, **kwargs) -> LLMRequest:
    return LLMRequest.chat(
        [("system", "You are an agent in a small town."), ("user", f"Rate {topic}.")],
        adapter=adapter,
        **kwargs,
    )


def test_serves_the_tiny_models_adapters(engine: VLLMEngine):
    assert engine.info().base_model == "tiny"
    assert engine.info().adapters == ("alice", "bob")


@pytest.mark.asyncio(loop_scope="module")
async def test_one_call_mixes_adapters_and_schema_answers_validate(engine: VLLMEngine):
    requests = [
        _chat(topic, ADAPTERS[i % 3], json_schema=IMPORTANCE if i % 2 else PLAN, max_tokens=400)
        for i, topic in enumerate(("the cafe", "the park", "the market", "the library") * 3)
    ]
    results = await engine.generate(requests)

    assert [r.request_id for r in results] == [r.request_id for r in requests]
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        assert result.adapter == request.adapter
        assert request.json_schema is not None
        jsonschema.validate(result.parsed, request.json_schema)
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        assert result.batch_size >= len(requests)


@pytest.mark.asyncio(loop_scope="module")
async def test_adapters_change_the_answer(engine: VLLMEngine):
    requests = [_chat("the river", adapter, max_tokens=24) for adapter in ADAPTERS]
    results = await engine.generate(requests)
    assert all(r.ok for r in results)
    assert len({r.text for r in results}) > 1  # random LoRA weights move greedy choices


@pytest.mark.asyncio(loop_scope="module")
async def test_greedy_answers_repeat_and_stop_and_length_are_reported(engine: VLLMEngine):
    request = LLMRequest(prompt="At 09:00 the agent", adapter="alice", max_tokens=16)
    first, second = await engine.generate([request, request])
    assert first.text == second.text
    assert first.finish_reason in ("stop", "length")
    [short] = await engine.generate([LLMRequest(prompt="The town", max_tokens=1)])
    assert short.completion_tokens == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_unknown_adapter_is_refused(engine: VLLMEngine):
    with pytest.raises(UnknownAdapterError):
        await engine.generate([_chat("the park", "mallory")])
