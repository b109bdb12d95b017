"""A character end to end: data imported, an adapter trained on the tiny model, then served by
name by the LLM service and spoken through by a scenario's agent in a run on local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from characters.importer import import_data
from characters.train import train_adapter
from cluster.run import RunOptions, start_run
from scenarios.synthetic import synthetic_town
from serving.config import EngineConfig

pytestmark = pytest.mark.integration


def test_a_trained_adapter_speaks_for_a_scenario_agent(
    restores_services: None, tmp_path: Path
) -> None:
    records = [
        {
            "prompt": "You are Socrates.\n\nLocation: Agora\nStatus: Socrates talks.\n\n",
            "output": f"Socrates (speaking): I know that I know nothing, friend {i}.<|eot|>",
            "source": "hand",
        }
        for i in range(16)
    ]
    released = tmp_path / "prompted_agent_dialogue_Socrates.jsonl"
    released.write_text("".join(json.dumps(r) + "\n" for r in records))
    import_data(released, tmp_path / "data")
    adapter = tmp_path / "adapters" / "socrates"
    card = train_adapter(tmp_path / "data", "tiny", adapter, epochs=2, lr=1e-2, progress=False)
    assert card["final_train_loss"] < card["epochs"][0]["train_loss"]  # it learned

    town = synthetic_town(3, seed=0, hours=0.05)
    agents = [
        a.model_copy(update={"adapter": "socrates"}) if i == 0 else a
        for i, a in enumerate(town.agents)
    ]
    town = town.model_copy(update={"agents": agents})
    engine = EngineConfig(model="tiny", adapters={"socrates": str(adapter)})
    run = start_run(town, RunOptions(engine=engine, steps=2, progress=False), out=tmp_path / "run")
    calls = pq.read_table(run / "llm_calls.parquet").to_pylist()
    speaker = town.agents[0].name
    assert {c["adapter"] for c in calls if c["agent"] == speaker} == {"socrates"}
    assert {c["adapter"] for c in calls if c["agent"] != speaker} == {None}
    assert all(c["ok"] or c["error"] for c in calls)
