"""The town's people with the real default model (SmolLM2-135M-Instruct) on the real stack:
local Ray, Serve, the hf engine with continuous batching and the prefix cache, the real embedder,
embedded Qdrant. Eight of the 25 agents (two families and their neighbours), since a step with
the whole town plans 25 days on one CPU thread (about 10 minutes here). Slow (minutes on 2
cores): its own CI command (`pytest -m slow`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster.checkpoints import read_checkpoint
from cluster.run import RunOptions, read_manifest, start_run
from scenarios.loader import parse_scenario, read_yaml
from scenarios.schema import Scenario
from serving.config import EngineConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOWN = Path(__file__).parents[2] / "scenarios" / "town.yaml"
STEPS = 3
PEOPLE = {
    *("Tobias Marrow", "Elin Marrow", "Pip Marrow", "Grace Okafor", "Daniel Okafor"),
    *("Owen Castell", "Lucia Castell", "Rosalind Pryce"),  # the party's and the candidacy's
}


def _eight_of_the_town() -> Scenario:
    """The town with only :data:`PEOPLE`: their relationships to the others, and the events
    told only to the others, left out."""
    data = read_yaml(TOWN)
    data["agents"] = [a for a in data["agents"] if a["name"] in PEOPLE]
    for agent in data["agents"]:
        agent["relationships"] = {
            k: v for k, v in agent.get("relationships", {}).items() if k in PEOPLE
        }
    for event in data["events"]:
        if "to" in event:
            event["to"] = [n for n in event["to"] if n in PEOPLE]
    data["events"] = [e for e in data["events"] if e.get("to", True)]
    return parse_scenario(data, str(TOWN))


def test_the_town_plans_and_acts_with_smollm2_and_its_answers_are_used(
    restores_services: None, tmp_path: Path
) -> None:
    town = _eight_of_the_town()
    assert {a.name for a in town.agents} == PEOPLE
    options = RunOptions(
        engine=EngineConfig(model="smollm2"),
        steps=STEPS,
        checkpoint_every=STEPS,
        agents_per_host="auto",
        progress=False,
        seed=5,
    )
    run = start_run(town, options, out=tmp_path / "run")
    assert read_manifest(run)["status"] == "finished"
    names = {a.name for a in town.agents}
    events = pq.read_table(run / "events.parquet").to_pylist()
    planned = {e["agent"] for e in events if e["kind"] == "plan"}
    assert planned == names
    # where the agents act (go, do, talk): in several places, not all in one
    places = {e["location"] for e in events if e["kind"] in ("activity", "move", "talk")}
    assert len(places) >= 3, places

    calls = pq.read_table(run / "llm_calls.parquet").to_pylist()
    assert calls and sum(c["ok"] for c in calls) / len(calls) >= 0.9
    assert sum(c["cached_tokens"] for c in calls) > 0.3 * sum(c["prompt_tokens"] for c in calls)
    asked: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for agent in read_checkpoint(run)["agents"].values():
        asked.update(agent["asker"]["stats"]["calls"])
        failed.update(agent["asker"]["stats"]["failures"])
    assert asked, "the agents asked the model nothing"
    for purpose, n in asked.items():  # mostly used answers, not fallbacks, for every purpose
        assert failed[purpose] <= 0.1 * n, (purpose, failed[purpose], n)
