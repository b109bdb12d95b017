"""An agent on the real stack: embedded Qdrant, the real embedder, the tiny model (hf engine)."""

from datetime import datetime, timedelta

import pytest

from actors.mind.agent import Agent
from actors.mind.events import Observation
from actors.mind.memory import Memory
from actors.mind.persona import Persona
from actors.mind.settings import MindSettings
from actors.qdrant import open_qdrant_store
from serving.config import EngineConfig
from serving.embedding import MiniLMEmbedder
from serving.engines.hf import HFEngine

pytestmark = pytest.mark.integration

START = datetime(2023, 2, 13, 0, 0)


async def test_an_agent_lives_a_game_day_on_the_real_stack() -> None:
    engine = HFEngine(EngineConfig(model="tiny"))
    engine.start()
    persona = Persona(
        "Klaus Mueller",
        20,
        "kind, inquisitive, passionate",
        "student of sociology, writes a research paper on gentrification",
        home="Dorm for Oak Hill College",
        known_places=("Oak Hill College library", "Hobbs Cafe", "Dorm for Oak Hill College"),
        adapter="alice",
    )
    settings = MindSettings.from_preset("paper", reflection={"threshold": 60})
    store = open_qdrant_store(":memory:", dim=384)
    memory = Memory(persona.name, store, MiniLMEmbedder(), settings.retrieval)
    agent = Agent(persona, engine, memory, settings, seed=7)

    for i in range(0, 24 * 60, 30):
        now = START + timedelta(minutes=i)
        obs = []
        if i % 90 == 0:
            obs = [
                Observation("agent", "Maria Lopez", f"Maria Lopez is studying at {i}", "library", 3)
            ]
        await agent.step(obs, now)
        assert agent.plan is not None and agent.plan.total_minutes() == 1440

    records = await store.records(persona.name)
    by_id = {r.id: r for r in records}
    assert {"observation", "plan"} <= {r.kind for r in records}
    for r in records:
        assert 1 <= r.importance <= 10
        assert r.description.strip()
        if r.kind == "reflection":
            assert all(e in by_id for e in r.evidence)
            assert r.depth == 1 + max(by_id[e].depth for e in r.evidence)
    _answer, used = await agent.interview("What did you do today?", START + timedelta(hours=23))
    assert set(used) <= set(by_id)
