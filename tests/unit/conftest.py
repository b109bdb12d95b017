"""Unit-test fixtures: the tiny real model, built once per session into a temporary folder."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.config import EngineConfig
from serving.engines.hf import HFEngine

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (seed 0, adapters alice and bob), laid out as in the cache."""
    from serving.tiny_model import build_tiny_model, tiny_model_dir

    cache = tmp_path_factory.mktemp("simulacra-cache")
    return build_tiny_model(cache / tiny_model_dir(0).name, seed=0)


@pytest.fixture
def tiny_cache(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points ``$SIMULACRA_CACHE`` at the session's tiny model, so ``model="tiny"`` finds it."""
    monkeypatch.setenv("SIMULACRA_CACHE", str(tiny_model_dir.parent))
    return tiny_model_dir.parent


@pytest.fixture(scope="session")
def start_tiny_engine(tiny_model_dir: Path) -> Callable[..., HFEngine]:
    """Starts an hf engine on the tiny model and its adapters, with any engine settings."""
    adapters = {n: str(tiny_model_dir / "adapters" / n) for n in ("alice", "bob")}

    def start(**settings: Any) -> HFEngine:
        engine = HFEngine(EngineConfig(model=str(tiny_model_dir), adapters=adapters, **settings))
        engine.start()
        return engine

    return start
