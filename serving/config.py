"""Typed configuration of the LLM service, loaded once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.adapters import check_adapter_name

EngineName = Literal["hf", "vllm", "openai"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)  # the --engine choices of every command
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(Dtype)  # the --dtype choices


class EngineConfig(BaseModel):
    """Which engine serves which model and adapters, and how it batches.

    ``model`` is a local folder, a hub id, or ``tiny`` (the project's own test model, built on
    first use). ``adapters`` maps adapter names to peft adapter folders; with ``model: tiny`` and
    no adapters, the tiny model's own adapters are served.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineName = "hf"
    model: str = "smollm2"
    adapters: dict[str, str] = Field(default_factory=dict)
    seed: int = 0
    # hf
    device: str | None = None  # None: cuda when present, else cpu
    dtype: Dtype = "auto"
    cpu_threads: int | None = Field(None, ge=1)  # torch threads on a CPU; None: cores left free
    max_batch_size: int = Field(32, ge=1)  # hf: most rows decoding at once
    batch_wait_ms: float = Field(5.0, ge=0)  # dynamic batching (embedder); hf schedules per pass
    prefill_chunk_tokens: int = Field(256, ge=1)  # hf: most prompt tokens in one forward pass
    kv_cache_mb: int = Field(4096, ge=1)  # hf: KV memory of running rows (a lone row always runs)
    prefix_cache_mb: int = Field(1024, ge=0)  # hf: KV of cached prompt prefixes; 0: no cache
    jump_forward: bool = True  # hf: text the grammar forces goes in one pass, not token by token
    # Limits on one request, refused with HTTP 400 and an OpenAI error body naming the limit
    # (the model's context is the other: max_model_len).
    max_request_bytes: int = Field(1 << 20, ge=1)  # an HTTP body, refused before it is parsed
    max_tokens_limit: int = Field(4096, ge=1)  # the most max_tokens a request may ask for
    # hf: a row decoding longer than this (from its admission) ends with finish reason "length"
    # and the text so far (a safety net: SmolLM2 writes about 12 tokens/s on 2 cores); None: none
    max_decode_s: float | None = Field(600.0, gt=0)
    # vllm
    max_loras: int = Field(8, ge=1)
    max_lora_rank: int = Field(16, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = None  # vllm and hf: the context; None: the model's own
    # openai
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = Field(120.0, gt=0)
    # recording and replay of the model's answers (msgpack files; see serving.wrappers.recording)
    record: str | None = None  # append every request and answer to this file
    replay: str | None = None  # answer from this recording instead of the engine

    @model_validator(mode="after")
    def _record_or_replay(self) -> EngineConfig:
        if self.record is not None and self.replay is not None:
            raise ValueError("record and replay cannot both be set")
        return self

    @field_validator("adapters")
    @classmethod
    def _names_are_safe(cls, adapters: dict[str, str]) -> dict[str, str]:
        for name in adapters:
            check_adapter_name(name)
        return adapters


ENGINE_FLAGS: dict[str, str] = {
    "engine": "engine",
    "model": "model",
    "base_url": "base_url",
    "upstream_api_key": "api_key",
    "seed": "seed",
    "dtype": "dtype",
}
"""Every command's engine flags (``--engine``, ``--model``, ``--base-url``,
``--upstream-api-key``, ``--seed``, ``--dtype``) and the :class:`EngineConfig` field each
sets."""

DTYPE_HELP = (
    "the model's weights: auto (float32 on a CPU: greedy answers exact whatever the batch and "
    "the prefix cache), bfloat16 (about 1.6x faster on CPUs with AMX or AVX-512 bf16, but a "
    "greedy answer can change with the cache), float16"
)


class EngineFlagsError(ValueError):
    """Engine flags that cannot go together."""


def engine_fields(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`EngineConfig` fields set by the engine flags given (not None) in ``flags``
    (argparse's names, as :data:`ENGINE_FLAGS`), checked by :func:`check_engine_fields`."""
    fields = {f: flags[k] for k, f in ENGINE_FLAGS.items() if flags.get(k) is not None}
    check_engine_fields(fields)
    return fields


def check_engine_fields(fields: Mapping[str, Any]) -> None:
    """Raises :class:`EngineFlagsError` for ``--engine openai`` without ``--base-url``."""
    if fields.get("engine") == "openai" and not fields.get("base_url"):
        raise EngineFlagsError("--engine openai needs --base-url (the OpenAI-compatible server)")
