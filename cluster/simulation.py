"""The simulation driver: the clock, the world and the hosts, advanced in lockstep steps.

One step (DESIGN.md, "the path of one step"):
1. the world computes every agent's observations at the step's game time;
2. each host gets one call with the observations of those of its agents that must think (an
   agent that only continues its current action is not sent, so it makes no model call);
3. the actions that come back are applied to the world in agent-name order; talks become
   conversations run turn by turn between the two agents' hosts;
4. every ``checkpoint_every`` steps the tables are flushed and a checkpoint is written.

A host that dies is restarted and the whole run rolls back to its last checkpoint (agents,
world, clock, memory store, tables), so no memory record is lost or counted twice. A model
backend that keeps failing is not a dead host: the step's
:class:`~serving.wrappers.BackendUnavailableError` ends :meth:`Simulation.run` with no record
and no checkpoint of that step, so the last checkpoint is what a resume starts from.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq

from actors.messages import MemoryExport, SeedMemory, StepResult, Transcript, WrittenByAgent
from actors.mind.dialogue import Conversation, converse
from actors.mind.events import Action, Observation
from actors.mind.persona import Persona
from actors.mind.settings import MindSettings
from cluster.checkpoints import checkpoint_dir, read_checkpoint, write_checkpoint
from cluster.hosts import HostDiedError, HostFactory, PlacedHost
from cluster.outputs import MEMORIES, RunTables, memory_rows, rows_table, write_table
from cluster.packing import pack
from cluster.run_folder import list_parts
from cluster.world import World
from scenarios.schema import Scenario
from serving.files import atomic_write

log = logging.getLogger(__name__)

T = TypeVar("T")

MEMORY_KINDS_AS_EVENTS = {"observation", "reflection", "plan"}
"""Memory records written during a step that also appear in ``events.parquet``."""


@dataclass
class RunStats:
    """Counters of a run (this process's share of it: after a resume, from the resume on)."""

    steps: int = 0
    agent_steps: int = 0  # agents advanced by a step, thinking or not
    thinking_steps: int = 0  # agents sent to their host (the others continued)
    llm_calls: int = 0
    tokens: int = 0
    llm_failed_calls: int = 0  # model requests that failed (the backend's, or a bad answer)
    fallbacks: int = 0  # answers the agents gave up on (the mind's fallback stood in)
    conversations: int = 0
    recoveries: int = 0
    wall_s: float = 0.0
    per_step_s: list[float] = field(default_factory=list)
    recovered: list[Recovery] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "agent_steps": self.agent_steps,
            "thinking_agent_steps": self.thinking_steps,
            "llm_calls": self.llm_calls,
            "tokens": self.tokens,
            "llm_failed_calls": self.llm_failed_calls,
            "fallbacks": self.fallbacks,
            "conversations": self.conversations,
            "recoveries": self.recoveries,
            "recovered": [r.as_dict() for r in self.recovered],
            "wall_s": round(self.wall_s, 3),
        }


@dataclass(frozen=True)
class Recovery:
    """One recovery from dead hosts: when they were found dead, which, the checkpoint the run
    went back to, and how long re-placing them and restoring every host took."""

    at_step: int
    hosts: tuple[int, ...]
    to_step: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "at_step": self.at_step,
            "hosts": list(self.hosts),
            "to_step": self.to_step,
            "seconds": round(self.seconds, 3),
        }


StepHook = Callable[["Simulation"], Awaitable[None] | None]


