"""A MemoryStore on Qdrant (``qdrant_client``), embedded or on a server.

Layout by mode:

- Embedded (``":memory:"`` or a folder path): one collection per agent, because local mode
  evaluates payload filters in Python per point (slow; see FACTS.md). Each agent's records and
  vectors are also kept in a write-through cache in this process, loaded from Qdrant (scroll with
  vectors) on the agent's first use, so a reopened folder store sees what was written before and
  ``candidates()`` is a numpy read. Retrieval needs every candidate's vector anyway, for min-max
  normalisation over the candidate set.
- Server (an ``http(s)://`` URL): one collection for every agent, with a tenant keyword payload
  index on ``agent_id``; every call filters on it. No cache (other processes write too).

Payload: ``record.to_dict()`` without ``embedding``, plus ``created_ts`` (float seconds, for range
deletes) and ``seq`` (an insertion stamp, so records come back in creation order, ties in
insertion order). Point id: ``uuid.UUID(hex=record.id)``. Distance: cosine. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from actors.mind.records import KINDS, Kind, MemoryRecord

_KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PAGE = 1024


def point_id(record_id: str) -> str:
    """The Qdrant point id of a record id (uuid4 hex)."""
    return str(uuid.UUID(hex=record_id))


def _ts(when: datetime) -> float:
    return when.timestamp()


def _payload(record: MemoryRecord, seq: int) -> dict[str, Any]:
    d = record.to_dict()
    d.pop("embedding", None)
    d["created_ts"] = _ts(record.created)
    d["seq"] = seq
    return d


def _record(payload: dict[str, Any]) -> tuple[MemoryRecord, int]:
    d = dict(payload)
    d.pop("created_ts", None)
    seq = int(d.pop("seq", 0))
    d.pop("embedding", None)
    return MemoryRecord.from_dict(d), seq


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


class QdrantMemoryStore:
    """Memory records in Qdrant.

    Args:
        location: ``":memory:"``, a folder (embedded, persistent), or an ``http(s)://`` URL.
        dim: embedding dimension.
        collection_prefix: prefix of collection names (``<prefix>__<agent>`` embedded,
            ``<prefix>__memory`` on a server).
        api_key: for a server, if it needs one.
    """

    def __init__(
        self,
        location: str = ":memory:",
        dim: int = 384,
        collection_prefix: str = "simulacra",
        api_key: str | None = None,
    ) -> None:
        self.location = location
        self.dim = dim
        self.prefix = collection_prefix
        self.server = location.startswith(("http://", "https://"))
        if self.server:
            self.client = AsyncQdrantClient(url=location, api_key=api_key)
        elif location == ":memory:":
            self.client = AsyncQdrantClient(location=":memory:")
        else:
            self.client = AsyncQdrantClient(path=location)
        self._collections: set[str] = set()
        self._cache: dict[str, _AgentCache] = {}
        self._seq = time.time_ns()

    # ---- layout ---------------------------------------------------------------------------

    def collection(self, agent_id: str) -> str:
        """The collection holding ``agent_id``'s records."""
        if self.server:
            return f"{self.prefix}__memory"
        if _SAFE_NAME.match(agent_id):
            return f"{self.prefix}__{agent_id}"
        digest = hashlib.sha256(agent_id.encode()).hexdigest()[:24]
        return f"{self.prefix}__h{digest}"

    async def _ensure(self, name: str) -> None:
        if name in self._collections:
            return
        if not await self.client.collection_exists(name):
            await self.client.create_collection(
                name,
                vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            )
            if self.server:
                await self.client.create_payload_index(
                    name,
                    "agent_id",
                    field_schema=models.KeywordIndexParams(
                        type=models.KeywordIndexType.KEYWORD, is_tenant=True
                    ),
                )
                await self.client.create_payload_index(
                    name, "created_ts", field_schema=models.PayloadSchemaType.FLOAT
                )
        self._collections.add(name)

    def _filter(self, agent_id: str, *extra: models.Condition) -> models.Filter | None:
        must: list[models.Condition] = list(extra)
        if self.server:
            must.insert(
                0, models.FieldCondition(key="agent_id", match=models.MatchValue(value=agent_id))
            )
        return models.Filter(must=must) if must else None

    async def _scroll(
        self, agent_id: str, kinds: Collection[Kind] | None, with_vectors: bool
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        """Every matching point of an agent, in creation order (then insertion order)."""
        name = self.collection(agent_id)
        if name not in self._collections and not await self.client.collection_exists(name):
            return [], np.zeros((0, self.dim), dtype=np.float32)
        self._collections.add(name)
        extra: list[models.Condition] = []
        if kinds is not None:
            extra.append(models.FieldCondition(key="kind", match=models.MatchAny(any=list(kinds))))
        flt = self._filter(agent_id, *extra)
        rows: list[tuple[float, int, MemoryRecord, Any]] = []
        offset: Any = None
        while True:
            points, offset = await self.client.scroll(
                name,
                scroll_filter=flt,
                limit=_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            for p in points:
                assert p.payload is not None
                record, seq = _record(p.payload)
                rows.append((float(p.payload["created_ts"]), seq, record, p.vector))
            if offset is None:
                break
        rows.sort(key=lambda r: (r[0], r[1]))
        records = [r[2] for r in rows]
        if not with_vectors or not rows:
            return records, np.zeros((0, self.dim), dtype=np.float32)
        return records, np.asarray([r[3] for r in rows], dtype=np.float32)

    async def _agent(self, agent_id: str) -> _AgentCache:
        """The embedded cache of one agent, loaded from Qdrant on first use."""
        cache = self._cache.get(agent_id)
        if cache is None:
            records, vectors = await self._scroll(agent_id, None, with_vectors=True)
            cache = _AgentCache(self.dim)
            cache.append(records, vectors)
            self._cache[agent_id] = cache
        return cache

    # ---- the MemoryStore protocol -----------------------------------------------------------

    async def add(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> None:
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(records) and vectors.shape[1:] != (self.dim,):
            raise ValueError(f"vector shape {vectors.shape[1:]} != ({self.dim},)")
        by_agent: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_agent.setdefault(r.agent_id, []).append(i)
        for agent_id, rows in by_agent.items():
            mine = [
                records[i] if records[i].embedding is None else replace(records[i], embedding=None)
                for i in rows
            ]
            matrix = vectors[rows]
            cache = None if self.server else await self._agent(agent_id)
            name = self.collection(agent_id)
            await self._ensure(name)
            payloads = []
            for r in mine:
                self._seq += 1
                payloads.append(_payload(r, self._seq))
            await self.client.upsert(
                name,
                points=models.Batch(
                    ids=[point_id(r.id) for r in mine],
                    vectors=matrix.tolist(),
                    payloads=payloads,
                ),
            )
            if cache is not None:
                cache.append(mine, matrix)

    async def candidates(
        self, agent_id: str, kinds: Collection[Kind]
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        if self.server:
            return await self._scroll(agent_id, kinds, with_vectors=True)
        return (await self._agent(agent_id)).select(kinds)

    async def records(
        self, agent_id: str, kinds: Collection[Kind] | None = None
    ) -> list[MemoryRecord]:
        if self.server:
            return (await self._scroll(agent_id, kinds, with_vectors=False))[0]
        cache = await self._agent(agent_id)
        if kinds is None:
            return list(cache.records)
        return [r for r in cache.records if r.kind in kinds]

    async def get(self, agent_id: str, ids: Sequence[str]) -> list[MemoryRecord]:
        if not self.server:
            cache = await self._agent(agent_id)
            missing = [i for i in ids if i not in cache.index]
            if missing:
                raise KeyError(f"agent {agent_id}: no records {missing}")
            return [cache.records[cache.index[i]] for i in ids]
        name = self.collection(agent_id)
        found: dict[str, MemoryRecord] = {}
        if ids and await self.client.collection_exists(name):
            points = await self.client.retrieve(
                name, [point_id(i) for i in dict.fromkeys(ids)], with_payload=True
            )
            for p in points:
                assert p.payload is not None
                record, _ = _record(p.payload)
                if record.agent_id == agent_id:
                    found[record.id] = record
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"agent {agent_id}: no records {missing}")
        return [found[i] for i in ids]

    async def touch(self, agent_id: str, ids: Sequence[str], when: datetime) -> None:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return
        if self.server:
            await self.get(agent_id, ids)  # KeyError on ids that are not this agent's
        else:
            cache = await self._agent(agent_id)
            missing = [i for i in ids if i not in cache.index]
            if missing:
                raise KeyError(f"agent {agent_id}: no records {missing}")
        await self.client.set_payload(
            self.collection(agent_id),
            payload={"last_accessed": when.isoformat()},
            points=[point_id(i) for i in ids],
        )
        if not self.server:
            for i in ids:
                row = cache.index[i]
                cache.records[row] = cache.records[row].touched(when)

    async def count(self, agent_id: str) -> int:
        if not self.server:
            return (await self._agent(agent_id)).size
        name = self.collection(agent_id)
        if not await self.client.collection_exists(name):
            return 0
        result = await self.client.count(name, count_filter=self._filter(agent_id), exact=True)
        return result.count

    async def delete_created_after(self, agent_id: str, when: datetime) -> int:
        cache = None if self.server else await self._agent(agent_id)
        name = self.collection(agent_id)
        if name not in self._collections and not await self.client.collection_exists(name):
            return 0
        after = models.FieldCondition(key="created_ts", range=models.Range(gt=_ts(when)))
        flt = self._filter(agent_id, after)
        assert flt is not None
        if cache is None:
            doomed = (await self.client.count(name, count_filter=flt, exact=True)).count
        else:
            keep = [i for i, r in enumerate(cache.records) if not r.created > when]
            doomed = cache.size - len(keep)
        if doomed:
            await self.client.delete(name, points_selector=models.FilterSelector(filter=flt))
            if cache is not None:
                cache.keep(keep)
        return doomed

    async def close(self) -> None:
        """Releases the client (and a folder store's lock); the cache is dropped."""
        await self.client.close()
        self._cache.clear()
        self._collections.clear()
