"""Hosts as the driver holds them: a :class:`~actors.host_protocol.Host`, in-process or a Ray actor.

:class:`RemoteHost` is the protocol over a Ray actor, one explicit remote call per method. An
actor that died (or cannot be placed) raises :class:`HostDiedError`, recognised by Ray's own
exception types, which the driver answers by restarting that host and rolling the run back to
its last checkpoint. A host whose model backend kept failing raises
:class:`~serving.wrappers.BackendUnavailableError`, unwrapped from Ray's task error: its host
is alive, and the run stops (a restarted host would meet the same backend). A local
:class:`~actors.host.AgentHost` is the protocol itself (tests, interviews).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from actors.host_protocol import Host
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
    Transcript,
    WrittenByAgent,
)
from actors.mind.dialogue import Conversation
from actors.mind.events import Action, Observation
from actors.mind.persona import Persona
from actors.mind.settings import MindSettings

if TYPE_CHECKING:
    from actors.mind.memory_store import MemoryStore
    from serving.embedding import Embedder
    from serving.llm import LLM

T = TypeVar("T")


class HostDiedError(Exception):
    """The process of a host is gone (its agents' state lives on in the last checkpoint)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"host {index} died: {type(cause).__name__}: {cause}")
        self.index = index


class RemoteHost:
    """A :class:`~actors.host_protocol.Host` that is a Ray actor (``actors.host.remote_host``).

    Args:
        index: the host's index in the run (named by :class:`HostDiedError`).
        actor: the actor handle.
    """

    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self.actor = actor

    async def _result(self, ref: Awaitable[T]) -> T:
        from ray.exceptions import ActorUnschedulableError, RayActorError, RayTaskError

        from serving.wrappers.backend_guard import BackendUnavailableError

        try:
            return await ref
        except (RayActorError, ActorUnschedulableError) as exc:
            raise HostDiedError(self.index, exc) from exc
        except RayTaskError as exc:  # the host's own error, as the host raised it
            if isinstance(exc.cause, BackendUnavailableError):
                raise exc.cause from None
            raise

    async def ping(self) -> bool:
        return await self._result(self.actor.ping.remote())

    async def usage(self) -> HostUsage:
        return await self._result(self.actor.usage.remote())

    async def names(self) -> list[str]:
        return await self._result(self.actor.names.remote())

    async def seed_memories(
        self, memories: Mapping[str, Sequence[SeedMemory]], now: datetime, step: int = 0
    ) -> None:
        await self._result(self.actor.seed_memories.remote(memories, now, step))

    async def step(
        self,
        observations: Mapping[str, Sequence[Observation]],
        now: datetime,
        step: int,
        learned: Mapping[str, Sequence[str]] | None = None,
    ) -> StepResult:
        return await self._result(self.actor.step.remote(observations, now, step, learned))

    async def converse(
        self, first: str, second: str, now: datetime, step: int
    ) -> ConversationOutcome:
        return await self._result(self.actor.converse.remote(first, second, now, step))

    async def speak(
        self, name: str, other: str, transcript: Transcript, now: datetime, step: int
    ) -> Line:
        return await self._result(self.actor.speak.remote(name, other, transcript, now, step))

    async def summarize(self, name: str, other: str, transcript: Transcript, step: int) -> str:
        return await self._result(self.actor.summarize.remote(name, other, transcript, step))

    async def finish_conversation(
        self, name: str, conversation: Conversation, now: datetime, step: int
    ) -> Action:
        ref = self.actor.finish_conversation.remote(name, conversation, now, step)
        return await self._result(ref)

    async def drain_written(self) -> WrittenByAgent:
        return await self._result(self.actor.drain_written.remote())

    async def interview(self, name: str, question: str, now: datetime) -> InterviewAnswer:
        return await self._result(self.actor.interview.remote(name, question, now))

    async def probe(
        self, name: str, question: str, now: datetime, say_what: bool = True
    ) -> ProbeAnswer:
        return await self._result(self.actor.probe.remote(name, question, now, say_what))

    async def drain_rows(self) -> HostRows:
        return await self._result(self.actor.drain_rows.remote())

    async def export_memories(self) -> dict[str, MemoryExport]:
        return await self._result(self.actor.export_memories.remote())

    async def restore(
        self,
        state: Mapping[str, AgentState],
        memories: Mapping[str, MemoryExport],
        when: datetime,
    ) -> None:
        await self._result(self.actor.restore.remote(state, memories, when))

    async def get_state(self) -> dict[str, AgentState]:
        return await self._result(self.actor.get_state.remote())

    async def set_state(self, state: Mapping[str, AgentState]) -> None:
        await self._result(self.actor.set_state.remote(state))

    async def close(self) -> None:
        await self._result(self.actor.close.remote())

    def kill(self) -> None:
        """Ends the actor's process (fault injection in tests and benchmarks)."""
        import ray

        ray.kill(self.actor, no_restart=True)


@dataclass
class PlacedHost:
    """One host of a run: its index, the agents it carries, and the host itself."""

    index: int
    names: list[str]
    host: Host

    def kill(self) -> None:
        """Ends a remote host's process (a local host has none of its own)."""
        if isinstance(self.host, RemoteHost):
            self.host.kill()


HostFactory = Callable[[int, Sequence[Persona]], PlacedHost]
"""Makes host ``index`` carrying these agents."""


def ray_host_factory(
    settings: MindSettings,
    seed: int,
    qdrant: str,
    sequential: bool = False,
    collection_prefix: str = "simulacra",
    backend_wait_s: float = 120.0,
) -> HostFactory:
    """Hosts as Ray actors, each with the Serve clients and its own memory store, round robin
    over the cluster's host nodes (``cluster.placement``).

    ``collection_prefix`` keeps one run's memories apart from another's on a Qdrant server;
    ``backend_wait_s`` is how long a host re-sends rows the model's backend failed.
    """

    def make(index: int, personas: Sequence[Persona]) -> PlacedHost:
        import ray

        from actors.host import remote_host
        from cluster.placement import host_actor_options, host_nodes

        nodes = host_nodes(ray.nodes())  # asked again for a re-placed host: the live ones
        actor = remote_host(**host_actor_options(index, nodes)).remote(
            list(personas),
            settings,
            seed,
            qdrant=qdrant,
            sequential=sequential,
            collection_prefix=collection_prefix,
            backend_wait_s=backend_wait_s,
        )
        return PlacedHost(index, [p.name for p in personas], RemoteHost(index, actor))

    return make


def local_host_factory(
    settings: MindSettings,
    seed: int,
    llm: LLM,
    embedder: Embedder,
    store_factory: Callable[[int], MemoryStore],
    sequential: bool = False,
    backend_wait_s: float = 120.0,
) -> HostFactory:
    """Hosts in this process (tests; the sequential baseline), sharing ``llm`` and ``embedder``.

    ``store_factory(index)`` gives host ``index`` its memory store (the same one again for a
    restarted host, to stand in for a Qdrant that outlives the host); ``backend_wait_s`` as for
    :func:`ray_host_factory`.
    """

    def make(index: int, personas: Sequence[Persona]) -> PlacedHost:
        from actors.host import AgentHost

        host = AgentHost(
            list(personas),
            settings,
            seed,
            llm=llm,
            embedder=embedder,
            store=store_factory(index),
            sequential=sequential,
            backend_wait_s=backend_wait_s,
        )
        return PlacedHost(index, [p.name for p in personas], host)

    return make
