"""The ``hf`` engine: transformers on CPU or GPU, many LoRA adapters in one forward pass.

Concurrent ``generate`` calls meet in a :class:`~serving.batcher.DynamicBatcher`; each executed
batch is decoded by our own loop with a KV cache, left padding and per-row position ids, so a
row's answer does not depend on the rows it shares the batch with. Each row has its own LoRA
adapter (peft-format folders, gathered per row by :mod:`serving.engines.multi_lora`), sampling
parameters, seeded generator, stop strings, token budget and, with a JSON schema, its own
xgrammar matcher that masks the logits while it decodes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.adapters import check_request_adapter
from serving.batcher import DynamicBatcher
from serving.config import EngineConfig
from serving.cpu_threads import set_cpu_threads
from serving.llm import ModelInfo
from serving.schema import check_request_schema, parse_and_validate
from serving.seeds import derive_seed
from serving.tiny_model import resolve_model
from serving.types import FinishReason, InvalidSchemaError, LLMRequest, LLMResult


@dataclass
class _Pending:
    """A validated request waiting in the batcher."""

    request: LLMRequest
    arrival: float
    grammar: Any = None  # xgrammar.CompiledGrammar when the request has a schema


@dataclass
class _RowState:
    """The decoding state of one row of an executing batch."""

    request: LLMRequest
    matcher: Any  # xgrammar.GrammarMatcher or None
    generator: Any  # torch.Generator
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # set when the row is cut at a stop string, else after decoding
    cut_at_stop: bool = False
    finish_reason: FinishReason | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


def grammar_key(schema: dict[str, Any]) -> str:
    """The schema as compact JSON: what is compiled, and the key of the compiled grammar.

    Keys are not sorted: the order of ``properties`` is the order the answer is written in.
    """
    return json.dumps(schema, separators=(",", ":"))


_XGR_LOG_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:\d+: ")


def _compile_error_message(exc: Exception) -> str:
    """xgrammar's message without its ``[time] file.cc:line:`` prefix."""
    return _XGR_LOG_PREFIX.sub("", str(exc).strip())


