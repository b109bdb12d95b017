"""The ``hf`` engine's weights in bf16 against float32 on this CPU, at the same answers.

On the recorded requests of a town run (``--recording``, from ``simulacra run --record``), the
engine decodes every request greedily at ``--concurrency`` concurrent callers, once with float32
weights and once with bf16, and reports completion tokens/s of each, how many answers are the
same token for token, and, for bf16, whether a request's answer alone equals its answer in the
batch (batch invariance: float32 has it). The CPU's flags are printed beside the figures: bf16
pays off only with bf16 matrix units (AMX, AVX-512 bf16).

Usage: .venv/bin/python bench/bench_dtype.py --recording FILE [--requests 64]
    [--concurrency 32] [--threads N] [--out bench/results/bench_dtype.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_engine import decode  # noqa: E402
from serving.config import EngineConfig  # noqa: E402
from serving.cpu_flags import cpu_flags  # noqa: E402
from serving.engines.hf import HFEngine  # noqa: E402
from serving.types import LLMRequest  # noqa: E402
from serving.wrappers.recording import load_recording  # noqa: E402


async def measure(dtype: str, requests: list[LLMRequest], args: argparse.Namespace) -> dict:
    engine = HFEngine(EngineConfig(model=args.model, dtype=dtype, cpu_threads=args.threads))
    engine.start()
    await engine.generate([requests[0]])  # warm-up
    t0 = time.perf_counter()
    batched = await decode(engine, requests, args.concurrency)
    wall = time.perf_counter() - t0
    alone = await decode(engine, requests[: args.alone], 1)
    engine.close()
    completion = sum(r.completion_tokens for r in batched)
    return {
        "dtype": dtype,
        "wall_s": wall,
        "completion_tokens": completion,
        "completion_tokens_per_s": completion / wall,
        "tokens_per_s": (completion + sum(r.prompt_tokens for r in batched)) / wall,
        "texts": [r.text for r in batched],
        "alone_equals_batched": sum(a.text == b.text for a, b in zip(alone, batched, strict=False)),
        "alone_checked": len(alone),
        "failed": sum(not r.ok for r in batched),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recording", required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--alone", type=int, default=16, help="requests also decoded alone")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_dtype.json"))
    args = parser.parse_args()
    requests = [
        dataclasses.replace(r, temperature=0.0, seed=None)  # greedy: answers comparable
        for r, _ in load_recording(args.recording)[: args.requests]
    ]
    flags = cpu_flags()
    print(f"CPU: {flags.describe()}")
    runs = [asyncio.run(measure(dtype, requests, args)) for dtype in ("float32", "bfloat16")]
    same = sum(a == b for a, b in zip(runs[0]["texts"], runs[1]["texts"], strict=True))
    print(f"{'dtype':>9} {'wall s':>7} {'compl/s':>8} {'tok/s':>8} {'alone=batch':>12} {'fail':>5}")
    for r in runs:
        print(
            f"{r['dtype']:>9} {r['wall_s']:>7.1f} {r['completion_tokens_per_s']:>8.1f}"
            f" {r['tokens_per_s']:>8.1f} {r['alone_equals_batched']:>5}/{r['alone_checked']:<6}"
            f" {r['failed']:>5}"
        )
    print(f"answers equal token for token, bf16 vs float32: {same} of {len(requests)}")
    print(f"bf16 / float32 speed: {runs[1]['tokens_per_s'] / runs[0]['tokens_per_s']:.2f}")
    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "cpu_flags": flags.as_dict(),
        "requests": len(requests),
        "concurrency": args.concurrency,
        "same_answers": same,
        "runs": [{k: v for k, v in r.items() if k != "texts"} for r in runs],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
