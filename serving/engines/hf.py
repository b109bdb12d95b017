"""The ``hf`` engine: transformers on CPU or GPU, continuous batching, a prefix cache, and many
LoRA adapters in one forward pass.

One engine thread runs the loop of :mod:`serving.engines.scheduler`: between two forward passes
it admits waiting requests and lets finished rows go, so a short request that arrives while a
long one decodes joins at once and leaves when it is done. A forward pass
(:mod:`serving.engines.flat_forward`) runs the new tokens of every row end to end, decoding
rows one token each and prompt chunks of rows that are still reading, each row against its own
preallocated KV. A prompt's leading tokens whose KV is in the prefix cache
(:mod:`serving.engines.prefix_cache`, per adapter, LRU within a memory budget) are copied in
instead of computed.

Each row has its own LoRA adapter (peft-format folders, gathered per token run by
:mod:`serving.engines.multi_lora`), sampling parameters, seeded generator, stop strings, token
budget and, with a JSON schema, its own xgrammar matcher that masks the logits while it decodes.
A row's answer does not depend on the rows it shares a pass with.

Prompts are encoded in a tokenizer thread of their own before their rows join (one that cannot
fit the context is refused by its length in characters, unencoded); a row decoding longer than
``EngineConfig.max_decode_s`` ends with finish reason ``"length"``; a cancelled caller's rows
leave before the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from serving.config import EngineConfig
from serving.cpu_flags import cpu_flags
from serving.cpu_threads import set_cpu_threads, torch_device
from serving.engines.common import check_requests, checked_answer, encode_prompt
from serving.engines.scheduler import Scheduler, SchedulerLimits
from serving.llm import ModelInfo
from serving.model_names import resolve_model
from serving.seeds import derive_seed
from serving.types import (
    ContextLengthError,
    FinishReason,
    InvalidSchemaError,
    LLMRequest,
    LLMResult,
)

MB = 1 << 20
GRAMMAR_CACHE_SIZE = 256  # compiled grammars kept (least recently used go first)
ENCODED_KEPT = 256  # prompts encoded by check_limits, kept for the generate call that follows


@dataclass(eq=False)
class _Row:
    """One request from arrival to answer: its prompt, KV, decoding state and timings."""

    request: LLMRequest
    grammar: Any  # xgrammar.CompiledGrammar when the request has a schema
    future: asyncio.Future[LLMResult]
    loop: asyncio.AbstractEventLoop
    arrival: float
    prompt: list[int] = field(default_factory=list)
    capacity: int = 0  # KV positions reserved: prompt + token budget, within the context
    bytes_per_token: int = 0
    kv: Any = None  # flat_forward.SequenceKV while running
    prefilled: int = 0
    computing: bool = False  # some of the prompt went through the model (no more reuse)
    cached_tokens: int = 0
    queue_length: int = 0
    admitted: float = 0.0
    deadline: float = math.inf  # when the row stops decoding (EngineConfig.max_decode_s)
    peak_rows: int = 0
    matcher: Any = None  # xgrammar.GrammarMatcher or None
    generator: Any = None  # torch.Generator
    feed: list[int] = field(default_factory=list)  # decoding: tokens for the next pass
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # set when the row is cut at a stop string, else when it finishes
    cut_at_stop: bool = False
    finish_reason: FinishReason | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def kv_bytes(self) -> int:
        return self.capacity * self.bytes_per_token

    @property
    def prompt_left(self) -> int:
        return len(self.prompt) - self.prefilled

    @property
    def feed_tokens(self) -> int:
        return len(self.feed) or 1


@dataclass
class EngineStats:
    """What the engine loop did so far (for benchmarks and the service's metrics)."""

    passes: int = 0
    forward_s: float = 0.0  # inside the model's forward passes
    step_s: float = 0.0  # whole iterations: admission, forward, sampling, grammar, results
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    forced_tokens: int = 0  # completion tokens the grammar forced (jump-forward, no pass each)
    requests: int = 0
    cancelled: int = 0  # rows dropped because their caller went away
    expired: int = 0  # rows ended by max_decode_s


def grammar_key(schema: dict[str, Any]) -> str:
    """The schema as compact JSON: what is compiled, and the key of the compiled grammar.

    Keys are not sorted: the order of ``properties`` is the order the answer is written in.
    """
    return json.dumps(schema, separators=(",", ":"))


_XGR_LOG_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:\d+: ")


def _compile_error_message(exc: Exception) -> str:
    """xgrammar's message without its ``[time] file.cc:line:`` prefix."""
    return _XGR_LOG_PREFIX.sub("", str(exc).strip())


log = logging.getLogger(__name__)

SMALL_MODEL_PARAMS = 10_000_000
"""Below this many parameters (the tiny test model: 132k) a model runs on one thread: its
passes are too short for a second thread to pay."""


class HFEngine:
    """An :class:`~serving.llm.Engine` on transformers with continuous batching.

    Args:
        config: the engine configuration; construction only stores it, :meth:`start` loads.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._scheduler: Scheduler[_Row] = Scheduler(
            SchedulerLimits(
                max_rows=config.max_batch_size,
                kv_budget_bytes=config.kv_cache_mb * MB,
                prefill_tokens=config.prefill_chunk_tokens,
            )
        )
        self._arrivals: queue.SimpleQueue[_Row | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Prompts are encoded here: off the callers' event loop and off the engine loop.
        self._tokenizing = ThreadPoolExecutor(1, thread_name_prefix="hf-tokenize")
        self._encoded: OrderedDict[int, tuple[LLMRequest, list[int]]] = OrderedDict()
        self._adapter_names: tuple[str, ...] = ()
        self._grammars: OrderedDict[str, Any] = OrderedDict()  # LRU of compiled grammars
        self._model: Any = None
        self._forward: Any = None  # flat_forward.FlatForward
        self._prefix_cache: Any = None  # prefix_cache.PrefixCache or None
        self._lora: Any = None  # multi_lora.AdapterSelection when adapters are served
        self._tokenizer: Any = None
        self._compiler: Any = None
        self._device: Any = None
        self._eos_ids: frozenset[int] = frozenset()
        self._vocab_size = 0
        self._max_len = 0
        self._max_prompt_chars = 0  # more characters than this cannot fit the context
        self._threads: int | None = None
        self.batch_sizes: list[int] = []  # rows in each forward pass, in order
        self.stats = EngineStats()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Loads the model, tokenizer, adapters and the grammar compiler; starts the loop."""
        import torch
        import xgrammar as xgr
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from serving.engines.flat_forward import FlatForward, check_supported
        from serving.engines.prefix_cache import PrefixCache

        path, adapters = resolve_model(self.config.model, self.config.adapters)
        device = torch_device(self.config.device)
        self._device = torch.device(device)
        if self._device.type == "cpu":
            self._threads = set_cpu_threads(self.config.cpu_threads)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self._dtype(device))
        check_supported(model.config)
        if self._device.type == "cpu":
            if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
                self._threads = set_cpu_threads(1)  # a tiny model's passes are too short to split
            if self.config.dtype == "bfloat16" and not cpu_flags().bf16_matmul:
                log.warning(
                    "bfloat16 weights on a CPU without bf16 matrix units (%s): emulated, "
                    "slower than float32",
                    cpu_flags().describe(),
                )
        model.to(self._device)
        self._lora = self._load_adapters(model, adapters)
        model.eval()
        self._eos_ids = self._stop_token_ids(tokenizer, model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._vocab_size = model.config.vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=self._vocab_size, stop_token_ids=sorted(self._eos_ids)
        )
        self._compiler = xgr.GrammarCompiler(info)
        self._tokenizer = tokenizer
        self._model = model
        self._forward = FlatForward(model)
        self._max_len = self.config.max_model_len or self._forward.max_len
        # No token covers more characters than its own string has (byte-level BPE: one
        # character per byte), so a prompt of more characters than the context times the
        # longest token cannot fit: it is refused without being tokenized.
        longest = max((len(t) for t in tokenizer.get_vocab()), default=1)
        self._max_prompt_chars = self._max_len * max(longest, 1)
        if self.config.prefix_cache_mb > 0:
            self._prefix_cache = PrefixCache(self.config.prefix_cache_mb * MB)
        self._adapter_names = tuple(sorted(adapters))
        self._thread = threading.Thread(target=self._serve, name="hf-engine", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops the loop once the rows in flight are answered."""
        if self._thread is not None:
            self._arrivals.put(None)
            self._thread.join()
            self._thread = None
        self._tokenizing.shutdown(wait=False)

    def info(self) -> ModelInfo:
        """The configured base model and the adapters served."""
        return ModelInfo(base_model=self.config.model, adapters=self._adapter_names)

    @property
    def prefix_cache(self) -> Any:
        """The prefix cache (``None`` when disabled)."""
        return self._prefix_cache

    def _dtype(self, device: str) -> Any:
        """The dtype the weights load in: ``config.dtype``; with ``auto``, float32 on a CPU and
        the checkpoint's own on a GPU.

        float32 on a CPU even where bf16 is faster (AMX, AVX-512 bf16: 1.58x the tokens/s of
        float32 on the town's recorded requests, bench/bench_dtype.py): in float32 a row's
        greedy answer is the same whatever its batch and whether its prompt's prefix came from
        the cache, so a run repeats and a resumed run asks what an uninterrupted one asks; in
        bf16 10 of 48 greedy answers changed, and a prefix-cache hit changes an answer (the
        prompt's last tokens computed in another shape round differently). ``--dtype
        bfloat16`` trades that for the speed."""
        import torch

        if self.config.dtype == "auto":
            return torch.float32 if device == "cpu" else "auto"
        return getattr(torch, self.config.dtype)

    @staticmethod
    def _load_adapters(model: Any, adapters: dict[str, str]) -> Any:
        """Wraps the model's targeted layers in place; returns their shared adapter selection."""
        if not adapters:
            return None
        from serving.engines.multi_lora import attach_lora_adapters

        return attach_lora_adapters(model, adapters)

    @staticmethod
    def _stop_token_ids(tokenizer: Any, model: Any) -> frozenset[int]:
        """EOS ids of the tokenizer and of the model's generation config."""
        ids: set[int] = set()
        candidates = [
            tokenizer.eos_token_id,
            getattr(model.generation_config, "eos_token_id", None),
        ]
        for value in candidates:
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(int(v) for v in value)
        if not ids:
            raise ValueError("the model has no EOS token")
        return frozenset(ids)

    # -- requests (the caller's event loop) --------------------------------------------------

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Validates every request, then hands them to the engine loop and awaits the answers.

        A row whose prompt cannot be encoded or does not fit the context (see
        :meth:`check_limits`) fails alone at once, without joining the engine; one whose prompt
        and ``max_tokens`` are over it ends where the context does. When the awaiting
        caller is cancelled (a client that went away), its rows leave the engine before the next
        forward pass.

        Raises:
            UnknownAdapterError: a request names an adapter not served.
            InvalidSchemaError: a request's schema is invalid or cannot be compiled.
        """
        arrival = time.perf_counter()
        self._require_started()
        check_requests(requests, self._adapter_names)
        grammars = [await self._grammar(request) for request in requests]
        prompts = await self._prompts(requests)
        loop = asyncio.get_running_loop()
        rows = []
        for request, grammar, prompt in zip(requests, grammars, prompts, strict=True):
            row = _Row(request, grammar, loop.create_future(), loop, arrival)
            if isinstance(prompt, list):
                row.prompt = prompt
                refused = self._context_error(request, len(prompt))
                row.error = None if refused is None else refused.message
            elif isinstance(prompt, ContextLengthError):
                row.error = prompt.message
            else:
                row.error = f"encoding failed: {type(prompt).__name__}: {prompt}"
            rows.append(row)
        for row in rows:  # a row that cannot run fails alone, before it joins the engine
            if row.error is None:
                self._arrivals.put(row)
            else:
                row.finish_reason = "error"
                row.future.set_result(self._result(row, time.perf_counter()))
        try:
            return list(await asyncio.gather(*(row.future for row in rows)))
        finally:
            for row in rows:
                row.future.cancel()  # a cancelled caller's rows leave the engine at once

    async def check_limits(
        self, requests: Sequence[LLMRequest], max_tokens_must_fit: bool = False
    ) -> None:
        """Raises :class:`~serving.types.ContextLengthError` (HTTP 400) for the first request
        that does not fit the model's context: a prompt of more characters than the context
        could hold (not tokenized at all), a prompt of as many tokens as the context or more;
        with ``max_tokens_must_fit``, also a prompt and ``max_tokens`` together over it.

        As vLLM: its OpenAI server refuses a ``max_tokens`` the context cannot hold (the HTTP
        API asks for that), its ``LLM`` (and this engine, for the handles) ends such a row with
        finish reason ``"length"`` where the context ends. Prompts are encoded in the engine's
        tokenizer thread, never on the caller's event loop or in the engine loop, and kept for
        the :meth:`generate` call that follows. The service calls this before ``generate``;
        alone, ``generate`` fails a prompt that does not fit by itself instead."""
        self._require_started()
        prompts = await self._prompts(requests)
        for request, prompt in zip(requests, prompts, strict=True):
            if isinstance(prompt, ContextLengthError):
                raise prompt
            if isinstance(prompt, list):
                refused = self._context_error(request, len(prompt), max_tokens_must_fit)
                if refused is not None:
                    raise refused
        for request, prompt in zip(requests, prompts, strict=True):
            if isinstance(prompt, list):
                self._encoded[id(request)] = (request, prompt)  # the entry keeps the id taken
                while len(self._encoded) > ENCODED_KEPT:
                    self._encoded.popitem(last=False)

    def _require_started(self) -> None:
        if self._thread is None:
            raise RuntimeError("HFEngine used before start()")

    def _context_error(
        self, request: LLMRequest, tokens: int | None, max_tokens_must_fit: bool = False
    ) -> ContextLengthError | None:
        """Why a request does not fit the context (``tokens``: its prompt's; None: judge by its
        characters; ``max_tokens_must_fit``: its prompt and ``max_tokens`` together), or None."""
        context = self._max_len
        where = "prompt" if request.prompt is not None else "messages"
        if tokens is None:
            chars = prompt_chars(request)
            if chars <= self._max_prompt_chars:
                return None
            return ContextLengthError(
                f"the prompt is {chars:,} characters; this model's context is {context} "
                f"tokens, at most {self._max_prompt_chars:,} characters",
                request.request_id,
                param=where,
            )
        if tokens >= context:
            return ContextLengthError(
                f"the prompt is {tokens:,} tokens; this model's context is {context} tokens",
                request.request_id,
                param=where,
            )
        wanted = request.max_tokens
        if max_tokens_must_fit and tokens + wanted > context:
            return ContextLengthError(
                f"max_tokens is too large: {wanted:,}; this model's context is {context} tokens "
                f"and the prompt is {tokens:,} tokens ({wanted:,} > {context} - {tokens:,})",
                request.request_id,
                param="max_tokens",
            )
        return None

    async def _prompts(self, requests: Sequence[LLMRequest]) -> list[list[int] | Exception]:
        """Each request's prompt ids (kept by :meth:`check_limits`, else encoded in the
        tokenizer thread), or why there are none: a :class:`ContextLengthError` for a prompt of
        too many characters to fit (not encoded), the encoder's exception."""
        prompts: list[list[int] | Exception | None] = []
        for request in requests:
            kept = self._encoded.pop(id(request), None)
            if kept is not None and kept[0] is request:
                prompts.append(kept[1])
            else:
                prompts.append(self._context_error(request, None))
        todo = [r for r, p in zip(requests, prompts, strict=True) if p is None]
        if todo:
            loop = asyncio.get_running_loop()
            encoded = iter(await loop.run_in_executor(self._tokenizing, self._encode_all, todo))
            prompts = [next(encoded) if p is None else p for p in prompts]
        return [p for p in prompts if p is not None]

    def _encode_all(self, requests: list[LLMRequest]) -> list[list[int] | Exception]:
        encoded: list[list[int] | Exception] = []
        for request in requests:
            try:
                encoded.append(self._encode(request))
            except Exception as exc:  # this request alone fails
                encoded.append(exc)
        return encoded

    async def _grammar(self, request: LLMRequest) -> Any:
        """The compiled grammar of a request's schema (None without one): compiled once, in a
        worker thread (never on the caller's event loop), and kept in an LRU of
        :data:`GRAMMAR_CACHE_SIZE` grammars."""
        if request.json_schema is None:
            return None
        key = grammar_key(request.json_schema)
        grammar = self._grammars.get(key)
        if grammar is None:
            compile_schema = self._compiler.compile_json_schema
            try:
                grammar = await asyncio.to_thread(compile_schema, key, any_whitespace=False)
            except Exception as exc:  # xgrammar raises several types for unsupported schemas
                raise InvalidSchemaError(
                    "JSON schema not supported for constrained decoding: "
                    + _compile_error_message(exc),
                    request.request_id,
                    param="response_format",
                ) from None
            self._grammars[key] = grammar
            while len(self._grammars) > GRAMMAR_CACHE_SIZE:
                self._grammars.popitem(last=False)
        self._grammars.move_to_end(key)
        return grammar

    # -- the engine loop (its own thread) ----------------------------------------------------

    def _serve(self) -> None:
        import torch

        if self._threads is not None:
            set_cpu_threads(self._threads)  # torch's thread count is per calling thread
        scheduler = self._scheduler
        with torch.inference_mode():
            while True:
                idle = not scheduler.running and not scheduler.waiting
                if not self._take_arrivals(block=idle):
                    return
                started = time.perf_counter()
                plan: list[tuple[_Row, int]] = []
                try:
                    self._drop_cancelled()
                    if self.config.max_decode_s is not None:
                        self._expire()
                    for row in scheduler.admit(self._admission_cost):
                        self._start_row(row)
                    self._reuse_prefixes()
                    plan = scheduler.plan()
                    if plan:
                        self._step(plan)
                except Exception as exc:  # fails the rows of this pass; the engine lives on
                    message = f"decoding failed: {type(exc).__name__}: {exc}"
                    for row, _ in plan or [(r, 0) for r in scheduler.running]:
                        row.finish_reason, row.error = "error", message
                        self._finish(row)
                self.stats.step_s += time.perf_counter() - started

    def _take_arrivals(self, block: bool) -> bool:
        """Moves arrived rows into the waiting queue; False once :meth:`close` was called."""
        try:
            item = self._arrivals.get() if block else self._arrivals.get_nowait()
        except queue.Empty:
            return True
        while True:
            if item is None:
                return False
            item.queue_length = len(self._scheduler.waiting)
            self._scheduler.add(item)
            try:
                item = self._arrivals.get_nowait()
            except queue.Empty:
                return True

    def _drop_cancelled(self) -> None:
        scheduler = self._scheduler
        for row in [*scheduler.running, *scheduler.waiting]:
            if row.future.cancelled():
                scheduler.remove(row)
                row.kv = None
                self.stats.cancelled += 1

    def _expire(self) -> None:
        """Ends the running rows past their decoding deadline: finish reason ``"length"``, the
        text so far (a constrained row's cut answer then fails its schema check)."""
        now = time.perf_counter()
        for row in [r for r in self._scheduler.running if now > r.deadline]:
            row.finish_reason = "length"
            self.stats.expired += 1
            self._finish(row)

    def _admission_cost(self, row: _Row) -> int:
        """The KV bytes the row will hold (its prompt and token budget, within the context)."""
        if not row.capacity:
            row.bytes_per_token = self._forward.spec.bytes_per_token
            row.capacity = min(len(row.prompt) + row.request.max_tokens, self._max_len)
        return row.kv_bytes

    def _start_row(self, row: _Row) -> None:
        import torch
        import xgrammar as xgr

        row.admitted = time.perf_counter()
        if self.config.max_decode_s is not None:
            row.deadline = row.admitted + self.config.max_decode_s
        row.generator = torch.Generator(device="cpu")
        row.generator.manual_seed(derive_seed(self.config.seed, row.request))
        row.matcher = None if row.grammar is None else xgr.GrammarMatcher(row.grammar)
        row.kv = self._forward.new_kv(row.capacity)

    def _reuse_prefixes(self) -> None:
        """Copies cached prompt KV into rows that have not computed any of their prompt yet.

        Done before every pass, not only at admission: rows admitted together with the same
        prefix start one after the other (the prefill budget goes first come, first served),
        and each finds what the rows before it have just computed.
        """
        if self._prefix_cache is None:
            return
        for row in self._scheduler.running:
            if row.computing or row.prompt_left == 0:
                continue
            hit = self._prefix_cache.match(row.request.adapter, row.prompt, len(row.prompt) - 1)
            if hit.length <= row.cached_tokens:
                continue
            at = 0
            for part in hit.parts:  # consecutive pieces; copy those past what the row holds
                n = part.shape[3]
                if at + n > row.cached_tokens:
                    skip = max(row.cached_tokens - at, 0)
                    row.kv.write_prefix(part.narrow(3, skip, n - skip), at + skip)
                at += n
            row.prefilled = row.cached_tokens = hit.length

    def _step(self, plan: list[tuple[_Row, int]]) -> None:
        """One forward pass over the plan, then each row that has logits takes its token."""
        import xgrammar as xgr

        from serving.engines.flat_forward import Segment

        segments = []
        for row, n in plan:
            if row.prompt_left:
                chunk = row.prompt[row.prefilled : row.prefilled + n]
                segments.append(Segment(row.kv, chunk, row.prefilled + n == len(row.prompt)))
            else:
                segments.append(Segment(row.kv, row.feed))
        if self._lora is not None:
            self._lora.select_segments(
                [row.request.adapter for row, _ in plan], [len(s.tokens) for s in segments]
            )
        began = time.perf_counter()
        logits = self._run_forward(plan, segments)
        self.stats.forward_s += time.perf_counter() - began
        self.stats.passes += 1
        self.batch_sizes.append(len(plan))
        sampling = []
        for (row, n), segment in zip(plan, segments, strict=True):
            row.peak_rows = max(row.peak_rows, len(plan))
            if row.prompt_left:
                row.computing = True
                row.prefilled += n
                if self._prefix_cache is not None:  # each chunk at once, for rows behind it
                    done = row.prompt[: row.prefilled]
                    self._prefix_cache.insert(row.request.adapter, done, row.kv.kv)
            if segment.want_logits:
                sampling.append(row)
        logits = logits[:, : self._vocab_size].float().cpu()
        if sampling:
            bitmask = xgr.allocate_token_bitmask(len(sampling), self._vocab_size)
            self._mask_logits(sampling, logits, bitmask)
        for i, row in enumerate(sampling):
            row.feed = self._step_row(row, logits[i])
            if row.done:
                self._finish(row)

    def _run_forward(self, plan: list[tuple[_Row, int]], segments: list[Any]) -> Any:
        """The model's forward pass over ``segments`` (one per row of ``plan``)."""
        return self._forward(segments)

    def _finish(self, row: _Row) -> None:
        """Answers the row's caller and frees its place and KV."""
        self._scheduler.remove(row)
        row.kv = None
        if not row.cut_at_stop and row.tokens:
            row.text = self._tokenizer.decode(row.tokens, skip_special_tokens=True)
        result = self._result(row, time.perf_counter())
        self.stats.requests += 1
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.cached_tokens += result.cached_tokens
        self.stats.completion_tokens += result.completion_tokens
        with contextlib.suppress(RuntimeError):  # RuntimeError: the caller's loop is gone
            row.loop.call_soon_threadsafe(_resolve, row.future, result)

    def _result(self, row: _Row, now: float) -> LLMResult:
        request = row.request
        parsed, finish, error = checked_answer(
            request, row.text, row.finish_reason or "length", row.error
        )
        admitted = row.admitted or now
        return LLMResult(
            request_id=request.request_id,
            text=row.text,
            parsed=parsed,
            prompt_tokens=len(row.prompt),
            completion_tokens=len(row.tokens),
            finish_reason=finish,
            latency_s=now - row.arrival,
            engine_s=now - admitted,
            batch_size=max(row.peak_rows, 1),
            adapter=request.adapter,
            error=error,
            cached_tokens=row.cached_tokens,
            queue_s=admitted - row.arrival,
            queue_length=row.queue_length,
        )

    def _encode(self, request: LLMRequest) -> list[int]:
        return encode_prompt(self._tokenizer, request)

    @staticmethod
    def _mask_logits(rows: list[_Row], logits: Any, bitmask: Any) -> None:
        """Masks, in place, the logits of constrained rows to the tokens their grammar allows."""
        import xgrammar as xgr

        constrained = [
            i
            for i, row in enumerate(rows)
            if row.matcher is not None and row.matcher.fill_next_token_bitmask(bitmask, i)
        ]
        if constrained:
            xgr.apply_token_bitmask_inplace(
                logits, bitmask, vocab_size=logits.shape[-1], indices=constrained
            )

    def _step_row(self, row: _Row, logits: Any) -> list[int]:
        """Chooses a row's next token and advances its state; returns the tokens to feed: that
        token, and the tokens of any text its grammar now forces."""
        request = row.request
        token = sample_token(logits, request.temperature, request.top_p, row.generator)
        row.tokens.append(token)
        if row.matcher is not None and not row.matcher.accept_token(token):
            row.finish_reason, row.error = "error", f"grammar rejected token {token}"
            return [token]
        if token in self._eos_ids or (row.matcher is not None and row.matcher.is_terminated()):
            row.finish_reason = "stop"
            return [token]
        if request.stop:
            text = self._tokenizer.decode(row.tokens, skip_special_tokens=True)
            cut = find_stop(text, request.stop)
            if cut is not None:
                row.text, row.finish_reason, row.cut_at_stop = text[:cut], "stop", True
                return [token]
        if len(row.tokens) >= request.max_tokens or row.kv.length + 1 >= row.capacity:
            row.finish_reason = "length"
            return [token]
        return [token, *self._jump_forward(row)]

    def _jump_forward(self, row: _Row) -> list[int]:
        """The tokens of the text the row's grammar forces next (jump-forward decoding), accepted
        into its matcher and its answer (up to trailing whitespace); none without a grammar,
        with stop strings, or when they would not fit the row's budget. They run through the
        model together in one pass instead of one pass each (a JSON answer's keys, the rest of
        a chosen name). On SmolLM2 and the town's recorded requests: 318 s without, 207 s
        with (bench/bench_engine.py --no-jump-forward)."""
        if not self.config.jump_forward or row.matcher is None or row.request.stop:
            return []
        # Trailing whitespace stays to the model: BPE joins a space to the word after it, and a
        # lone space token leaves a small model off its tracks (SmolLM2 then wrote digits).
        forced = row.matcher.find_jump_forward_string().rstrip()
        if not forced:
            return []
        ids = list(self._tokenizer.encode(forced, add_special_tokens=False))
        room = min(row.request.max_tokens - len(row.tokens), row.capacity - row.kv.length - 1)
        if not ids or len(ids) >= room or self._tokenizer.decode(ids) != forced:
            return []
        for i in ids:
            if not row.matcher.accept_token(i):  # the text is forced: should not happen
                row.finish_reason = "error"
                row.error = f"the grammar rejected its own forced text {forced!r}"
                return []
        row.tokens.extend(ids)
        self.stats.forced_tokens += len(ids)
        return ids


def prompt_chars(request: LLMRequest) -> int:
    """The characters of a request's prompt, or of its messages' contents (fewer than its chat
    template renders)."""
    if request.prompt is not None:
        return len(request.prompt)
    return sum(len(m.content) for m in request.messages or ())


def _resolve(future: asyncio.Future[LLMResult], result: LLMResult) -> None:
    if not future.done():
        future.set_result(result)


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string begins in ``text``, or ``None``."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def sample_token(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """Chooses a token from one row's logits (masked entries are ``-inf``).

    Greedy when ``temperature`` is 0; otherwise samples from the softmax at ``temperature``,
    restricted to the smallest set of tokens whose probability reaches ``top_p``.
    """
    import torch

    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs[before >= top_p] = 0.0  # keeps at least the most likely token
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
