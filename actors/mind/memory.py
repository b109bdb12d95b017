"""An agent's memory: its records in a store, embedded in batches, retrieved as the spec says."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np

from actors.mind.memory_store import MemoryStore
from actors.mind.records import Kind, MemoryRecord, RecordIds, is_idle
from actors.mind.retrieval import RetrievalIds, Trace, TraceRow, score
from actors.mind.settings import RetrievalSettings
from serving.embedding import Embedder


class Memory:
    """One agent's memory stream.

    Args:
        agent_id: whose memory this is.
        store: where records live.
        embedder: texts to unit vectors.
        settings: retrieval settings (weights, decay, k, chats included or not).
        seed: the run's seed, from which (with ``agent_id``) every record's id is derived.
        keep_traces: keep a trace row per candidate of every retrieval in ``traces``.

    Every record of the agent is made by :meth:`record`, which gives it the next id of the
    agent's id source; every retrieval (one query of :meth:`retrieve`) gets the next id of the
    agent's retrieval id source. Both sources are part of :meth:`get_state`, so a resumed run
    gives its records and retrievals the same ids as an uninterrupted one.
    """

    def __init__(
        self,
        agent_id: str,
        store: MemoryStore,
        embedder: Embedder,
        settings: RetrievalSettings,
        seed: int = 0,
        keep_traces: bool = True,
    ) -> None:
        self.agent_id = agent_id
        self.ids = RecordIds(seed, agent_id)
        self.retrieval_ids = RetrievalIds(self.ids.prefix)
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.keep_traces = keep_traces
        self.traces: list[Trace] = []
        self.journal: list[tuple[str, str]] = []  # (kind, description) of records written
        self._idle: dict[str, bool] = {}  # per record id: is its description an idle state

    def record(
        self,
        kind: Kind,
        description: str,
        created: datetime,
        importance: int,
        *,
        evidence: tuple[str, ...] = (),
        depth: int = 0,
        expires: datetime | None = None,
        transcript: tuple[tuple[str, str], ...] | None = None,
    ) -> MemoryRecord:
        """A new record of this agent (not yet stored: :meth:`remember`), with the next id."""
        return MemoryRecord(
            self.agent_id,
            kind,
            description,
            created,
            importance,
            id=self.ids.next(),
            evidence=evidence,
            depth=depth,
            expires=expires,
            transcript=transcript,
        )

    def get_state(self) -> dict[str, Any]:
        """The id sources (the records themselves live in the store)."""
        return {
            "record_ids": self.ids.get_state(),
            "retrieval_ids": self.retrieval_ids.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if "record_ids" in state:
            self.ids.set_state(state["record_ids"])
        # A state from before retrieval ids has none: its counter reads as 0.
        self.retrieval_ids.set_state(state.get("retrieval_ids") or {"counter": 0})

    async def remember(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        """Embeds the records' descriptions in one batch and stores them."""
        if not records:
            return []
        for r in records:
            if r.agent_id != self.agent_id:
                raise ValueError(f"record {r.id} belongs to {r.agent_id}, not {self.agent_id}")
        vectors = await self.embedder.embed([r.description for r in records])
        await self.store.add(records, vectors)
        self.journal.extend((r.kind, r.description) for r in records)
        return list(records)

    def drain_written(self) -> list[tuple[str, str]]:
        """(kind, description) of every record written since the last drain."""
        journal, self.journal = self.journal, []
        return journal

    def candidate_kinds(self) -> tuple[Kind, ...]:
        kinds: tuple[Kind, ...] = ("observation", "reflection", "plan")
        return (*kinds, "chat") if self.settings.include_chats else kinds

    async def retrieve(
        self,
        queries: Sequence[str],
        now: datetime,
        k: int | None = None,
        kinds: Collection[Kind] | None = None,
    ) -> dict[str, list[MemoryRecord]]:
        """The top ``k`` records for each query, best first; touches exactly those returned.

        Candidates are the agent's observations, reflections and plans (chats behind the
        ``include_chats`` setting), idle states excluded. Every query is scored against the
        records' ``last_accessed`` as it was before this call.
        """
        k = k or self.settings.top_k
        records, vectors = await self.store.candidates(
            self.agent_id, kinds or self.candidate_kinds()
        )
        idle = self._idle
        for r in records:
            if r.id not in idle:
                idle[r.id] = is_idle(r.description)
        keep = [i for i, r in enumerate(records) if not idle[r.id]]
        if len(keep) < len(records):
            records = [records[i] for i in keep]
        query_vectors = (
            await self.embedder.embed(list(queries))
            if queries
            else np.zeros((0, self.embedder.dim), np.float32)
        )
        # One float32 product for all queries over the stored matrix (no copy of the matrix).
        relevance = (
            vectors @ query_vectors.astype(vectors.dtype).T
            if len(vectors)
            else np.zeros((0, len(query_vectors)), np.float32)
        )
        if len(keep) < len(relevance):
            relevance = relevance[keep]
        ids = tuple(r.id for r in records) if self.keep_traces else ()
        out: dict[str, list[MemoryRecord]] = {}
        returned: dict[str, None] = {}
        for j, query in enumerate(queries):
            scored = score(records, relevance[:, j], now, self.settings)
            top = [records[i] for i in scored.order[:k].tolist()]
            out[query] = [replace(r, last_accessed=now) for r in top]
            returned.update((r.id, None) for r in top)
            retrieval_id = self.retrieval_ids.next()  # counted with or without traces
            if self.keep_traces:
                self.traces.append(Trace(retrieval_id, query, ids, scored, k))
        if returned:
            await self.store.touch(self.agent_id, list(returned), now)
        return out

    async def records(self, kinds: Collection[Kind] | None = None) -> list[MemoryRecord]:
        return await self.store.records(self.agent_id, kinds)

    def drain_traces(self) -> list[TraceRow]:
        """The trace rows of every retrieval since the last drain (one per candidate)."""
        traces, self.traces = self.traces, []
        return [row for trace in traces for row in trace.rows()]
