"""A run's agents as they were at one of its checkpoints, in this process (no Ray): what
``simulacra interview`` and ``simulacra measure`` ask. Nothing in the run folder changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from actors.host import AgentHost
from actors.messages import MemoryExport
from actors.mind.memory_store import InMemoryStore
from actors.mind.persona import Persona
from actors.mind.settings import MindSettings
from scenarios.schema import Scenario
from serving.config import EngineConfig
from serving.embedding import Embedder
from serving.llm import LLM


def local_llm(engine: EngineConfig) -> LLM:
    """``engine``'s model loaded in this process, after ``cluster.run.check_engine`` (a missing
    model or adapter is a ``RunError`` before anything loads)."""
    from cluster.run import check_engine
    from serving.server import LLMServer

    check_engine(engine, fresh=False)
    server = LLMServer(engine)
    server.start()
    return server


def local_embedder() -> Embedder:
    """The MiniLM embedder, loaded in this process."""
    from serving.embedding import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.start()
    return embedder


def run_engine(manifest: Mapping[str, Any]) -> EngineConfig:
    """The run's own model, without its recording or replay file."""
    saved = manifest["options"]["engine"]
    return EngineConfig.model_validate({**saved, "record": None, "replay": None})


async def restored_host(
    manifest: Mapping[str, Any],
    state: Mapping[str, Any],
    names: Sequence[str],
    llm: LLM,
    embedder: Embedder,
) -> tuple[AgentHost, datetime]:
    """One host holding ``names`` as checkpoint ``state`` left them (memories with their
    vectors), and the checkpoint's game time."""
    scenario = Scenario.model_validate(manifest["scenario"])
    personas = [Persona.from_dict(a.persona()) for a in scenario.agents if a.name in names]
    host = AgentHost(
        personas,
        MindSettings.model_validate(manifest["settings"]),
        int(manifest["seed"]),
        llm=llm,
        embedder=embedder,
        store=InMemoryStore(embedder.dim),
    )
    now = datetime.fromisoformat(state["clock"]["now"])
    await host.restore(
        {n: state["agents"][n] for n in names},
        {n: MemoryExport.from_dict(state["memories"][n]) for n in names},
        now,
    )
    return host, now
