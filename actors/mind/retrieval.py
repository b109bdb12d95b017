"""Retrieval scoring (spec section 2): recency, importance, relevance, min-max, weighted sum.

Pure numpy over a candidate set, with a trace of every candidate's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from actors.mind.records import IdSequence, MemoryRecord
from actors.mind.settings import RetrievalSettings


def min_max(values: np.ndarray) -> np.ndarray:
    """Scales to 0..1 over the set; where max == min every value becomes 0.5."""
    if values.size == 0:
        return values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        return np.full(values.shape, 0.5)
    return (values - lo) / (hi - lo)


@dataclass(frozen=True)
class TraceRow:
    """One candidate's numbers in one retrieval (``retrieval_id`` names the retrieval)."""

    retrieval_id: str
    query: str
    record_id: str
    recency_raw: float
    recency: float
    importance_raw: float
    importance: float
    relevance_raw: float
    relevance: float
    score: float
    rank: int
    returned: bool


@dataclass(frozen=True)
class Scored:
    """Every candidate's numbers for one query, as arrays; ``order`` lists indices, best first."""

    order: np.ndarray
    recency_raw: np.ndarray
    importance_raw: np.ndarray
    relevance_raw: np.ndarray
    recency: np.ndarray
    importance: np.ndarray
    relevance: np.ndarray
    score: np.ndarray


def score(
    records: Sequence[MemoryRecord],
    relevance_raw: np.ndarray,
    now: datetime,
    settings: RetrievalSettings,
) -> Scored:
    """Scores candidates given their relevance (the cosine of each record's and the query's
    unit embeddings, as computed by the caller in one matrix product).

    Ties are broken deterministically: by score, then newer ``created``, then record id.
    """
    n = len(records)
    accessed = np.fromiter((_seconds(r.accessed) for r in records), dtype=np.float64, count=n)
    hours = np.maximum((_seconds(now) - accessed) / 3600.0, 0.0)
    recency_raw = np.power(settings.recency_decay, hours.astype(np.float64))
    importance_raw = np.fromiter((r.importance for r in records), dtype=np.float64, count=n)
    relevance_raw = relevance_raw.astype(np.float64)
    recency = min_max(recency_raw)
    importance = min_max(importance_raw)
    relevance = min_max(relevance_raw)
    total = (
        settings.w_recency * recency
        + settings.w_importance * importance
        + settings.w_relevance * relevance
    )
    created = np.fromiter((_seconds(r.created) for r in records), dtype=np.float64, count=n)
    order = _tie_broken_by_id(np.lexsort((-created, -total)), total, created, records)
    return Scored(
        order, recency_raw, importance_raw, relevance_raw, recency, importance, relevance, total
    )


_EPOCH = datetime(1970, 1, 1)


def _seconds(when: datetime) -> float:
    """Game time (a naive datetime) as seconds since an epoch."""
    return (when - _EPOCH).total_seconds()


def _tie_broken_by_id(
    order: np.ndarray, total: np.ndarray, created: np.ndarray, records: Sequence[MemoryRecord]
) -> np.ndarray:
    """Orders runs of equal (score, created) by record id; such runs are rare."""
    if len(order) < 2:
        return order
    same = (total[order][1:] == total[order][:-1]) & (created[order][1:] == created[order][:-1])
    if not same.any():
        return order
    out = order.copy()
    i = 0
    while i < len(out) - 1:
        if not same[i]:
            i += 1
            continue
        j = i
        while j < len(same) and same[j]:
            j += 1
        out[i : j + 1] = sorted(out[i : j + 1].tolist(), key=lambda x: records[x].id)
        i = j + 1
    return out


class RetrievalIds(IdSequence):
    """The retrieval ids of one agent of one run (its memory owns them): the agent's record-id
    prefix (:class:`actors.mind.records.RecordIds`), ``-r`` and a counter of the agent's
    retrievals, 8 digits or more: ``"3f9c0d2a81b4e6f7-r00000012"``."""

    form = "{prefix}-r{n:08d}"


@dataclass(frozen=True)
class Trace:
    """One retrieval's trace, in columns (cheap to keep; rows are made only when asked for)."""

    retrieval_id: str
    query: str
    record_ids: tuple[str, ...]
    scored: Scored
    k: int

    def rows(self) -> list[TraceRow]:
        """One row per candidate, in rank order."""
        s = self.scored
        return [
            TraceRow(
                retrieval_id=self.retrieval_id,
                query=self.query,
                record_id=self.record_ids[i],
                recency_raw=float(s.recency_raw[i]),
                recency=float(s.recency[i]),
                importance_raw=float(s.importance_raw[i]),
                importance=float(s.importance[i]),
                relevance_raw=float(s.relevance_raw[i]),
                relevance=float(s.relevance[i]),
                score=float(s.score[i]),
                rank=rank,
                returned=rank < self.k,
            )
            for rank, i in enumerate(s.order.tolist())
        ]
