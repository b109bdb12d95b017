"""What both Qdrant stores share: point ids, a record's payload, reading an agent's points.

Payload: ``record.to_dict()``, plus ``created_ts`` (float seconds, for range deletes) and
``seq`` (an insertion stamp, so records come back in creation order, ties in insertion order).
Point id: ``uuid.UUID(hex=record.id)``. Distance: cosine. Nothing is pickled.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from actors.mind.records import MemoryRecord

PAGE = 1024  # points per scroll request


def point_id(record_id: str) -> str:
    """The Qdrant point id of a record id (uuid4 hex)."""
    return str(uuid.UUID(hex=record_id))


def created_ts(when: datetime) -> float:
    return when.timestamp()


def payload(record: MemoryRecord, seq: int) -> dict[str, Any]:
    d = record.to_dict()
    d["created_ts"] = created_ts(record.created)
    d["seq"] = seq
    return d


def record_of(point_payload: dict[str, Any]) -> tuple[MemoryRecord, int]:
    """The record a payload holds, and its insertion stamp."""
    d = dict(point_payload)
    d.pop("created_ts", None)
    seq = int(d.pop("seq", 0))
    return MemoryRecord.from_dict(d), seq


def vector_params(dim: int) -> models.VectorParams:
    return models.VectorParams(size=dim, distance=models.Distance.COSINE)


async def scroll(
    client: AsyncQdrantClient,
    name: str,
    flt: models.Filter | None,
    dim: int,
    with_vectors: bool,
) -> tuple[list[MemoryRecord], np.ndarray]:
    """Every point of collection ``name`` matching ``flt``, in creation order (then insertion
    order), and their vectors (an empty matrix without ``with_vectors``)."""
    rows: list[tuple[float, int, MemoryRecord, Any]] = []
    offset: Any = None
    while True:
        points, offset = await client.scroll(
            name,
            scroll_filter=flt,
            limit=PAGE,
            offset=offset,
            with_payload=True,
            with_vectors=with_vectors,
        )
        for p in points:
            assert p.payload is not None
            record, seq = record_of(p.payload)
            rows.append((float(p.payload["created_ts"]), seq, record, p.vector))
        if offset is None:
            break
    rows.sort(key=lambda r: (r[0], r[1]))
    records = [r[2] for r in rows]
    if not with_vectors or not rows:
        return records, np.zeros((0, dim), dtype=np.float32)
    return records, np.asarray([r[3] for r in rows], dtype=np.float32)


def check_vectors(records: list[MemoryRecord], vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` as float32, one row of ``dim`` per record (ValueError otherwise)."""
    if len(records) != len(vectors):
        raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(records) and vectors.shape[1:] != (dim,):
        raise ValueError(f"vector shape {vectors.shape[1:]} != ({dim},)")
    return vectors


def by_agent(records: list[MemoryRecord]) -> dict[str, list[int]]:
    """The rows of each agent's records, in order."""
    rows: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        rows.setdefault(r.agent_id, []).append(i)
    return rows
