"""The town's people with the real default model (SmolLM2-135M-Instruct) on the real stack:
local Ray, Serve, the hf engine with continuous batching and the prefix cache, the real embedder,
embedded Qdrant. Eight of the 25 agents (``tests/town_checks.py``). Slow (minutes on 2 cores):
its own CI command (`pytest -m slow`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.run import RunOptions, start_run
from serving.config import EngineConfig
from tests.town_checks import PEOPLE, check_town_run, eight_of_the_town

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = 3


def test_the_town_plans_and_acts_with_smollm2_and_its_answers_are_used(
    restores_services: None, tmp_path: Path
) -> None:
    town = eight_of_the_town()
    assert {a.name for a in town.agents} == PEOPLE
    options = RunOptions(
        engine=EngineConfig(model="smollm2"),
        steps=STEPS,
        checkpoint_every=STEPS,
        agents_per_host="auto",
        progress=False,
        seed=5,
    )
    check_town_run(start_run(town, options, out=tmp_path / "run"), town)
