"""The host: several agents in one process, stepped concurrently; a Ray actor in one line.

``AgentHost`` is a plain class implementing :class:`~actors.host_protocol.Host` (tests construct
it directly); :func:`remote_host` makes it a Ray actor. It holds only what its agents need: the
LLM and embedding clients (names, not handles, cross the boundary), one memory store, the
agents. Every public method is async, so the driver awaits a local host and a Ray actor's proxy
the same way. Values in and out are the mind's own types and the frozen messages of
:mod:`actors.messages`.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from actors.messages import (
    AgentState,
    ConversationOutcome,
    HostRows,
    HostUsage,
    InterviewAnswer,
    Line,
    MemoryExport,
    ProbeAnswer,
    SeedMemory,
    StepResult,
    TableRow,
    Transcript,
    Written,
    WrittenByAgent,
)
from actors.mind.agent import Agent
from actors.mind.dialogue import Conversation, converse
from actors.mind.events import Action, Observation
from actors.mind.memory import Memory
from actors.mind.memory_store import MemoryStore
from actors.mind.persona import Persona
from actors.mind.records import KINDS
from actors.mind.settings import MindSettings
from actors.proc_memory import proc_mb
from serving.embedding import Embedder
from serving.llm import LLM
from serving.wrappers.accounting import AccountingLLM
from serving.wrappers.backend_guard import BackendGuardLLM
from serving.wrappers.retry import RetryLLM
from serving.wrappers.serial import SerialLLM

T = TypeVar("T")


class AgentHost:
    """Hosts agents; ``step`` runs them concurrently (their model calls meet in one batch).

    Args:
        personas: the agents' identities.
        settings: the mind's settings.
        seed: the run's seed.
        qdrant: where the default store lives (":memory:", a folder or a URL).
        llm: the model; by default the LLM service's Serve client.
        embedder: by default the embedding service's Serve client.
        store: by default an embedded Qdrant store at ``qdrant``.
        sequential: the unbatched baseline: agents are stepped one at a time and the model gets
            one request per call, one call at a time (:class:`~serving.wrappers.SerialLLM`).
        backend_wait_s: how long rows the model's backend failed are sent again before a call
            raises :class:`~serving.wrappers.BackendUnavailableError`
            (:class:`~serving.wrappers.BackendGuardLLM`).

    Every model call is accounted (:attr:`accounting`, rows with the step and the agent), the
    guard's re-sent rows included.
    """

    def __init__(
        self,
        personas: Sequence[Persona],
        settings: MindSettings | None = None,
        seed: int = 0,
        qdrant: str = ":memory:",
        llm: LLM | None = None,
        embedder: Embedder | None = None,
        store: MemoryStore | None = None,
        sequential: bool = False,
        collection_prefix: str = "simulacra",
        backend_wait_s: float = 120.0,
    ) -> None:
        self._baseline_rss_mb = _rss_mb()  # before any agent is built (see :meth:`usage`)
        if llm is None or embedder is None:
            from serving.clients import ServeEmbedder, ServeLLM, transport_errors

            # the service's transport failing (a replica restarting, a full queue) is retried,
            # then its rows are the backend's failures (the guard's); a long answer is not cut
            # by a timeout, and bad rows are the mind's to handle
            llm = llm or RetryLLM(
                ServeLLM(), timeout_s=None, retry_row_errors=False, retry_on=transport_errors()
            )
            embedder = embedder or ServeEmbedder()
        if store is None:
            from actors.qdrant import open_qdrant_store

            store = open_qdrant_store(qdrant, dim=embedder.dim, collection_prefix=collection_prefix)
        self.sequential = sequential
        self.accounting = AccountingLLM(llm)
        # Serial outside accounting: a row's latency is the model call's, not the lock wait.
        # The guard outside both: its backoff holds no lock, and every row it sends is accounted.
        self.llm: LLM = BackendGuardLLM(
            SerialLLM(self.accounting) if sequential else self.accounting,
            wait_s=backend_wait_s,
            backend="the LLM service",
        )
        self.embedder = embedder
        self.store = store
        self.settings = settings or MindSettings()
        self.agents: dict[str, Agent] = {}
        self._traces: list[TableRow] = []  # retrieval trace rows, tagged with their step
        self._reported = _Totals()  # what step() has reported so far
        for persona in personas:
            if persona.name in self.agents:
                raise ValueError(f"agent {persona.name!r} is hosted twice")
            memory = Memory(persona.name, store, embedder, self.settings.retrieval, seed=seed)
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
        tasks = [asyncio.ensure_future(work(n)) for n in names]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:  # one failed (a backend gone): the others stop, none lingers
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return dict(zip(names, results, strict=True))

    async def ping(self) -> bool:
        return True

    async def usage(self) -> HostUsage:
        return HostUsage(
            pid=os.getpid(),
            rss_mb=_rss_mb(),
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            baseline_rss_mb=self._baseline_rss_mb,
            agents=len(self.agents),
            node=_node_id(),
        )

    async def names(self) -> list[str]:
        return list(self.agents)

    async def step(
        self,
        observations: Mapping[str, Sequence[Observation]],
        now: datetime,
        step: int,
        learned: Mapping[str, Sequence[str]] | None = None,
    ) -> StepResult:
        for name, places in (learned or {}).items():
            self._agent(name).learn_places(list(places))
        for name in observations:
            self._agent(name)

        async def one(name: str) -> tuple[Action, ...]:
            with self.accounting.context(step=step, agent=name):
                actions = await self.agents[name].step(list(observations[name]), now)
            self._keep_traces(name, step)
            return tuple(actions)

        actions = await self._each(list(observations), one)
        done = self._report()
        return StepResult(
            actions=actions,
            written={n: self._written(n) for n in observations},
            calls=done.calls,
            tokens=done.tokens,
            failed_calls=done.failed,
            fallbacks=done.fallbacks,
        )

    def _totals(self) -> _Totals:
        accounting = self.accounting
        fallbacks = sum(a.asker.stats.failures.total() for a in self.agents.values())
        return _Totals(
            accounting.requests_total, accounting.tokens_total, accounting.failed_total, fallbacks
        )

    def _report(self) -> _Totals:
        """Model requests, their tokens, the failed ones and the answers that fell back, since
        the last report."""
        before, self._reported = self._reported, self._totals()
        return self._reported - before

    def _keep_traces(self, name: str, step: int | None) -> None:
        self._traces.extend(
            {"step": step, "agent": name, **asdict(row)}
            for row in self.agents[name].memory.drain_traces()
        )

    def _written(self, name: str) -> tuple[Written, ...]:
        return tuple(Written(k, text) for k, text in self.agents[name].memory.drain_written())

    async def drain_written(self) -> WrittenByAgent:
        written = {n: self._written(n) for n in self.agents}
        return {n: rows for n, rows in written.items() if rows}

    async def seed_memories(
        self, memories: Mapping[str, Sequence[SeedMemory]], now: datetime, step: int = 0
    ) -> None:
        for name in memories:
            self._agent(name)

        async def one(name: str) -> None:
            items = [(m.text, m.importance) for m in memories[name]]
            with self.accounting.context(step=step, agent=name):
                await self.agents[name].seed_memories(items, now)

        await self._each(list(memories), one)
        for name in memories:  # starting memories, not events of a step
            self.agents[name].memory.drain_written()
        self._report()  # the seeding's calls are no step's

    async def converse(
        self, first: str, second: str, now: datetime, step: int
    ) -> ConversationOutcome:
        speakers = (_HostedSpeaker(self, first, now, step), _HostedSpeaker(self, second, now, step))

        async def summarize(transcript: Transcript) -> str:
            return await self.summarize(first, second, transcript, step)

        conversation = await converse(*speakers, now, self.settings.dialogue, summarize)

        async def finish(name: str) -> Action:
            return await self.finish_conversation(name, conversation, now, step)

        done = await self._each([first, second], finish)
        outcome = (done[first], done[second])
        return ConversationOutcome(conversation, outcome, await self.drain_written())

    async def speak(
        self, name: str, other: str, transcript: Transcript, now: datetime, step: int
    ) -> Line:
        agent = self._agent(name)
        with self.accounting.context(step=step, agent=name):
            line, end = await agent.speak(other, tuple(transcript), now)
        self._keep_traces(name, step)
        return Line(line, end)

    async def summarize(self, name: str, other: str, transcript: Transcript, step: int) -> str:
        agent = self._agent(name)
        with self.accounting.context(step=step, agent=name):
            return await agent.summarize(other, list(transcript))

    async def finish_conversation(
        self, name: str, conversation: Conversation, now: datetime, step: int
    ) -> Action:
        agent = self._agent(name)
        with self.accounting.context(step=step, agent=name):
            action = await agent.finish_conversation(conversation, now)
        self._keep_traces(name, step)
        return action

    async def interview(self, name: str, question: str, now: datetime) -> InterviewAnswer:
        agent = self._agent(name)
        with self.accounting.context(agent=name):
            answer, used = await agent.interview(question, now)
        return InterviewAnswer(name, question, answer, tuple(used))

    async def probe(
        self, name: str, question: str, now: datetime, say_what: bool = True
    ) -> ProbeAnswer:
        agent = self._agent(name)
        with self.accounting.context(agent=name):
            knows, what, used = await agent.probe(question, now, say_what=say_what)
        return ProbeAnswer(name, question, knows, what, tuple(used))

    async def drain_rows(self) -> HostRows:
        calls = self.accounting.rows()
        self.accounting.clear()
        for name in self.agents:  # retrievals outside a step (an interview) have no step
            self._keep_traces(name, None)
        retrievals, self._traces = self._traces, []
        return HostRows(tuple(calls), tuple(retrievals))

    async def export_memories(self) -> dict[str, MemoryExport]:
        out: dict[str, MemoryExport] = {}
        for name in self.agents:
            records, vectors = await self.store.candidates(name, KINDS)
            matrix = np.ascontiguousarray(vectors, dtype=np.float32)
            out[name] = MemoryExport(tuple(records), matrix.tobytes())
        return out

    async def restore(
        self,
        state: Mapping[str, AgentState],
        memories: Mapping[str, MemoryExport],
        when: datetime,
    ) -> None:
        unknown = set(memories) - set(self.agents)
        if unknown:
            raise KeyError(f"memories for agents not hosted here: {sorted(unknown)}")
        await self.set_state(state)
        for name, saved in memories.items():
            await self.store.delete_created_after(name, when)
            if not saved.records:
                continue
            vectors = np.frombuffer(saved.vectors, dtype=np.float32)
            await self.store.add(list(saved.records), vectors.reshape(len(saved.records), -1))
        for agent in self.agents.values():  # what was written belongs to a discarded future
            agent.memory.drain_written()

    async def get_state(self) -> dict[str, AgentState]:
        return {n: a.get_state() for n, a in self.agents.items()}

    async def set_state(self, state: Mapping[str, AgentState]) -> None:
        unknown = set(state) - set(self.agents)
        if unknown:
            raise KeyError(f"state for agents not hosted here: {sorted(unknown)}")
        for n, s in state.items():
            self.agents[n].set_state(s)
        # the askers' counts are the checkpoint's now: fallbacks are counted on from there
        self._reported = replace(self._reported, fallbacks=self._totals().fallbacks)

    async def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result


@dataclass(frozen=True)
class _Totals:
    """A host's running totals: model requests, their tokens, the failed ones, and the answers
    its agents gave up on (the askers' failures, which fall back)."""

    calls: int = 0
    tokens: int = 0
    failed: int = 0
    fallbacks: int = 0

    def __sub__(self, other: _Totals) -> _Totals:
        return _Totals(
            self.calls - other.calls,
            self.tokens - other.tokens,
            self.failed - other.failed,
            self.fallbacks - other.fallbacks,
        )


class _HostedSpeaker:
    """One side of a conversation held on this host."""

    def __init__(self, host: AgentHost, name: str, now: datetime, step: int) -> None:
        self._host, self._name, self._now, self._step = host, name, now, step

    @property
    def name(self) -> str:
        return self._name

    async def speak(self, other: str, transcript: Sequence[tuple[str, str]]) -> tuple[str, bool]:
        line = await self._host.speak(self._name, other, tuple(transcript), self._now, self._step)
        return line.text, line.end


def _node_id() -> str:
    """The Ray node this process runs on, or ``"local"`` outside a Ray worker."""
    ray = sys.modules.get("ray")  # imported only where Ray already runs this process
    if ray is None or not ray.is_initialized():
        return "local"
    return str(ray.get_runtime_context().get_node_id())


def _rss_mb() -> float:
    """This process's resident memory now, in MB (``VmRSS``; 0.0 where there is no /proc)."""
    return proc_mb("/proc/self/status", "VmRSS")


def remote_host(**actor_options: Any) -> Any:
    """``AgentHost`` as a Ray actor class (async: its agents' calls run concurrently)."""
    import ray

    options = {"num_cpus": 0, "max_concurrency": 1000, **actor_options}
    return ray.remote(**options)(AgentHost)
