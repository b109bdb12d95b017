"""LLM engines, each imported only when chosen.

``hf``: transformers with peft-format LoRA adapters gathered per row (CPU or GPU); ``vllm``
(GPU); ``openai``: any OpenAI-compatible server.
"""

from __future__ import annotations

from serving.config import EngineConfig
from serving.llm import Engine


def make_engine(config: EngineConfig) -> Engine:
    """Constructs (does not start) the engine that ``config`` names."""
    if config.engine == "hf":
        from serving.engines.hf import HFEngine

        return HFEngine(config)
    if config.engine == "vllm":
        from serving.engines.vllm import VLLMEngine

        return VLLMEngine(config)
    if config.engine == "openai":
        from serving.engines.openai import OpenAIEngine

        return OpenAIEngine(config)
    raise ValueError(f"unknown engine {config.engine!r}")