class Simulation:
    """A run of a scenario on a set of hosts.

    Args:
        scenario: what to simulate.
        settings: the mind's settings (the scenario's preset and overrides).
        run_dir: where tables and checkpoints go.
        factory: makes the hosts (Ray actors, or local objects in tests).
        agents_per_host: how many agents each host carries.
        checkpoint_every: steps between checkpoints.
        sequential: one host call and one conversation at a time (the original's way).
        max_recoveries: host deaths survived before the run gives up.
        on_step: called after every step (progress bars; fault injection in tests).
    """

    def __init__(
        self,
        scenario: Scenario,
        settings: MindSettings,
        run_dir: str | Path,
        factory: HostFactory,
        agents_per_host: int,
        checkpoint_every: int | None = None,
        sequential: bool = False,
        max_recoveries: int = 3,
        on_step: StepHook | None = None,
    ) -> None:
        self.scenario = scenario
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.factory = factory
        self.checkpoint_every = checkpoint_every or scenario.checkpoint_every
        self.sequential = sequential
        self.max_recoveries = max_recoveries
        self.on_step = on_step
        self.world = World(scenario)
        self.tables = RunTables(self.run_dir)
        self.step_no = 0
        self.stats = RunStats()
        self.personas = {a.name: Persona.from_dict(a.persona()) for a in scenario.agents}
        self.groups = pack([a.name for a in scenario.agents], agents_per_host)
        self.hosts: list[PlacedHost] = []
        self.host_of: dict[str, PlacedHost] = {}
        self.nodes: dict[int, str] = {}  # host index -> the node it runs on (locate_hosts)
        self.pids: dict[int, int] = {}  # host index -> its process id there
        self.last_checkpoint_step: int | None = None
        self.stop_requested = False  # set by request_stop: the run ends at the next step's end

    # ---- time ---------------------------------------------------------------------------------

    def time_at(self, step: int) -> datetime:
        return self.scenario.start + timedelta(seconds=step * self.scenario.step_seconds)

    @property
    def now(self) -> datetime:
        return self.time_at(self.step_no)

    # ---- starting, resuming -------------------------------------------------------------------

    def _make_host(self, index: int) -> PlacedHost:
        host = self.factory(index, [self.personas[n] for n in self.groups[index]])
        if len(self.hosts) <= index:
            self.hosts.append(host)
        else:
            self.hosts[index] = host
        for name in host.names:
            self.host_of[name] = host
        return host

    def place_hosts(self) -> None:
        """Creates one host per group of agents."""
        for index in range(len(self.groups)):
            self._make_host(index)

    async def locate_hosts(self) -> dict[int, str]:
        """Asks every host which node it runs on (``nodes``: host index -> node id)."""
        usage = await self._gather([h.host.usage() for h in self.hosts])
        self.nodes = {h.index: u.node for h, u in zip(self.hosts, usage, strict=True)}
        self.pids = {h.index: u.pid for h, u in zip(self.hosts, usage, strict=True)}
        return self.nodes

    def request_stop(self) -> None:
        """Ends :meth:`run` after the step in progress (and a checkpoint of it): Ctrl-C."""
        self.stop_requested = True

    async def begin(self) -> None:
        """A fresh run: seeds the scenario's memories, then writes checkpoint 0."""
        calls = []
        for placed in self.hosts:
            seeded = {
                a.name: [SeedMemory(m.text, m.importance) for m in a.seeded_memories()]
                for a in self.scenario.agents
                if a.name in placed.names
            }
            calls.append(placed.host.seed_memories(seeded, self.now))
        await self._gather(calls)
        await self.checkpoint()

    async def resume(self, step: int | None = None) -> int:
        """Restores the run from its checkpoint ``step`` (the last when None); returns it."""
        state = read_checkpoint(self.run_dir, step)
        await self._restore(state)
        return int(state["step"])

    async def _restore(self, state: dict[str, Any]) -> None:
        step = int(state["step"])
        # records created at or after the checkpoint's clock belong to a discarded future
        cut = self.time_at(step) - timedelta(microseconds=1)
        self.world.set_state(state["world"])
        agents = state["agents"]
        memories = {n: MemoryExport.from_dict(m) for n, m in state["memories"].items()}
        await self._gather(
            [
                h.host.restore(
                    {n: agents[n] for n in h.names}, {n: memories[n] for n in h.names}, cut
                )
                for h in self.hosts
            ]
        )
        self.tables.discard_after(step)
        self.step_no = step
        self.last_checkpoint_step = step

    async def _recover(self, error: HostDiedError) -> None:
        """Re-places dead hosts (every host of a lost node at once) and rolls every host back to
        the last checkpoint; again while hosts die during the recovery itself."""
        while True:
            try:
                await self._recover_once(error)
                return
            except HostDiedError as again:
                error = again

    async def _recover_once(self, error: HostDiedError) -> None:
        started = time.perf_counter()
        at_step = self.step_no
        self.stats.recoveries += 1
        if self.stats.recoveries > self.max_recoveries:
            raise RuntimeError(
                f"{error}; gave up after {self.max_recoveries} recoveries"
            ) from error
        pings = await asyncio.gather(*[h.host.ping() for h in self.hosts], return_exceptions=True)
        dead = [
            h.index
            for h, ping in zip(self.hosts, pings, strict=True)
            if isinstance(ping, BaseException) or h.index == error.index
        ]
        log.warning(
            "%s; %d host(s) dead (%s): re-placing them and going back to checkpoint %s",
            error,
            len(dead),
            ", ".join(map(str, dead)),
            self.last_checkpoint_step,
        )
        for index in dead:
            self.hosts[index].kill()
            self._make_host(index)
        to_step = await self.resume(self.last_checkpoint_step)
        await self.locate_hosts()
        recovery = Recovery(at_step, tuple(dead), to_step, time.perf_counter() - started)
        self.stats.recovered.append(recovery)

    # ---- running ------------------------------------------------------------------------------

    async def run(self, until_step: int) -> RunStats:
        """Steps until the clock reaches ``until_step``; checkpoints on the way and at the end.

        A dead host is recovered from (:class:`HostDiedError`); any other error of a step,
        :class:`~serving.wrappers.BackendUnavailableError` among them, ends the run before that
        step is recorded or checkpointed.
        """
        started = time.perf_counter()
        try:
            while self.step_no < until_step and not self.stop_requested:
                await asyncio.sleep(0)  # a step that awaits nothing still lets signals in
                try:
                    await self.step()
                    due = self.step_no % self.checkpoint_every == 0 or self.step_no == until_step
                    if due or self.stop_requested:
                        await self.checkpoint()
                except HostDiedError as exc:
                    await self._recover(exc)
                    continue
                if self.on_step is not None:
                    maybe = self.on_step(self)
                    if maybe is not None:
                        await maybe
        finally:
            self.stats.wall_s += time.perf_counter() - started
        return self.stats

    async def step(self) -> None:
        """One lockstep step of every agent."""
        t0 = time.perf_counter()
        now, s = self.now, self.step_no
        observations: dict[str, list[Observation]] = self.world.observations(now)
        learned = self.world.newly_known()
        rows: list[dict[str, Any]] = []
        for name in sorted(observations):
            for o in observations[name]:
                if o.kind == "event":
                    rows.append(_row(s, now, name, "event", o.location, o.description))
        calls: list[Awaitable[StepResult]] = []
        sent: list[list[str]] = []
        for placed in self.hosts:
            mine = [n for n in placed.names if self.world.needs_step(n, now)]
            if not mine:
                continue
            calls.append(
                placed.host.step(
                    {n: observations[n] for n in mine},
                    now,
                    s,
                    {n: learned[n] for n in mine if learned.get(n)},
                )
            )
            sent.append(mine)
        results = await self._gather(calls)
        actions: dict[str, tuple[Action, ...]] = {}
        for mine, result in zip(sent, results, strict=True):
            for n in mine:
                self.world.mark_stepped(n, now, observations[n])
            actions.update(result.actions)
            rows.extend(self._written_rows(s, now, result.written))
            self.stats.llm_calls += result.calls
            self.stats.tokens += result.tokens
            self.stats.llm_failed_calls += result.failed_calls
            self.stats.fallbacks += result.fallbacks
            self.stats.thinking_steps += len(mine)
        talks: list[tuple[str, str]] = []
        for name in sorted(actions):
            for action in actions[name]:
                if action.kind == "talk" and action.target:
                    talks.append((name, action.target))
                for kind, location, text in self.world.apply(name, action, now):
                    rows.append(_row(s, now, name, kind, location, text))
        rows.extend(await self._conversations(talks, now, s))
        self.tables.add("events", rows)
        self.step_no += 1
        self.stats.steps += 1
        self.stats.agent_steps += len(self.personas)
        self.stats.per_step_s.append(time.perf_counter() - t0)

    def _written_rows(self, s: int, now: datetime, written: WrittenByAgent) -> list[dict[str, Any]]:
        return [
            _row(s, now, name, w.kind, self.world.status(name).place, w.description)
            for name in sorted(written)
            for w in written[name]
            if w.kind in MEMORY_KINDS_AS_EVENTS
        ]

    async def _conversations(
        self, talks: Sequence[tuple[str, str]], now: datetime, s: int
    ) -> list[dict[str, Any]]:
        """Runs this step's conversations (each agent in at most one), turn by turn."""
        busy: set[str] = set()
        pairs: list[tuple[str, str]] = []
        for a, b in talks:
            if a in busy or b in busy or b not in self.host_of or a == b:
                continue
            if self.world.status(b).arrives is not None:  # travelling: not there to talk to
                continue
            pairs.append((a, b))
            busy.update((a, b))
        if not pairs:
            return []
        results = await self._gather([self._converse(a, b, now, s) for a, b in pairs])
        rows: list[dict[str, Any]] = []
        for rows_of_pair in results:
            rows.extend(rows_of_pair)
        self.stats.conversations += len(pairs)
        return rows

    async def _converse(self, a: str, b: str, now: datetime, s: int) -> list[dict[str, Any]]:
        """One conversation, ``a`` speaking first: on their host when they share one, else
        turn by turn between their two hosts."""
        host_a, host_b = self.host_of[a], self.host_of[b]
        if host_a is host_b:
            outcome = await host_a.host.converse(a, b, now, s)
            conversation, done, written = outcome.conversation, outcome.done, [outcome.written]
        else:
            conversation = await self._converse_across(host_a, host_b, a, b, now, s)
            done_a, done_b = await self._gather(
                [
                    host_a.host.finish_conversation(a, conversation, now, s),
                    host_b.host.finish_conversation(b, conversation, now, s),
                ]
            )
            done = (done_a, done_b)
            written = await self._gather([host_a.host.drain_written(), host_b.host.drain_written()])
        rows = [
            _row(s, now, speaker, "utterance", self.world.status(speaker).place, line)
            for speaker, line in conversation.transcript
        ]
        for name, other, action in ((a, b, done[0]), (b, a, done[1])):
            for kind, location, text in self.world.apply(name, replace(action, target=other), now):
                rows.append(_row(s, now, name, kind, location, text))
        for by_agent in written:
            rows.extend(self._written_rows(s, now, by_agent))
        return rows

    async def _converse_across(
        self, host_a: PlacedHost, host_b: PlacedHost, a: str, b: str, now: datetime, s: int
    ) -> Conversation:
        async def summarize(transcript: Transcript) -> str:
            return await host_a.host.summarize(a, b, transcript, s)

        return await converse(
            _RemoteSpeaker(a, host_a, now, s),
            _RemoteSpeaker(b, host_b, now, s),
            now,
            self.settings.dialogue,
            summarize,
        )

    # ---- checkpoints and outputs ---------------------------------------------------------------

    async def _collect(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every agent's state and memory (with vectors), and the hosts' rows since the last."""
        states = await self._gather([h.host.get_state() for h in self.hosts])
        memories = await self._gather([h.host.export_memories() for h in self.hosts])
        drained = await self._gather([h.host.drain_rows() for h in self.hosts])
        for rows in drained:
            self.tables.add("llm_calls", list(rows.llm_calls))
            self.tables.add("retrievals", list(rows.retrievals))
        agents: dict[str, Any] = {}
        mems: dict[str, Any] = {}
        for state, memory in zip(states, memories, strict=True):
            agents.update(state)
            mems.update({name: export.to_dict() for name, export in memory.items()})
        return agents, mems

    async def checkpoint(self) -> Path:
        """Flushes the tables and writes a checkpoint of the clock, the world and every agent."""
        agents, memories = await self._collect()
        step = self.step_no
        self.tables.flush(step)
        state = {
            "clock": {"step": step, "now": self.now.isoformat()},
            "world": self.world.get_state(),
            "agents": agents,
            "memories": memories,
            "parts": list_parts(self.run_dir, step),
        }

        def write_memories(path: Path) -> None:
            write_table(self.memories_table(step, memories), path)

        folder = write_checkpoint(
            self.run_dir, step, state, extra_files={"memories.parquet": write_memories}
        )
        self.last_checkpoint_step = step
        return folder

    @staticmethod
    def memories_table(step: int, memories: dict[str, Any]) -> Any:
        rows: list[dict[str, Any]] = []
        for agent in sorted(memories):
            rows.extend(memory_rows(step, agent, memories[agent]["records"]))
        return rows_table(rows, MEMORIES)

    async def finish(self) -> dict[str, Path]:
        """Joins the tables; ``memories.parquet`` is the last checkpoint's, copied (not rebuilt)."""
        written = self.tables.finish()
        if self.last_checkpoint_step is None:
            raise RuntimeError("finish() before any checkpoint")
        source = checkpoint_dir(self.run_dir, self.last_checkpoint_step) / "memories.parquet"
        path = self.run_dir / "memories.parquet"
        if "record_id" in pq.read_schema(source).names:
            written["memories"] = atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))
        else:  # a checkpoint written before the column was named record_id (it was id)
            table = pq.read_table(source)
            names = ["record_id" if n == "id" else n for n in table.schema.names]
            written["memories"] = write_table(table.rename_columns(names), path)
        return written

    async def close(self) -> None:
        await asyncio.gather(*[h.host.close() for h in self.hosts], return_exceptions=True)

    # ---- helpers ------------------------------------------------------------------------------

    async def _gather(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        """Awaits every call (one after another when sequential); then raises the first error.

        Every call finishes before an error is raised, so none is still running on a host while
        the driver recovers.
        """
        if self.sequential:
            results: list[Any] = []
            for c in calls:
                try:
                    results.append(await c)
                except Exception as exc:  # re-raised below, after the others
                    results.append(exc)
        else:
            results = list(await asyncio.gather(*calls, return_exceptions=True))
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results


class _RemoteSpeaker:
    """One side of a conversation across two hosts, speaking through its own."""

    def __init__(self, name: str, placed: PlacedHost, now: datetime, step: int) -> None:
        self._name, self._placed, self._now, self._step = name, placed, now, step

    @property
    def name(self) -> str:
        return self._name

    async def speak(self, other: str, transcript: Sequence[tuple[str, str]]) -> tuple[str, bool]:
        line = await self._placed.host.speak(
            self._name, other, tuple(transcript), self._now, self._step
        )
        return line.text, line.end


def _row(
    step: int, now: datetime, agent: str | None, kind: str, location: str, text: str
) -> dict[str, Any]:
    return {
        "step": step,
        "time": now,
        "agent": agent,
        "kind": kind,
        "location": location,
        "text": text,
    }
