"""Benchmark of memory retrieval and memory writes on embedded Qdrant.

Prints a table and writes bench/results/retrieval.json:
- p50/p99 latency of ``Memory.retrieve`` (one query, traces on, k=30) for one agent holding
  1k and 10k records in ``open_qdrant_store(":memory:")``, over ~200 retrievals. Record and
  query vectors are random unit vectors (latency does not depend on what they mean), and the
  query "embedder" hands back a precomputed random vector, so the model's time is not counted;
- in the same run, the floor: a numpy brute-force computation of the same scores (recency,
  importance, relevance, min-max, weighted sum, top k) from arrays already in memory;
- the store's own share: ``candidates()`` + ``touch()`` of the returned records;
- memory writes/s including embedding, with the real ``MiniLMEmbedder`` (batches of 32 records
  through ``Memory.remember``), and store-only writes/s (random vectors, no model).

Goals: p50 <= 5 ms at 1k records, <= 20 ms at 10k.

Usage: .venv/bin/python bench/bench_retrieval.py [--retrievals 200] [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from actors.mind.memory import Memory
from actors.mind.records import KINDS, MemoryRecord, is_idle
from actors.mind.settings import MindSettings, RetrievalSettings
from actors.qdrant import open_qdrant_store

RESULTS = Path(__file__).parent / "results"
DIM = 384
T0 = datetime(2023, 2, 13, 7, 0)
WORDS = [
    "bakes",
    "paints",
    "walks",
    "reads",
    "talks",
    "to",
    "the",
    "cafe",
    "park",
    "market",
    "Isabella",
    "Sam",
    "Klaus",
    "party",
]
GOALS_MS = {1000: 5.0, 10000: 20.0}


class FixedEmbedder:
    """Hands back random unit vectors, precomputed: no model time in the latency numbers."""

    def __init__(self, seed: int = 1, pool: int = 256) -> None:
        rng = np.random.default_rng(seed)
        v = rng.standard_normal((pool, DIM)).astype(np.float32)
        self._pool = v / np.linalg.norm(v, axis=1, keepdims=True)
        self._i = 0

    @property
    def dim(self) -> int:
        return DIM

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [(self._i + j) % len(self._pool) for j in range(len(texts))]
        self._i += len(texts)
        return self._pool[rows]


def make_records(agent: str, n: int, rng: np.random.Generator) -> list[MemoryRecord]:
    """``n`` records over two game days: mostly observations, some reflections and plans,
    2% chats (not candidates by default) and 2% idle states (excluded by retrieval)."""
    out: list[MemoryRecord] = []
    for _ in range(n):
        created = T0 + timedelta(seconds=float(rng.uniform(0, 48 * 3600)))
        roll = rng.random()
        kind = "chat" if roll < 0.02 else "reflection" if roll < 0.12 else "plan"
        kind = "observation" if roll >= 0.2 else kind
        text = " ".join(rng.choice(WORDS, size=6))
        if 0.2 <= roll < 0.22:
            text = f"{agent} is idle"
        out.append(
            MemoryRecord(
                agent_id=agent,
                kind=kind,  # type: ignore[arg-type]
                description=text,
                created=created,
                last_accessed=created + timedelta(minutes=float(rng.uniform(0, 600))),
                importance=int(rng.integers(1, 11)),
                transcript=(("A", text),) if kind == "chat" else None,
                id=f"{len(out):032x}",
            )
        )
    out.sort(key=lambda r: r.created)
    return out


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def floor_scores(
    hours: np.ndarray,
    importance: np.ndarray,
    vectors: np.ndarray,
    query: np.ndarray,
    s: RetrievalSettings,
    k: int,
) -> np.ndarray:
    """The same scores in plain numpy from arrays in memory; the top ``k`` indices."""

    def mm(x: np.ndarray) -> np.ndarray:
        lo, hi = x.min(), x.max()
        return np.full_like(x, 0.5) if hi == lo else (x - lo) / (hi - lo)

    rec = mm(np.power(s.recency_decay, np.maximum(hours, 0.0)))
    imp = mm(importance)
    rel = mm(vectors @ query)
    total = s.w_recency * rec + s.w_importance * imp + s.w_relevance * rel
    top = np.argpartition(-total, k)[:k]
    return top[np.argsort(-total[top], kind="stable")]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def bench_size(n: int, retrievals: int, k: int) -> dict[str, Any]:
    rng = np.random.default_rng(n)
    settings = MindSettings.from_preset("paper").retrieval
    store = open_qdrant_store(":memory:", dim=DIM)
    records = make_records("ann", n, rng)
    vectors = unit_rows(rng, n)
    t = time.perf_counter()
    for i in range(0, n, 256):
        await store.add(records[i : i + 256], vectors[i : i + 256])
    store_writes_s = n / (time.perf_counter() - t)

    embedder = FixedEmbedder()
    memory = Memory("ann", store, embedder, settings, keep_traces=True)
    now = T0 + timedelta(hours=60)  # after every last_accessed
    await memory.retrieve(["warm up"], now, k=k)
    memory.drain_traces()

    lat_ms, floor_ms, store_ms, candidates = [], [], [], 0
    agree = 0
    for _ in range(retrievals):
        now += timedelta(seconds=10)
        # the store's share, and the candidates as they are before this retrieval touches them
        t = time.perf_counter()
        cands, matrix = await store.candidates("ann", memory.candidate_kinds())
        store_ms.append((time.perf_counter() - t) * 1e3)

        t = time.perf_counter()
        out = await memory.retrieve(["what is Isabella planning?"], now, k=k)
        lat_ms.append((time.perf_counter() - t) * 1e3)
        rows = memory.drain_traces()
        candidates = len(rows)
        t = time.perf_counter()
        await store.touch("ann", [r.id for r in out[query_of(out)]], now)  # same ids again
        store_ms[-1] += (time.perf_counter() - t) * 1e3

        # the floor: the same scores from arrays already in memory
        keep = [j for j, r in enumerate(cands) if not is_idle(r.description)]
        hours = np.array([(now - cands[j].accessed).total_seconds() / 3600 for j in keep])
        importance = np.array([cands[j].importance for j in keep], dtype=np.float64)
        mat = np.ascontiguousarray(matrix[keep], dtype=np.float64)
        q = embedder._pool[(embedder._i - 1) % len(embedder._pool)].astype(np.float64)
        t = time.perf_counter()
        top = floor_scores(hours, importance, mat, q, settings, k)
        floor_ms.append((time.perf_counter() - t) * 1e3)
        agree += [cands[keep[j]].id for j in top.tolist()] == [r.id for r in out[query_of(out)]]
    await store.close()
    return {
        "records": n,
        "candidates": candidates,
        "retrievals": retrievals,
        "k": k,
        "retrieve_p50_ms": statistics.median(lat_ms),
        "retrieve_p99_ms": pct(lat_ms, 99),
        "retrieve_mean_ms": statistics.fmean(lat_ms),
        "store_candidates_and_touch_p50_ms": statistics.median(store_ms),
        "floor_p50_ms": statistics.median(floor_ms),
        "floor_p99_ms": pct(floor_ms, 99),
        "floor_top_k_agrees": agree / retrievals,
        "goal_p50_ms": GOALS_MS.get(n),
        "meets_goal": statistics.median(lat_ms) <= GOALS_MS.get(n, float("inf")),
        "store_only_writes_per_s": store_writes_s,
    }


def query_of(out: dict[str, list[MemoryRecord]]) -> str:
    (query,) = out
    return query


async def bench_writes(n: int, batch: int) -> dict[str, Any]:
    """Memory writes/s with the real embedder: ``Memory.remember`` in batches of ``batch``."""
    from serving.embedding import MiniLMEmbedder

    embedder = MiniLMEmbedder(max_batch_size=64)
    embedder.start()
    await embedder.embed(["warm up"])
    rng = np.random.default_rng(7)
    records = make_records("bob", n, rng)
    store = open_qdrant_store(":memory:", dim=DIM)
    memory = Memory("bob", store, embedder, MindSettings().retrieval)
    t = time.perf_counter()
    for i in range(0, n, batch):
        await memory.remember(records[i : i + batch])
    total = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, n, batch):
        await embedder.embed([r.description for r in records[i : i + batch]])
    embed_only = time.perf_counter() - t
    await store.close()
    return {
        "records": n,
        "batch": batch,
        "writes_per_s": n / total,
        "embedding_only_per_s": n / embed_only,
    }


async def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--retrievals", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--write-records", type=int, default=1024)
    parser.add_argument("--no-embedder", action="store_true", help="skip the MiniLM writes")
    args = parser.parse_args(argv)

    sizes = [await bench_size(n, args.retrievals, args.k) for n in args.sizes]
    writes = None if args.no_embedder else await bench_writes(args.write_records, 32)

    head = ("records", "cands", "p50 ms", "p99 ms", "floor p50", "floor p99", "store p50")
    print(" ".join(f"{h:>10}" for h in head), f"{'goal':>6} {'ok':>4} {'store w/s':>10}")
    for r in sizes:
        print(
            f"{r['records']:>10} {r['candidates']:>10} {r['retrieve_p50_ms']:>10.2f} "
            f"{r['retrieve_p99_ms']:>10.2f} {r['floor_p50_ms']:>10.3f} {r['floor_p99_ms']:>10.3f} "
            f"{r['store_candidates_and_touch_p50_ms']:>10.3f} "
            f"{r['goal_p50_ms'] or '-':>6} {'yes' if r['meets_goal'] else 'NO':>4} "
            f"{r['store_only_writes_per_s']:>10.0f}"
        )
    if writes:
        print(
            f"memory writes with MiniLM (batches of {writes['batch']}): "
            f"{writes['writes_per_s']:.0f} records/s "
            f"(embedding alone {writes['embedding_only_per_s']:.0f}/s)"
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "note": "record and query vectors are random unit vectors; query embedding not timed",
        "kinds": list(KINDS),
        "retrieval": sizes,
        "writes": writes,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    asyncio.run(main())
