"""What crosses between the driver and a host: frozen messages, the same in-process and over Ray.

The mind's own types cross as they are (:class:`~actors.mind.events.Observation`,
:class:`~actors.mind.events.Action`, :class:`~actors.mind.dialogue.Conversation`,
:class:`~actors.mind.persona.Persona`, :class:`~actors.mind.records.MemoryRecord`), game time
as a ``datetime``; the types below are the rest. Ray moves them between processes in memory;
what goes to disk (checkpoints) is their plain-data form (``to_dict`` / ``from_dict``), never a
pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.mind.dialogue import Conversation
from actors.mind.events import Action
from actors.mind.records import MemoryRecord

AgentState = dict[str, Any]
"""One agent's state as ``Agent.get_state`` returns it (the checkpoint's plain-data form)."""

TableRow = dict[str, Any]
"""A row of one of the run's tables (``llm_calls``, ``retrievals``), by column."""

Transcript = tuple[tuple[str, str], ...]
"""A conversation so far: (speaker, line) pairs."""


@dataclass(frozen=True)
class Written:
    """A memory record an agent wrote: its kind and description (for the events table)."""

    kind: str
    description: str


WrittenByAgent = Mapping[str, tuple[Written, ...]]
"""Per agent, the records it wrote since the last report."""


@dataclass(frozen=True)
class SeedMemory:
    """A starting memory: its text, and its importance (None: the model scores it)."""

    text: str
    importance: int | None = None


@dataclass(frozen=True)
class StepResult:
    """What one step of some of a host's agents produced.

    ``actions``: per stepped agent, its new actions (none while it continues); ``written``: per
    stepped agent, the records it wrote; ``calls`` and ``tokens``: the model requests since the
    last report (this step's, and any conversation's since) and their prompt + completion tokens;
    ``failed_calls``: those of the requests that failed (a bad answer, or a backend failure
    that a later request of the same row got past); ``fallbacks``: the answers the agents gave
    up on since the last report (asked again and failed again: the mind used its fallback).
    """

    actions: Mapping[str, tuple[Action, ...]]
    written: WrittenByAgent
    calls: int
    tokens: int
    failed_calls: int = 0
    fallbacks: int = 0


@dataclass(frozen=True)
class Line:
    """A speaker's next line, and whether it ends the conversation."""

    text: str
    end: bool


@dataclass(frozen=True)
class ConversationOutcome:
    """A conversation between two agents of one host, run there from first line to last.

    ``done``: each participant's ``chat_done`` action, in the order of ``participants``;
    ``written``: the records both wrote (the chat, reflections on it).
    """

    conversation: Conversation
    done: tuple[Action, Action]
    written: WrittenByAgent


@dataclass(frozen=True)
class InterviewAnswer:
    """An agent's in-character answer and the ids of the memory records it used."""

    agent: str
    question: str
    answer: str
    record_ids: tuple[str, ...]


@dataclass(frozen=True)
class ProbeAnswer:
    """An agent's yes-or-no answer to a measure's probe: whether it says it knows, what it
    says, and the ids of the memory records it was shown."""

    agent: str
    question: str
    knows: bool
    what: str
    record_ids: tuple[str, ...]


@dataclass(frozen=True)
class HostUsage:
    """A host process: its pid, resident memory now and at its peak, before any agent was built
    (``baseline_rss_mb``), how many agents it holds, and the Ray node it runs on (``"local"``
    outside Ray)."""

    pid: int
    rss_mb: float
    peak_rss_mb: float
    baseline_rss_mb: float
    agents: int
    node: str = "local"


@dataclass(frozen=True)
class HostRows:
    """The rows a host gathered since the last drain: model calls and retrieval traces."""

    llm_calls: tuple[TableRow, ...]
    retrievals: tuple[TableRow, ...]


@dataclass(frozen=True)
class MemoryExport:
    """One agent's memory stream: its records in store order and their vectors (float32 bytes,
    row-major, ``len(records) x dim``)."""

    records: tuple[MemoryRecord, ...]
    vectors: bytes

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's form: records as plain data."""
        return {"records": [r.to_dict() for r in self.records], "vectors": self.vectors}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MemoryExport:
        records = tuple(MemoryRecord.from_dict(r) for r in d["records"])
        return cls(records, bytes(d["vectors"]))