class HFEngine:
    """An :class:`~serving.llm.Engine` on transformers with LoRA adapters and dynamic batching.

    Args:
        config: the engine configuration; construction only stores it, :meth:`start` loads.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._batcher: DynamicBatcher[_Pending, LLMResult] = DynamicBatcher(
            self._run_batch,
            max_batch_size=config.max_batch_size,
            wait_s=config.batch_wait_ms / 1000,
        )
        self._adapter_names: tuple[str, ...] = ()
        self._grammars: dict[str, Any] = {}
        self._model: Any = None
        self._lora: Any = None  # multi_lora.AdapterSelection when adapters are served
        self._tokenizer: Any = None
        self._compiler: Any = None
        self._device: Any = None
        self._eos_ids: frozenset[int] = frozenset()
        self._vocab_size = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Loads the model, tokenizer, adapters and the grammar compiler."""
        import torch
        import xgrammar as xgr
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path, adapters = resolve_model(self.config.model, self.config.adapters)
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._device = torch.device(device)
        if self._device.type == "cpu":
            set_cpu_threads(self.config.cpu_threads)
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self._dtype(device))
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
        self._adapter_names = tuple(sorted(adapters))

    def info(self) -> ModelInfo:
        """The configured base model and the adapters served."""
        return ModelInfo(base_model=self.config.model, adapters=self._adapter_names)

    @property
    def batch_sizes(self) -> list[int]:
        """How many rows each executed batch had, in order."""
        return self._batcher.batch_sizes

    def _dtype(self, device: str) -> Any:
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

    # -- requests ----------------------------------------------------------------------------

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Validates every request, then decodes them in dynamic batches.

        Raises:
            UnknownAdapterError: a request names an adapter not served.
            InvalidSchemaError: a request's schema is invalid or cannot be compiled.
        """
        arrival = time.perf_counter()
        if self._model is None:
            raise RuntimeError("HFEngine.generate called before start()")
        pending = [self._validate(request, arrival) for request in requests]
        if not pending:
            return []
        return await self._batcher.submit_many(pending)

    def _validate(self, request: LLMRequest, arrival: float) -> _Pending:
        check_request_adapter(request, self._adapter_names)
        check_request_schema(request)
        grammar = None if request.json_schema is None else self._grammar(request)
        return _Pending(request, arrival, grammar)

    def _grammar(self, request: LLMRequest) -> Any:
        assert request.json_schema is not None
        key = grammar_key(request.json_schema)
        if key not in self._grammars:
            try:
                self._grammars[key] = self._compiler.compile_json_schema(key, any_whitespace=False)
            except Exception as exc:  # xgrammar raises several types for unsupported schemas
                raise InvalidSchemaError(
                    "JSON schema not supported for constrained decoding: "
                    + _compile_error_message(exc),
                    request.request_id,
                    param="response_format",
                ) from None
        return self._grammars[key]

    async def _run_batch(self, batch: list[_Pending]) -> list[LLMResult]:
        return await asyncio.to_thread(self._decode_batch, batch)

    # -- decoding (worker thread) ------------------------------------------------------------

    def _decode_batch(self, batch: list[_Pending]) -> list[LLMResult]:
        """Decodes a batch; an exception fails every row of it, as results."""
        started = time.perf_counter()
        try:
            rows, prompt_lengths = self._decode(batch)
        except Exception as exc:
            now = time.perf_counter()
            message = f"decoding failed: {type(exc).__name__}: {exc}"
            return [
                LLMResult.failure(
                    p.request,
                    message,
                    engine_s=now - started,
                    latency_s=now - p.arrival,
                    batch_size=len(batch),
                )
                for p in batch
            ]
        now = time.perf_counter()
        return [
            self._result(row, n_prompt, now - started, now - p.arrival, len(batch))
            for row, n_prompt, p in zip(rows, prompt_lengths, batch, strict=True)
        ]

    def _result(
        self, row: _RowState, n_prompt: int, engine_s: float, latency_s: float, size: int
    ) -> LLMResult:
        request = row.request
        parsed, error = None, row.error
        finish: FinishReason = row.finish_reason or "length"
        if error is None and request.json_schema is not None:
            parsed, error = parse_and_validate(row.text, request.json_schema)
        if error is not None:
            finish = "error"
        return LLMResult(
            request_id=request.request_id,
            text=row.text,
            parsed=parsed,
            prompt_tokens=n_prompt,
            completion_tokens=len(row.tokens),
            finish_reason=finish,
            latency_s=latency_s,
            engine_s=engine_s,
            batch_size=size,
            adapter=request.adapter,
            error=error,
        )

    def _encode(self, request: LLMRequest) -> list[int]:
        tokenizer = self._tokenizer
        if request.messages is not None:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            text = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            ids = list(tokenizer(request.prompt)["input_ids"])
        if not ids and tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id]  # an empty prompt still needs one position
        return ids

    def _new_row(self, pending: _Pending) -> _RowState:
        import torch
        import xgrammar as xgr

        generator = torch.Generator(device="cpu")
        generator.manual_seed(derive_seed(self.config.seed, pending.request))
        matcher = None if pending.grammar is None else xgr.GrammarMatcher(pending.grammar)
        return _RowState(pending.request, matcher, generator)

    def _decode(self, batch: list[_Pending]) -> tuple[list[_RowState], list[int]]:
        import torch
        import xgrammar as xgr

        rows = [self._new_row(p) for p in batch]
        prompts = [self._encode(p.request) for p in batch]
        input_ids, mask = self._left_pad(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        if self._lora is not None:
            self._lora.select([p.request.adapter for p in batch])
        bitmask = xgr.allocate_token_bitmask(len(rows), self._vocab_size)
        past = None
        steps = max(p.request.max_tokens for p in batch)
        with torch.inference_mode():
            for _ in range(steps):
                out = self._model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=past,
                    use_cache=True,
                    logits_to_keep=1,
                )
                past = out.past_key_values
                logits = out.logits[:, -1, : self._vocab_size].float().cpu()
                self._mask_logits(rows, logits, bitmask)
                next_ids = [self._step_row(row, logits[i]) for i, row in enumerate(rows)]
                if all(row.done for row in rows):
                    break
                input_ids = torch.tensor(next_ids, device=self._device).unsqueeze(-1)
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
                positions = positions[:, -1:] + 1
        for row in rows:
            if not row.cut_at_stop:
                row.text = self._tokenizer.decode(row.tokens, skip_special_tokens=True)
        return rows, [len(p) for p in prompts]

    def _left_pad(self, prompts: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(p) for p in prompts)
        pad = self._tokenizer.pad_token_id
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            if prompt:
                ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
                mask[i, width - len(prompt) :] = 1
        return ids.to(self._device), mask.to(self._device)

    @staticmethod
    def _mask_logits(rows: list[_RowState], logits: Any, bitmask: Any) -> None:
        """Masks, in place, the logits of constrained rows to the tokens their grammar allows."""
        import xgrammar as xgr

        constrained = [
            i
            for i, row in enumerate(rows)
            if row.matcher is not None
            and not row.done
            and row.matcher.fill_next_token_bitmask(bitmask, i)
        ]
        if constrained:
            xgr.apply_token_bitmask_inplace(
                logits, bitmask, vocab_size=logits.shape[-1], indices=constrained
            )

    def _step_row(self, row: _RowState, logits: Any) -> int:
        """Chooses a row's next token and advances its state; returns the token to feed."""
        pad = int(self._tokenizer.pad_token_id)
        if row.done:
            return pad  # finished rows keep computing but nothing of theirs changes
        request = row.request
        token = sample_token(logits, request.temperature, request.top_p, row.generator)
        row.tokens.append(token)
        if row.matcher is not None and not row.matcher.accept_token(token):
            row.finish_reason, row.error = "error", f"grammar rejected token {token}"
            return pad
        if token in self._eos_ids or (row.matcher is not None and row.matcher.is_terminated()):
            row.finish_reason = "stop"
            return token
        if request.stop:
            text = self._tokenizer.decode(row.tokens, skip_special_tokens=True)
            cut = find_stop(text, request.stop)
            if cut is not None:
                row.text, row.finish_reason, row.cut_at_stop = text[:cut], "stop", True
                return token
        if len(row.tokens) >= request.max_tokens:
            row.finish_reason = "length"
        return token


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
