"""The memory store on a Qdrant server: one collection for every agent, a tenant index on
``agent_id``, and every call filtered on it. No cache (other processes write too)."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import datetime

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from actors.mind.records import Kind, MemoryRecord
from actors.qdrant.points import (
    by_agent,
    check_vectors,
    created_ts,
    payload,
    point_id,
    record_of,
    scroll,
    vector_params,
)


class ServerQdrantStore:
    """Memory records on a Qdrant server; constructing it connects to nothing (:meth:`start`).

    Args:
        url: the server, ``http(s)://host:port``.
        dim: embedding dimension.
        collection_prefix: the collection is ``<prefix>__memory``.
        api_key: for a server that needs one.
    """

    def __init__(
        self,
        url: str,
        dim: int = 384,
        collection_prefix: str = "simulacra",
        api_key: str | None = None,
    ) -> None:
        self.url = url
        self.dim = dim
        self.prefix = collection_prefix
        self.api_key = api_key
        self._client: AsyncQdrantClient | None = None
        self._ready = False
        self._seq = time.time_ns()

    def start(self, client: AsyncQdrantClient | None = None) -> None:
        """Makes the client (or takes ``client``: tests give a local one). Idempotent."""
        if self._client is None:
            self._client = client or AsyncQdrantClient(url=self.url, api_key=self.api_key)

    @property
    def client(self) -> AsyncQdrantClient:
        if self._client is None:
            raise RuntimeError(f"the Qdrant store at {self.url!r} is not started")
        return self._client

    def collection(self, agent_id: str) -> str:
        """The collection holding every agent's records."""
        return f"{self.prefix}__memory"

    async def _exists(self) -> bool:
        if not self._ready and await self.client.collection_exists(self.collection("")):
            self._ready = True
        return self._ready

    async def _ensure(self) -> None:
        if await self._exists():
            return
        name = self.collection("")
        await self.client.create_collection(name, vectors_config=vector_params(self.dim))
        tenant = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
        await self.client.create_payload_index(name, "agent_id", field_schema=tenant)
        await self.client.create_payload_index(
            name, "created_ts", field_schema=models.PayloadSchemaType.FLOAT
        )
        self._ready = True

    @staticmethod
    def _filter(agent_id: str, *extra: models.Condition) -> models.Filter:
        mine = models.FieldCondition(key="agent_id", match=models.MatchValue(value=agent_id))
        return models.Filter(must=[mine, *extra])

    async def _scroll(
        self, agent_id: str, kinds: Collection[Kind] | None, with_vectors: bool
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        if not await self._exists():
            return [], np.zeros((0, self.dim), dtype=np.float32)
        extra: list[models.Condition] = []
        if kinds is not None:
            extra.append(models.FieldCondition(key="kind", match=models.MatchAny(any=list(kinds))))
        flt = self._filter(agent_id, *extra)
        return await scroll(self.client, self.collection(agent_id), flt, self.dim, with_vectors)

    # ---- the MemoryStore protocol -----------------------------------------------------------

    async def add(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> None:
        vectors = check_vectors(list(records), vectors, self.dim)
        if not records:
            return
        await self._ensure()
        for rows in by_agent(list(records)).values():
            mine = [records[i] for i in rows]
            payloads = []
            for r in mine:
                self._seq += 1
                payloads.append(payload(r, self._seq))
            ids = [point_id(r.id) for r in mine]
            batch = models.Batch(ids=ids, vectors=vectors[rows].tolist(), payloads=payloads)
            await self.client.upsert(self.collection(""), points=batch)

    async def candidates(
        self, agent_id: str, kinds: Collection[Kind]
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        return await self._scroll(agent_id, kinds, with_vectors=True)

    async def records(
        self, agent_id: str, kinds: Collection[Kind] | None = None
    ) -> list[MemoryRecord]:
        return (await self._scroll(agent_id, kinds, with_vectors=False))[0]

    async def get(self, agent_id: str, ids: Sequence[str]) -> list[MemoryRecord]:
        found: dict[str, MemoryRecord] = {}
        if ids and await self._exists():
            points = await self.client.retrieve(
                self.collection(agent_id),
                [point_id(i) for i in dict.fromkeys(ids)],
                with_payload=True,
            )
            for p in points:
                assert p.payload is not None
                record, _ = record_of(p.payload)
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
        await self.get(agent_id, ids)  # KeyError on ids that are not this agent's
        await self.client.set_payload(
            self.collection(agent_id),
            payload={"last_accessed": when.isoformat()},
            points=[point_id(i) for i in ids],
        )

    async def count(self, agent_id: str) -> int:
        if not await self._exists():
            return 0
        name = self.collection(agent_id)
        result = await self.client.count(name, count_filter=self._filter(agent_id), exact=True)
        return result.count

    async def delete_created_after(self, agent_id: str, when: datetime) -> int:
        if not await self._exists():
            return 0
        after = models.FieldCondition(key="created_ts", range=models.Range(gt=created_ts(when)))
        flt = self._filter(agent_id, after)
        name = self.collection(agent_id)
        doomed = (await self.client.count(name, count_filter=flt, exact=True)).count
        if doomed:
            await self.client.delete(name, points_selector=models.FilterSelector(filter=flt))
        return doomed

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._ready = False
