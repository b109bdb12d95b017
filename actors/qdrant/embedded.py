"""The memory store on embedded Qdrant (``":memory:"`` or a folder): one collection per agent.

Local mode evaluates payload filters in Python per point (slow; see FACTS.md), so each agent
has its own collection, and its records and vectors are also kept in a write-through cache in
this process, loaded from Qdrant (scroll with vectors) on the agent's first use: a reopened
folder store sees what was written before, and ``candidates()`` is a numpy read. Retrieval needs
every candidate's vector anyway, for min-max normalisation over the candidate set.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from actors.mind.records import KINDS, Kind, MemoryRecord
from actors.qdrant.points import (
    by_agent,
    check_vectors,
    created_ts,
    payload,
    point_id,
    scroll,
    vector_params,
)

_KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class _AgentCache:
    """One agent's records and vectors, in insertion order; rows of ``vectors`` match."""

    dim: int
    records: list[MemoryRecord] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    size: int = 0
    # kinds -> (rows, their vectors): the copy is made once per kinds between writes
    selections: dict[frozenset[str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.shape[1] != self.dim:
            self.vectors = np.zeros((0, self.dim), dtype=np.float32)

    def append(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> None:
        self.selections.clear()
        need = self.size + len(records)
        if need > len(self.vectors):
            capacity = max(need, 2 * len(self.vectors), 64)
            grown = np.zeros((capacity, self.dim), dtype=np.float32)
            grown[: self.size] = self.vectors[: self.size]
            self.vectors = grown
            kinds = np.zeros(capacity, dtype=np.int8)
            kinds[: self.size] = self.kinds[: self.size]
            self.kinds = kinds
        for record, vector in zip(records, vectors, strict=True):
            row = self.index.get(record.id)
            if row is None:  # a new record
                row = self.size
                self.size += 1
                self.records.append(record)
                self.index[record.id] = row
            else:  # an upsert of a known id replaces it in place
                self.records[row] = record
            self.vectors[row] = vector
            self.kinds[row] = _KIND_CODE[record.kind]

    def select(self, kinds: Collection[Kind]) -> tuple[list[MemoryRecord], np.ndarray]:
        key = frozenset(kinds)
        hit = self.selections.get(key)
        if hit is None:
            mask = np.isin(self.kinds[: self.size], [_KIND_CODE[k] for k in key])
            if mask.all():
                rows, matrix = np.arange(self.size), self.vectors[: self.size]
            else:
                rows = np.flatnonzero(mask)
                matrix = self.vectors[rows]
            matrix.flags.writeable = False
            hit = self.selections[key] = (rows, matrix)
        rows, matrix = hit
        if len(rows) == self.size:
            return list(self.records), matrix
        return [self.records[i] for i in rows.tolist()], matrix

    def keep(self, rows: Sequence[int]) -> None:
        self.selections.clear()
        records = [self.records[i] for i in rows]
        vectors = self.vectors[list(rows)] if rows else np.zeros((0, self.dim), np.float32)
        kinds = self.kinds[list(rows)] if rows else np.zeros(0, np.int8)
        self.records, self.size = records, len(records)
        self.vectors, self.kinds = np.ascontiguousarray(vectors, dtype=np.float32), kinds
        self.index = {r.id: i for i, r in enumerate(records)}

    def missing(self, agent_id: str, ids: Sequence[str]) -> None:
        """KeyError naming the ids that are not this agent's."""
        absent = [i for i in ids if i not in self.index]
        if absent:
            raise KeyError(f"agent {agent_id}: no records {absent}")


class EmbeddedQdrantStore:
    """Memory records in embedded Qdrant; constructing it opens nothing (:meth:`start` does).

    Args:
        location: ``":memory:"``, or a folder (persistent; one process at a time holds it).
        dim: embedding dimension.
        collection_prefix: collections are named ``<prefix>__<agent>``.
    """

    def __init__(
        self, location: str = ":memory:", dim: int = 384, collection_prefix: str = "simulacra"
    ) -> None:
        self.location = location
        self.dim = dim
        self.prefix = collection_prefix
        self._client: AsyncQdrantClient | None = None
        self._collections: set[str] = set()
        self._cache: dict[str, _AgentCache] = {}
        self._seq = time.time_ns()

    def start(self) -> None:
        """Opens the client (a folder store takes the folder's lock). Idempotent."""
        if self._client is None:
            if self.location == ":memory:":
                self._client = AsyncQdrantClient(location=":memory:")
            else:
                self._client = AsyncQdrantClient(path=self.location)

    @property
    def client(self) -> AsyncQdrantClient:
        if self._client is None:
            raise RuntimeError(f"the Qdrant store at {self.location!r} is not started")
        return self._client

    def collection(self, agent_id: str) -> str:
        """The collection holding ``agent_id``'s records."""
        if _SAFE_NAME.match(agent_id):
            return f"{self.prefix}__{agent_id}"
        digest = hashlib.sha256(agent_id.encode()).hexdigest()[:24]
        return f"{self.prefix}__h{digest}"

    async def _exists(self, name: str) -> bool:
        if name in self._collections:
            return True
        if await self.client.collection_exists(name):
            self._collections.add(name)
            return True
        return False

    async def _agent(self, agent_id: str) -> _AgentCache:
        """The cache of one agent, loaded from Qdrant on first use."""
        cache = self._cache.get(agent_id)
        if cache is None:
            cache = _AgentCache(self.dim)
            name = self.collection(agent_id)
            if await self._exists(name):
                cache.append(*await scroll(self.client, name, None, self.dim, with_vectors=True))
            self._cache[agent_id] = cache
        return cache

    # ---- the MemoryStore protocol -----------------------------------------------------------

    async def add(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> None:
        vectors = check_vectors(list(records), vectors, self.dim)
        for agent_id, rows in by_agent(list(records)).items():
            mine = [records[i] for i in rows]
            matrix = vectors[rows]
            cache = await self._agent(agent_id)
            name = self.collection(agent_id)
            if not await self._exists(name):
                await self.client.create_collection(name, vectors_config=vector_params(self.dim))
                self._collections.add(name)
            payloads = []
            for r in mine:
                self._seq += 1
                payloads.append(payload(r, self._seq))
            ids = [point_id(r.id) for r in mine]
            batch = models.Batch(ids=ids, vectors=matrix.tolist(), payloads=payloads)
            await self.client.upsert(name, points=batch)
            cache.append(mine, matrix)

    async def candidates(
        self, agent_id: str, kinds: Collection[Kind]
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        return (await self._agent(agent_id)).select(kinds)

    async def records(
        self, agent_id: str, kinds: Collection[Kind] | None = None
    ) -> list[MemoryRecord]:
        cache = await self._agent(agent_id)
        if kinds is None:
            return list(cache.records)
        return [r for r in cache.records if r.kind in kinds]

    async def get(self, agent_id: str, ids: Sequence[str]) -> list[MemoryRecord]:
        cache = await self._agent(agent_id)
        cache.missing(agent_id, ids)
        return [cache.records[cache.index[i]] for i in ids]

    async def touch(self, agent_id: str, ids: Sequence[str], when: datetime) -> None:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return
        cache = await self._agent(agent_id)
        cache.missing(agent_id, ids)
        await self.client.set_payload(
            self.collection(agent_id),
            payload={"last_accessed": when.isoformat()},
            points=[point_id(i) for i in ids],
        )
        for i in ids:
            row = cache.index[i]
            cache.records[row] = cache.records[row].touched(when)

    async def count(self, agent_id: str) -> int:
        return (await self._agent(agent_id)).size

    async def delete_created_after(self, agent_id: str, when: datetime) -> int:
        cache = await self._agent(agent_id)
        name = self.collection(agent_id)
        if not await self._exists(name):
            return 0
        keep = [i for i, r in enumerate(cache.records) if not r.created > when]
        doomed = cache.size - len(keep)
        if doomed:
            after = models.FieldCondition(key="created_ts", range=models.Range(gt=created_ts(when)))
            selector = models.FilterSelector(filter=models.Filter(must=[after]))
            await self.client.delete(name, points_selector=selector)
            cache.keep(keep)
        return doomed

    async def close(self) -> None:
        """Releases the client (and a folder store's lock); the cache is dropped."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._cache.clear()
        self._collections.clear()
