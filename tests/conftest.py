"""Fixtures shared by every tier."""

import os
from pathlib import Path

import pytest

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The built-in real model's converted folder (converted into the cache on first use)."""
    from serving.smollm2 import smollm2_model_dir

    return smollm2_model_dir()


@pytest.fixture(scope="session")
def smollm2_adapters(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two LoRA adapters for smollm2 (``alice``, ``bob``), made with peft for this session."""
    from tests.lora_adapters import make_lora_adapters

    return make_lora_adapters(smollm2_dir, tmp_path_factory.mktemp("smollm2-adapters"))
