"""The host: several agents in one process, stepped concurrently; a Ray actor in one line.

``AgentHost`` is a plain class (tests construct it directly); :func:`remote_host` makes it a Ray
actor. It holds only what its agents need: the LLM and embedding clients (names, not handles,
cross the boundary), one memory store, the agents. Values in and out are plain data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from actors.mind.agent import Agent
from actors.mind.events import Observation
from actors.mind.memory import Memory
from actors.mind.memory_store import MemoryStore
from actors.mind.persona import Persona
from actors.mind.retrieval import TraceRow
from actors.mind.settings import MindSettings
from serving.embedding import Embedder
from serving.llm import LLM


class AgentHost:
    """Hosts agents; ``step`` runs them all concurrently (their model calls meet in one batch).

    Args:
        personas: the agents' identities, as plain dicts (``Persona.to_dict``).
        settings: the mind's settings, as a plain dict (``MindSettings.model_dump``).
        seed: the run's seed.
        llm: the model; by default the LLM service's Serve client.
        embedder: by default the embedding service's Serve client.
        store: by default an embedded Qdrant store at ``qdrant`` (":memory:", a folder or a URL).
    """

    def __init__(
        self,
        personas: Sequence[dict[str, Any]],
        settings: dict[str, Any] | None = None,
        seed: int = 0,
        qdrant: str = ":memory:",
        llm: LLM | None = None,
        embedder: Embedder | None = None,
        store: MemoryStore | None = None,
    ) -> None:
        if llm is None or embedder is None:
            from serving.clients import ServeEmbedder, ServeLLM

            llm = llm or ServeLLM()
            embedder = embedder or ServeEmbedder()
        if store is None:
            from actors.qdrant_store import QdrantMemoryStore

            store = QdrantMemoryStore(qdrant, dim=embedder.dim)
        self.settings = MindSettings.model_validate(settings or {})
        self.agents: dict[str, Agent] = {}
        for data in personas:
            persona = Persona.from_dict(data)
            if persona.name in self.agents:
                raise ValueError(f"agent {persona.name!r} is hosted twice")
            memory = Memory(persona.name, store, embedder, self.settings.retrieval)
            self.agents[persona.name] = Agent(persona, llm, memory, self.settings, seed)

    def names(self) -> list[str]:
        return list(self.agents)

    async def step(
        self, observations: dict[str, list[dict[str, Any]]], now: str
    ) -> dict[str, list[dict[str, Any]]]:
        """One step of every hosted agent. ``now`` is ISO game time; values are plain dicts."""
        when = datetime.fromisoformat(now)
        names = list(self.agents)
        results = await asyncio.gather(
            *[
                self.agents[n].step(
                    [Observation.from_dict(o) for o in observations.get(n, [])], when
                )
                for n in names
            ]
        )
        return {
            n: [a.to_dict() for a in actions] for n, actions in zip(names, results, strict=True)
        }

    async def interview(self, name: str, question: str, now: str) -> dict[str, Any]:
        if name not in self.agents:
            raise KeyError(f"no agent {name!r} here; hosted: {', '.join(self.agents)}")
        answer, used = await self.agents[name].interview(question, datetime.fromisoformat(now))
        return {"agent": name, "question": question, "answer": answer, "record_ids": used}

    def drain_traces(self) -> dict[str, list[dict[str, Any]]]:
        """Every agent's retrieval traces since the last drain, as rows of plain data."""
        return {
            n: [_trace_dict(r) for r in a.memory.drain_traces()] for n, a in self.agents.items()
        }

    def get_state(self) -> dict[str, Any]:
        return {n: a.get_state() for n, a in self.agents.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        unknown = set(state) - set(self.agents)
        if unknown:
            raise KeyError(f"state for agents not hosted here: {sorted(unknown)}")
        for n, s in state.items():
            self.agents[n].set_state(s)


def _trace_dict(row: TraceRow) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(row)


def remote_host(**actor_options: Any) -> Any:
    """``AgentHost`` as a Ray actor class (async: its agents' calls run concurrently)."""
    import ray

    options = {"num_cpus": 0, "max_concurrency": 1000, **actor_options}
    return ray.remote(**options)(AgentHost)
