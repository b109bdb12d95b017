"""Retrieval scoring (spec section 2): recency, importance, relevance, min-max, weighted sum.

Pure numpy over a candidate set, with a trace of every candidate's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from actors.mind.records import MemoryRecord
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
    """One candidate's numbers in one retrieval."""

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
    """The ranked result of scoring candidates: indices into the candidates, best first."""

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
    vectors: np.ndarray,
    query_vector: np.ndarray,
    now: datetime,
    settings: RetrievalSettings,
) -> Scored:
    """Scores candidates for one query vector (unit vectors: cosine is a dot product).

    Ties are broken deterministically: by score, then newer ``created``, then record id.
    """
    hours = np.array(
        [max((now - r.accessed).total_seconds() / 3600.0, 0.0) for r in records], dtype=np.float64
    )
    recency_raw = np.power(settings.recency_decay, hours)
    importance_raw = np.array([r.importance for r in records], dtype=np.float64)
    relevance_raw = (
        vectors.astype(np.float64) @ query_vector.astype(np.float64)
        if len(records)
        else np.zeros(0)
    )
    recency, importance, relevance = (
        min_max(recency_raw),
        min_max(importance_raw),
        min_max(relevance_raw),
    )
    total = (
        settings.w_recency * recency
        + settings.w_importance * importance
        + settings.w_relevance * relevance
    )
    created = np.array([-r.created.timestamp() for r in records], dtype=np.float64)
    ids = np.array([r.id for r in records])
    order = np.lexsort((ids, created, -total)) if len(records) else np.zeros(0, dtype=np.int64)
    return Scored(
        order, recency_raw, importance_raw, relevance_raw, recency, importance, relevance, total
    )


def trace_rows(
    query: str, records: Sequence[MemoryRecord], scored: Scored, k: int
) -> list[TraceRow]:
    """One trace row per candidate, in rank order."""
    rows = []
    for rank, i in enumerate(scored.order.tolist()):
        rows.append(
            TraceRow(
                query=query,
                record_id=records[i].id,
                recency_raw=float(scored.recency_raw[i]),
                recency=float(scored.recency[i]),
                importance_raw=float(scored.importance_raw[i]),
                importance=float(scored.importance[i]),
                relevance_raw=float(scored.relevance_raw[i]),
                relevance=float(scored.relevance[i]),
                score=float(scored.score[i]),
                rank=rank,
                returned=rank < k,
            )
        )
    return rows
