"""Benchmark of ``character build`` with the tiny model: scenes per second through the LLM.

Builds the Socrates profile (its first 8 paragraphs, so 8 protective requests) at concurrency
1 and 32 with the hf engine in-process (the same LLMServer class the Serve deployment runs),
each in a fresh folder (no resume), prints a table and writes bench/results/character_build.json.

Usage: .venv/bin/python bench/bench_character_build.py [--prompts 8] [--scenes-per-chunk 4]
       [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from characters.build import build_character
from characters.profile import load_profile
from serving.config import EngineConfig
from serving.server import LLMServer

RESULTS = Path(__file__).parent / "results"
PROFILE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "character_llm"
    / "profiles"
    / "wiki_Socrates.txt"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--scenes-per-chunk", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    profile = load_profile(PROFILE)
    profile = type(profile)(profile.name, profile.paragraphs[:8], profile.source)  # 8 protective
    server = LLMServer(EngineConfig(engine="hf", model="tiny"))
    server.start()
    rows: list[dict[str, Any]] = []
    for concurrency in (1, 32):
        out = Path(tempfile.mkdtemp(prefix="simulacra-bench-build-"))
        start = time.perf_counter()
        summary = asyncio.run(
            build_character(
                profile,
                server,
                out,
                scenes_per_chunk=args.scenes_per_chunk,
                prompts=args.prompts,
                seed=0,
                concurrency=concurrency,
                max_tokens=args.max_tokens,
                generator="tiny",
            )
        )
        wall = time.perf_counter() - start
        counts = summary["counts"]
        generations = counts["prompts"] + counts["raw_scenes"] + len(profile.paragraphs)
        rows.append(
            {
                "concurrency": concurrency,
                "wall_s": wall,
                "generations": generations,
                "raw_scenes": counts["raw_scenes"],
                "scenes_per_s": counts["raw_scenes"] / wall,
                "generations_per_s": generations / wall,
                "completion_tokens_per_s": summary["tokens"]["completion"] / wall,
            }
        )
    print(
        f"{'concurrency':>11} {'wall s':>8} {'gens':>5} {'scenes':>6} {'scenes/s':>9} "
        f"{'gens/s':>7} {'tok/s':>8}"
    )
    for r in rows:
        print(
            f"{r['concurrency']:>11} {r['wall_s']:>8.2f} {r['generations']:>5} "
            f"{r['raw_scenes']:>6} {r['scenes_per_s']:>9.2f} {r['generations_per_s']:>7.2f} "
            f"{r['completion_tokens_per_s']:>8.0f}"
        )
    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "settings": vars(args) | {"paragraphs": len(profile.paragraphs), "model": "tiny"},
        "rows": rows,
        "speedup_32_vs_1": rows[1]["scenes_per_s"] / rows[0]["scenes_per_s"]
        if rows[0]["scenes_per_s"]
        else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "character_build.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
