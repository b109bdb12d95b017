"""Eight of the town's people with a real model, and what a reader checks of their run: every
agent planned, they act in several places, the answers are used (not fallbacks) for every
purpose, the prefix cache serves a share of the prompts. One copy for every engine's town test
(``hf``, ``vllm``, ``openai`` against vLLM's server)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from cluster.checkpoints import read_checkpoint
from cluster.run import read_manifest
from scenarios.loader import parse_scenario, read_yaml
from scenarios.schema import Scenario

TOWN = Path(__file__).parents[1] / "scenarios" / "town.yaml"
PEOPLE = {
    *("Tobias Marrow", "Elin Marrow", "Pip Marrow", "Grace Okafor", "Daniel Okafor"),
    *("Owen Castell", "Lucia Castell", "Rosalind Pryce"),  # the party's and the candidacy's
}


def eight_of_the_town() -> Scenario:
    """The town with only :data:`PEOPLE` (two families and their neighbours, and the holders
    of the party and the candidacy): their relationships to the others, and the events told
    only to the others, left out. A step with the whole town plans 25 days."""
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


def check_town_run(run: Path, scenario: Scenario, cached_share: float = 0.3) -> None:
    """Asserts what a reader of the run would check first (see the module's docstring)."""
    manifest = read_manifest(run)
    assert manifest["status"] == "finished", manifest.get("error")
    names = {a.name for a in scenario.agents}
    events = pq.read_table(run / "events.parquet").to_pylist()
    planned = {e["agent"] for e in events if e["kind"] == "plan"}
    assert planned == names
    # where the agents act (go, do, talk): in several places, not all in one
    places = {e["location"] for e in events if e["kind"] in ("activity", "move", "talk")}
    assert len(places) >= 3, places

    calls = pq.read_table(run / "llm_calls.parquet").to_pylist()
    assert calls and sum(c["ok"] for c in calls) / len(calls) >= 0.9
    cached = sum(c["cached_tokens"] for c in calls)
    assert cached > cached_share * sum(c["prompt_tokens"] for c in calls)
    asked: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for agent in read_checkpoint(run)["agents"].values():
        asked.update(agent["asker"]["stats"]["calls"])
        failed.update(agent["asker"]["stats"]["failures"])
    assert asked, "the agents asked the model nothing"
    for purpose, n in asked.items():  # mostly used answers, not fallbacks, for every purpose
        assert failed[purpose] <= 0.1 * n, (purpose, failed[purpose], n)
