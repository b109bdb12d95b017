"""Information diffusion (Park et al. 2023, section 7.1): who knows a piece of information, by
interview, checked against the memory stream.

An agent is *aware* when its probe answer says it knows and its memory holds a record that
carries the information (the evidence); a "yes" without such a record is a *hallucination*. The
share aware over game time counts each aware agent from the first record that carries it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from scenarios.measures import InformationSpec


@dataclass(frozen=True)
class Support:
    """A memory record that carries a piece of information."""

    record_id: str
    created: datetime
    similarity: float


@dataclass(frozen=True)
class Awareness:
    """One agent's answer about one piece of information, and the records that back it."""

    agent: str
    information: str
    knows: bool
    what: str
    support: tuple[Support, ...]

    @property
    def aware(self) -> bool:
        return self.knows and bool(self.support)

    @property
    def hallucination(self) -> bool:
        return self.knows and not self.support

    @property
    def since(self) -> datetime | None:
        """When the agent came to know it: its first supporting record (aware agents only)."""
        return min(s.created for s in self.support) if self.aware else None


@dataclass(frozen=True)
class Candidate:
    """Something in an agent's memory that may carry a piece of information: a record's
    description, or one line of a conversation record's transcript (under that record's id)."""

    record_id: str
    created: datetime
    text: str


def memory_candidates(records: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """A memory's candidates (checkpoint data): each record's description, in store order,
    then every transcript line of its conversation records."""
    found = [
        Candidate(r["id"], datetime.fromisoformat(r["created"]), str(r["description"]))
        for r in records
    ]
    for r in records:
        for speaker, line in r.get("transcript") or ():
            created = datetime.fromisoformat(r["created"])
            found.append(Candidate(r["id"], created, f"{speaker}: {line}"))
    return found


def supporting_records(
    info: InformationSpec, info_vector: np.ndarray, candidates: Sequence[Candidate], vectors: Any
) -> tuple[Support, ...]:
    """The records among ``candidates`` (with their embeddings, one row each) whose cosine
    similarity to the information's text is at least its ``support_threshold`` and, when it has
    ``keywords``, that name one of them; one per record, at its best similarity."""
    if not candidates:
        return ()
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(candidates), -1)
    target = np.asarray(info_vector, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(target))
    similarity = matrix @ target / np.maximum(norms, 1e-12)
    keywords = [k.lower() for k in info.keywords]
    best: dict[str, Support] = {}
    for candidate, sim in zip(candidates, similarity.tolist(), strict=True):
        text = candidate.text.lower()
        if sim < info.support_threshold or (keywords and not any(k in text for k in keywords)):
            continue
        seen = best.get(candidate.record_id)
        if seen is None or sim > seen.similarity:
            best[candidate.record_id] = Support(
                candidate.record_id, candidate.created, round(sim, 4)
            )
    return tuple(best.values())


def awareness_curve(
    answers: Sequence[Awareness], start: datetime, end: datetime, n_agents: int
) -> list[tuple[datetime, float]]:
    """The share of all ``n_agents`` aware over game time (a step function from ``start`` to
    ``end``): each aware agent counted from its first supporting record."""
    since = sorted(max(a.since, start) for a in answers if a.since is not None and a.since <= end)
    points = [(start, sum(1 for t in since if t <= start) / n_agents)]
    for i, t in enumerate(since):
        if t > start:
            points.append((t, (i + 1) / n_agents))
    points.append((end, len(since) / n_agents))
    return points
