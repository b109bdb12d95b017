"""Where memory records live: one small interface, and an in-process implementation.

The Qdrant implementations are in ``actors/qdrant/`` (the mind never imports qdrant_client).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from actors.mind.records import Kind, MemoryRecord


@runtime_checkable
class MemoryStore(Protocol):
    """Records and their embeddings, per agent. Records come back in creation order."""

    async def add(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> None:
        """Stores records with their unit embeddings (one row each)."""
        ...

    async def candidates(
        self, agent_id: str, kinds: Collection[Kind]
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        """All of an agent's records of ``kinds`` and their embeddings (one row each)."""
        ...

    async def records(
        self, agent_id: str, kinds: Collection[Kind] | None = None
    ) -> list[MemoryRecord]:
        """An agent's records (all kinds when ``kinds`` is None), without embeddings."""
        ...

    async def get(self, agent_id: str, ids: Sequence[str]) -> list[MemoryRecord]:
        """The records with these ids, in the order of ``ids``; unknown ids raise KeyError."""
        ...

    async def touch(self, agent_id: str, ids: Sequence[str], when: datetime) -> None:
        """Sets ``last_accessed = when`` on exactly these records."""
        ...

    async def count(self, agent_id: str) -> int: ...

    async def delete_created_after(self, agent_id: str, when: datetime) -> int:
        """Deletes records created after ``when`` (resuming from a checkpoint); returns how many."""
        ...


class InMemoryStore:
    """A numpy store in this process: for tests and small runs."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self._records: dict[str, dict[str, MemoryRecord]] = {}
        self._vectors: dict[str, dict[str, np.ndarray]] = {}

    async def add(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> None:
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        for record, vector in zip(records, vectors, strict=True):
            if vector.shape != (self.dim,):
                raise ValueError(
                    f"record {record.id}: vector shape {vector.shape} != ({self.dim},)"
                )
            self._records.setdefault(record.agent_id, {})[record.id] = record
            self._vectors.setdefault(record.agent_id, {})[record.id] = np.asarray(
                vector, dtype=np.float32
            )

    async def candidates(
        self, agent_id: str, kinds: Collection[Kind]
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        records = [r for r in self._records.get(agent_id, {}).values() if r.kind in kinds]
        vectors = self._vectors.get(agent_id, {})
        matrix = (
            np.stack([vectors[r.id] for r in records])
            if records
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        return records, matrix

    async def records(
        self, agent_id: str, kinds: Collection[Kind] | None = None
    ) -> list[MemoryRecord]:
        return [
            r for r in self._records.get(agent_id, {}).values() if kinds is None or r.kind in kinds
        ]

    async def get(self, agent_id: str, ids: Sequence[str]) -> list[MemoryRecord]:
        mine = self._records.get(agent_id, {})
        missing = [i for i in ids if i not in mine]
        if missing:
            raise KeyError(f"agent {agent_id}: no records {missing}")
        return [mine[i] for i in ids]

    async def touch(self, agent_id: str, ids: Sequence[str], when: datetime) -> None:
        mine = self._records.get(agent_id, {})
        for i in ids:
            mine[i] = mine[i].touched(when)

    async def count(self, agent_id: str) -> int:
        return len(self._records.get(agent_id, {}))

    async def delete_created_after(self, agent_id: str, when: datetime) -> int:
        mine = self._records.get(agent_id, {})
        doomed = [i for i, r in mine.items() if r.created > when]
        for i in doomed:
            del mine[i]
            del self._vectors[agent_id][i]
        return len(doomed)

    def get_state(self) -> dict[str, Any]:
        """Plain data: every agent's records (as dicts) and their vectors (as float lists)."""
        return {
            agent: [
                {"record": r.to_dict(), "vector": self._vectors[agent][i].tolist()}
                for i, r in records.items()
            ]
            for agent, records in self._records.items()
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._records, self._vectors = {}, {}
        for agent, rows in state.items():
            self._records[agent] = {}
            self._vectors[agent] = {}
            for row in rows:
                record = MemoryRecord.from_dict(row["record"])
                self._records[agent][record.id] = record
                self._vectors[agent][record.id] = np.asarray(row["vector"], dtype=np.float32)
