"""Benchmark of the LLM and embedding services with the tiny model.

Prints a table and writes bench/results/serving.json:
- requests/s and mean executed batch size at 1, 8 and 64 concurrent callers through the Serve
  handle (callers are coroutines in one Ray actor, as agents in a host are);
- throughput of a batch mixing 4 adapters divided by that of a batch of one adapter (the hf
  engine in-process, so only the forward passes are compared; goal >= 0.8);
- time per call through the handle minus the engine's own time, at 1 caller (goal <= 10 ms);
- embeddings/s at batch 1 and 64 through the embedding service's handle.

Usage: .venv/bin/python bench/bench_serving.py [--seconds 10] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from cluster.ray_runtime import init_ray
from serving.config import EngineConfig
from serving.engines.hf import HFEngine
from serving.service import ServiceOptions, start_services
from serving.tiny_model import build_tiny_model
from serving.types import LLMRequest

RESULTS = Path(__file__).parent / "results"
PROMPTS = ["the baker opens the shop", "a letter arrives at noon", "rain on the town square"]


def _request(i: int, adapter: str | None, max_tokens: int) -> LLMRequest:
    return LLMRequest.chat(
        [("user", f"{PROMPTS[i % len(PROMPTS)]} {i}")], adapter=adapter, max_tokens=max_tokens
    )


@ray.remote(num_cpus=0)
class LoadActor:
    """Callers living in one actor, each sending one request at a time through the handle."""

    async def run(self, callers: int, seconds: float, max_tokens: int) -> dict[str, Any]:
        from serving.clients import ServeLLM

        llm = ServeLLM()
        adapters = [None, "alice", "bob"]
        await llm.generate([_request(0, None, max_tokens)])  # warm the handle
        deadline = time.perf_counter() + seconds
        rows: list[tuple[float, float, int]] = []

        async def caller(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                (result,) = await llm.generate([_request(i, adapters[i % 3], max_tokens)])
                rows.append((time.perf_counter() - start, result.engine_s, result.batch_size))
                i += callers

        start = time.perf_counter()
        await asyncio.gather(*[caller(k) for k in range(callers)])
        wall = time.perf_counter() - start
        return {
            "callers": callers,
            "requests": len(rows),
            "requests_per_s": len(rows) / wall,
            "mean_batch_size": statistics.fmean(r[2] for r in rows),
            "mean_call_ms": 1000 * statistics.fmean(r[0] for r in rows),
            "mean_engine_ms": 1000 * statistics.fmean(r[1] for r in rows),
            "overhead_ms": 1000 * statistics.fmean(r[0] - r[1] for r in rows),
            "p50_overhead_ms": 1000 * statistics.median(r[0] - r[1] for r in rows),
        }

    async def embed(self, batch: int, seconds: float) -> dict[str, Any]:
        from serving.clients import ServeEmbedder

        embedder = ServeEmbedder()
        texts = [f"memory {i}: someone walks across the town square" for i in range(batch)]
        await embedder.embed(texts)
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            await embedder.embed(texts)
            n += batch
        return {"batch": batch, "embeddings_per_s": n / (time.perf_counter() - start)}


async def _mixed_adapter_ratio(batch: int, max_tokens: int, repeats: int) -> dict[str, Any]:
    names = ["a1", "a2", "a3", "a4"]
    folder = Path(tempfile.mkdtemp(prefix="simulacra-bench-")) / "tiny4"
    build_tiny_model(folder, seed=0, adapters=names)
    adapters = {n: str(folder / "adapters" / n) for n in names}
    engine = HFEngine(EngineConfig(model=str(folder), adapters=adapters, max_batch_size=batch))
    engine.start()

    def batch_of(pick: list[str]) -> list[LLMRequest]:
        return [_request(i, pick[i % len(pick)], max_tokens) for i in range(batch)]

    async def timed(pick: list[str]) -> tuple[float, int]:
        start = time.perf_counter()
        results = await engine.generate(batch_of(pick))
        elapsed = time.perf_counter() - start
        assert all(r.ok and r.batch_size == batch for r in results)
        return elapsed, sum(r.completion_tokens for r in results)

    # Alternate the two kinds of batch so that both see the same machine noise; take medians.
    await timed(["a1"])
    await timed(names)
    single, mixed = [], []
    for _ in range(repeats):
        single.append(await timed(["a1"]))
        mixed.append(await timed(names))
    single_s = statistics.median(t for t, _ in single)
    mixed_s = statistics.median(t for t, _ in mixed)
    single_tok = statistics.median(n / t for t, n in single)
    mixed_tok = statistics.median(n / t for t, n in mixed)
    return {
        "batch": batch,
        "repeats": repeats,
        "single_adapter_rows_per_s": batch / single_s,
        "four_adapters_rows_per_s": batch / mixed_s,
        "ratio": single_s / mixed_s,
        "single_adapter_tokens_per_s": single_tok,
        "four_adapters_tokens_per_s": mixed_tok,
        "ratio_tokens": mixed_tok / single_tok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    mixed = asyncio.run(_mixed_adapter_ratio(32, args.max_tokens, repeats=15))

    init_ray()
    start_services(EngineConfig(model="tiny"), ServiceOptions(port=8765))
    load = LoadActor.remote()  # type: ignore[attr-defined]
    concurrency = [ray.get(load.run.remote(c, args.seconds, args.max_tokens)) for c in (1, 8, 64)]
    embeddings = [ray.get(load.embed.remote(b, args.seconds / 2)) for b in (1, 64)]

    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "settings": vars(args),
        "handle_concurrency": concurrency,
        "mixed_adapters": mixed,
        "overhead_at_1_caller_ms": concurrency[0]["overhead_ms"],
        "embeddings": embeddings,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(results, indent=2))

    print(
        f"\nLLM service, tiny model, {args.max_tokens} new tokens per request, through the handle"
    )
    print(f"{'callers':>8} {'req/s':>8} {'mean batch':>11} {'call ms':>8} {'engine ms':>10}")
    for row in concurrency:
        print(
            f"{row['callers']:>8} {row['requests_per_s']:>8.1f} {row['mean_batch_size']:>11.2f}"
            f" {row['mean_call_ms']:>8.1f} {row['mean_engine_ms']:>10.1f}"
        )
    print(
        f"\nmixed 4 adapters / one adapter, batch {mixed['batch']}: {mixed['ratio']:.2f}"
        f" ({mixed['four_adapters_rows_per_s']:.1f} vs {mixed['single_adapter_rows_per_s']:.1f}"
        " rows/s; goal >= 0.8);"
        f" in completion tokens/s: {mixed['ratio_tokens']:.2f}"
    )
    print(
        f"handle overhead at 1 caller: {concurrency[0]['overhead_ms']:.1f} ms mean,"
        f" {concurrency[0]['p50_overhead_ms']:.1f} ms median (goal <= 10 ms)"
    )
    for row in embeddings:
        print(f"embeddings/s at batch {row['batch']}: {row['embeddings_per_s']:.1f}")
    print(f"\nwritten to {RESULTS / 'serving.json'}")


if __name__ == "__main__":
    main()
