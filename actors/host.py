"""The host: several agents in one process, stepped concurrently; a Ray actor in one line.

``AgentHost`` is a plain class (tests construct it directly); :func:`remote_host` makes it a Ray
actor. It holds only what its agents need: the LLM and embedding clients (names, not handles,
cross the boundary), one memory store, the agents. Every public method is async, so a driver
awaits a local host's method and a Ray actor's ``.remote()`` the same way. Values in and out are
plain data (dicts, lists, str, int, float, bool, None, bytes), never dataclasses.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from actors.mind.agent import Agent
from actors.mind.dialogue import Conversation
from actors.mind.events import Observation
from actors.mind.memory import Memory
from actors.mind.memory_store import MemoryStore
from actors.mind.persona import Persona
from actors.mind.records import KINDS, MemoryRecord
from actors.mind.settings import MindSettings
from serving.embedding import Embedder
from serving.llm import LLM
from serving.types import LLMRequest, LLMResult
from serving.wrappers.accounting import AccountingLLM
from serving.wrappers.serial import SerialLLM

T = TypeVar("T")


class _Tally:
    """Counts the requests and tokens that pass (the host's calls of one step)."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.requests = 0
        self.tokens = 0

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results = await self.inner.generate(requests)
        self.requests += len(requests)
        self.tokens += sum(r.prompt_tokens + r.completion_tokens for r in results)
        return results


class AgentHost:
    """Hosts agents; ``step`` runs them concurrently (their model calls meet in one batch).

    Args:
        personas: the agents' identities, as plain dicts (``Persona.to_dict``).
        settings: the mind's settings, as a plain dict (``MindSettings.model_dump``).
        seed: the run's seed.
        qdrant: where the default store lives (":memory:", a folder or a URL).
        llm: the model; by default the LLM service's Serve client.
        embedder: by default the embedding service's Serve client.
        store: by default an embedded Qdrant store at ``qdrant``.
        sequential: the unbatched baseline: agents are stepped one at a time and the model gets
            one request per call, one call at a time (:class:`~serving.wrappers.SerialLLM`).

    Every model call is accounted (:attr:`accounting`, rows with the step and the agent).
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
        sequential: bool = False,
        collection_prefix: str = "simulacra",
    ) -> None:
        self._baseline_rss_mb = _rss_mb()  # before any agent is built (see :meth:`usage`)
        if llm is None or embedder is None:
            from serving.clients import ServeEmbedder, ServeLLM

            llm = llm or ServeLLM()
            embedder = embedder or ServeEmbedder()
        if store is None:
            from actors.qdrant_store import QdrantMemoryStore

            store = QdrantMemoryStore(qdrant, dim=embedder.dim, collection_prefix=collection_prefix)
        self.sequential = sequential
        self.accounting = AccountingLLM(llm)
        # Serial outside accounting: a row's latency is the model call's, not the lock wait.
        self.tally = _Tally(SerialLLM(self.accounting) if sequential else self.accounting)
        self.llm: LLM = self.tally
        self.embedder = embedder
        self.store = store
        self.settings = MindSettings.model_validate(settings or {})
        self.agents: dict[str, Agent] = {}
        self._traces: list[dict[str, Any]] = []  # retrieval trace rows, tagged with their step
        self._reported = (0, 0)  # requests and tokens already reported by step()
        for data in personas:
            persona = Persona.from_dict(data)
            if persona.name in self.agents:
                raise ValueError(f"agent {persona.name!r} is hosted twice")
            memory = Memory(persona.name, store, embedder, self.settings.retrieval)
            self.agents[persona.name] = Agent(persona, self.llm, memory, self.settings, seed)

    def _agent(self, name: str) -> Agent:
        agent = self.agents.get(name)
        if agent is None:
            raise KeyError(f"no agent {name!r} here; hosted: {', '.join(self.agents)}")
        return agent

    async def _each(
        self, names: Sequence[str], work: Callable[[str], Awaitable[T]]
    ) -> dict[str, T]:
        """``work(name)`` for each name: concurrently, or one at a time when sequential."""
        if self.sequential:
            return {n: await work(n) for n in names}
        results = await asyncio.gather(*[work(n) for n in names])
        return dict(zip(names, results, strict=True))

    async def ping(self) -> bool:
        """True (a health check)."""
        return True

    async def usage(self) -> dict[str, Any]:
        """This host's process: ``pid``, ``rss_mb`` now, ``peak_rss_mb`` so far,
        ``baseline_rss_mb`` (at the start of ``__init__``, before the agents) and ``agents``."""
        return {
            "pid": os.getpid(),
            "rss_mb": _rss_mb(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_rss_mb": self._baseline_rss_mb,
            "agents": len(self.agents),
        }

    async def names(self) -> list[str]:
        """The hosted agents' names."""
        return list(self.agents)

    async def step(
        self,
        observations: dict[str, list[dict[str, Any]]],
        now: str,
        step: int,
        learned: dict[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        """One step of the agents named in ``observations`` (an empty list still steps one).

        Args:
            observations: per agent, its observations (``Observation.to_dict``).
            now: ISO game time.
            step: the step number (for accounting).
            learned: per agent, places it has newly come to know (given before stepping).

        Returns:
            ``actions``: per stepped agent, its new actions (``Action.to_dict``; none while it
            continues); ``written``: per stepped agent, ``[kind, description]`` of the memory
            records it wrote; ``calls`` and ``tokens``: the model requests of the step and
            their prompt + completion tokens.
        """
        for name, places in (learned or {}).items():
            self._agent(name).learn_places(places)
        for name in observations:
            self._agent(name)
        when = datetime.fromisoformat(now)

        async def one(name: str) -> list[dict[str, Any]]:
            obs = [Observation.from_dict(o) for o in observations[name]]
            with self.accounting.context(step=step, agent=name):
                actions = await self.agents[name].step(obs, when)
            self._keep_traces(name, step)
            return [a.to_dict() for a in actions]

        calls, tokens = self._reported
        actions = await self._each(list(observations), one)
        self._reported = (self.tally.requests, self.tally.tokens)
        return {
            "actions": actions,
            "written": {n: self._written(n) for n in observations},
            "calls": self.tally.requests - calls,  # this step's, and any conversation's since
            "tokens": self.tally.tokens - tokens,
        }

    def _keep_traces(self, name: str, step: int) -> None:
        self._traces.extend(
            {"step": step, "agent": name, **asdict(row)}
            for row in self.agents[name].memory.drain_traces()
        )

    def _written(self, name: str) -> list[list[str]]:
        return [[kind, text] for kind, text in self.agents[name].memory.drain_journal()]

    async def drain_written(self) -> dict[str, list[list[str]]]:
        """Per agent, ``[kind, description]`` of the records written since the last drain (or
        step) that wrote some."""
        written = {n: self._written(n) for n in self.agents}
        return {n: rows for n, rows in written.items() if rows}

    async def seed_memories(
        self, memories: dict[str, list[list[Any]]], now: str, step: int = 0
    ) -> None:
        """Stores each agent's starting memories, items ``[text, importance or None]``; the
        model calls scoring them are accounted at ``step``."""
        for name in memories:
            self._agent(name)
        when = datetime.fromisoformat(now)

        async def one(name: str) -> None:
            items = [(str(text), None if imp is None else int(imp)) for text, imp in memories[name]]
            with self.accounting.context(step=step, agent=name):
                await self.agents[name].seed_memories(items, when)

        await self._each(list(memories), one)
        for name in memories:  # starting memories, not events of a step
            self.agents[name].memory.drain_journal()
        self._reported = (self.tally.requests, self.tally.tokens)

    async def speak(
        self, name: str, other: str, transcript: list[list[str]], now: str, step: int
    ) -> list[Any]:
        """``name``'s next line to ``other``: ``[line, end]``."""
        agent = self._agent(name)
        lines = tuple((str(s), str(u)) for s, u in transcript)
        with self.accounting.context(step=step, agent=name):
            line, end = await agent.speak(other, lines, datetime.fromisoformat(now))
        self._keep_traces(name, step)
        return [line, end]

    async def summarize(self, name: str, other: str, transcript: list[list[str]], step: int) -> str:
        """``name``'s one-line summary of its conversation with ``other``."""
        agent = self._agent(name)
        with self.accounting.context(step=step, agent=name):
            return await agent.summarize(other, [(str(s), str(u)) for s, u in transcript])

    async def finish_conversation(
        self, name: str, conversation: dict[str, Any], now: str, step: int
    ) -> dict[str, Any]:
        """``name`` stores and reflects on a finished conversation; returns its ``chat_done``
        action. ``conversation``: participants ``[a, b]``, transcript ``[[speaker, line], ...]``,
        summary, started (ISO), minutes."""
        agent = self._agent(name)
        a, b = conversation["participants"]
        talk = Conversation(
            participants=(str(a), str(b)),
            transcript=tuple((str(s), str(u)) for s, u in conversation["transcript"]),
            summary=str(conversation["summary"]),
            started=datetime.fromisoformat(conversation["started"]),
            minutes=int(conversation["minutes"]),
        )
        with self.accounting.context(step=step, agent=name):
            action = await agent.finish_conversation(talk, datetime.fromisoformat(now))
        self._keep_traces(name, step)
        return action.to_dict()

    async def interview(self, name: str, question: str, now: str) -> dict[str, Any]:
        """``name`` answers ``question`` in character: the answer and the records it used."""
        agent = self._agent(name)
        with self.accounting.context(agent=name):
            answer, used = await agent.interview(question, datetime.fromisoformat(now))
        return {"agent": name, "question": question, "answer": answer, "record_ids": used}

    async def drain(self) -> dict[str, list[dict[str, Any]]]:
        """What happened since the last drain, as rows of plain data (then forgotten here).

        ``llm_calls``: the accounting rows; ``retrievals``: every agent's retrieval trace rows,
        each with an ``agent`` key.
        """
        calls = self.accounting.rows()
        self.accounting.clear()
        for name in self.agents:  # retrievals outside a step (an interview) have no step
            self._traces.extend(
                {"step": None, "agent": name, **asdict(row)}
                for row in self.agents[name].memory.drain_traces()
            )
        retrievals, self._traces = self._traces, []
        return {"llm_calls": calls, "retrievals": retrievals}

    async def export_memories(self) -> dict[str, dict[str, Any]]:
        """Per agent: its records (``MemoryRecord.to_dict`` without the embedding, in store
        order) and their vectors as bytes (float32, row-major, ``len(records) x dim``)."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.agents:
            records, vectors = await self.store.candidates(name, KINDS)
            rows = []
            for r in records:
                d = r.to_dict()
                d.pop("embedding", None)
                rows.append(d)
            matrix = np.ascontiguousarray(vectors, dtype=np.float32)
            out[name] = {"records": rows, "vectors": matrix.tobytes()}
        return out

    async def restore(
        self, state: dict[str, Any], memories: dict[str, dict[str, Any]], when: str
    ) -> None:
        """Back to a checkpoint taken at game time ``when``: the agents' state, and each agent's
        store as it was (records created after ``when`` deleted, the checkpoint's records
        upserted: their ``last_accessed`` restored, missing ones re-added)."""
        unknown = set(memories) - set(self.agents)
        if unknown:
            raise KeyError(f"memories for agents not hosted here: {sorted(unknown)}")
        await self.set_state(state)
        cut = datetime.fromisoformat(when)
        for name, saved in memories.items():
            await self.store.delete_created_after(name, cut)
            records = [MemoryRecord.from_dict(d) for d in saved["records"]]
            if not records:
                continue
            vectors = np.frombuffer(saved["vectors"], dtype=np.float32).reshape(len(records), -1)
            await self.store.add(records, vectors)
        for agent in self.agents.values():  # what was written belongs to a discarded future
            agent.memory.drain_journal()

    async def get_state(self) -> dict[str, Any]:
        """Every agent's state (memory aside: see :meth:`export_memories`)."""
        return {n: a.get_state() for n, a in self.agents.items()}

    async def set_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`get_state` returned (for some or all hosted agents)."""
        unknown = set(state) - set(self.agents)
        if unknown:
            raise KeyError(f"state for agents not hosted here: {sorted(unknown)}")
        for n, s in state.items():
            self.agents[n].set_state(s)

    async def close(self) -> None:
        """Closes the store (where it has a ``close``)."""
        close = getattr(self.store, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result


def _rss_mb() -> float:
    """This process's resident memory now, in MB (``VmRSS``; 0.0 where there is no /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def remote_host(**actor_options: Any) -> Any:
    """``AgentHost`` as a Ray actor class (async: its agents' calls run concurrently)."""
    import ray

    options = {"num_cpus": 0, "max_concurrency": 1000, **actor_options}
    return ray.remote(**options)(AgentHost)
