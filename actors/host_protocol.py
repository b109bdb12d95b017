"""What a host can do: the driver's whole view of the agents' processes.

:class:`~actors.host.AgentHost` implements it in-process; ``cluster.hosts.RemoteHost`` implements
it over a Ray actor, one explicit remote call per method. Values are the mind's own types and
the frozen messages of :mod:`actors.messages`; game time is a ``datetime``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Host(Protocol):
    """Several agents in one process."""

    async def ping(self) -> bool:
        """True (a health check)."""
        ...

    async def usage(self) -> HostUsage:
        """The host process's pid and memory."""
        ...

    async def names(self) -> list[str]:
        """The hosted agents' names."""
        ...

    async def seed_memories(
        self, memories: Mapping[str, Sequence[SeedMemory]], now: datetime, step: int = 0
    ) -> None:
        """Stores each named agent's starting memories (scored by the model where the
        importance is None; those calls are accounted at ``step``)."""
        ...

    async def step(
        self,
        observations: Mapping[str, Sequence[Observation]],
        now: datetime,
        step: int,
        learned: Mapping[str, Sequence[str]] | None = None,
    ) -> StepResult:
        """One step of the agents named in ``observations`` (an empty list still steps one),
        after telling each agent in ``learned`` the places it has newly come to know."""
        ...

    async def converse(
        self, first: str, second: str, now: datetime, step: int
    ) -> ConversationOutcome:
        """A conversation between two agents of this host, ``first`` speaking first: every
        line, the summary, and both finishing it, without leaving the host."""
        ...

    async def speak(
        self, name: str, other: str, transcript: Transcript, now: datetime, step: int
    ) -> Line:
        """``name``'s next line to ``other`` (a conversation across two hosts)."""
        ...

    async def summarize(self, name: str, other: str, transcript: Transcript, step: int) -> str:
        """``name``'s one-line summary of its conversation with ``other``."""
        ...

    async def finish_conversation(
        self, name: str, conversation: Conversation, now: datetime, step: int
    ) -> Action:
        """``name`` stores and reflects on a finished conversation; returns its ``chat_done``."""
        ...

    async def drain_written(self) -> WrittenByAgent:
        """Per agent, the records written since the last drain (or step) that wrote some."""
        ...

    async def interview(self, name: str, question: str, now: datetime) -> InterviewAnswer:
        """``name`` answers ``question`` in character."""
        ...

    async def probe(
        self, name: str, question: str, now: datetime, say_what: bool = True
    ) -> ProbeAnswer:
        """``name`` answers a yes-or-no ``question`` (does it know, and with ``say_what``,
        what)."""
        ...

    async def drain_rows(self) -> HostRows:
        """The model calls and retrieval traces since the last drain (then forgotten here)."""
        ...

    async def export_memories(self) -> dict[str, MemoryExport]:
        """Per agent, its memory stream with vectors (for checkpoints)."""
        ...

    async def restore(
        self,
        state: Mapping[str, AgentState],
        memories: Mapping[str, MemoryExport],
        when: datetime,
    ) -> None:
        """Back to a checkpoint taken at game time ``when``: the agents' state and their
        stores as they were (records created after ``when`` deleted, the checkpoint's
        upserted)."""
        ...

    async def get_state(self) -> dict[str, AgentState]:
        """Every agent's state (memory aside: :meth:`export_memories`)."""
        ...

    async def set_state(self, state: Mapping[str, AgentState]) -> None:
        """Restores what :meth:`get_state` returned, for some or all hosted agents."""
        ...

    async def close(self) -> None:
        """Closes the memory store."""
        ...
