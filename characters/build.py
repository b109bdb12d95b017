"""``simulacra character build``: a profile's experiences, reconstructed (spec section 1).

Scene extraction, experience completion and protective experiences run concurrently: each
generation is one request, at most ``concurrency`` in flight, so the engine's dynamic batching
mixes them. Every answer is recorded in ``<out>/generations.msgpack``; a rerun answers from that
recording first (requests are deterministic given the seed), so an interrupted build never pays
twice for a generation. Failed answers are removed from the recording on a rerun, so they are
asked again.

Writes, atomically: ``generated.json`` (the parsed scenes, released ``generated`` layout),
``protective.json``, ``prompted.jsonl`` (the training examples of both, released ``prompted``
layout) and ``build.json`` (the summary).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from characters.data import Scene, write_prompted, write_scenes
from characters.examples import to_prompted
from characters.profile import Profile, load_profile
from characters.protective import parse_protective, protective_request
from characters.sampling import scene_prompts
from characters.scenes import (
    SceneSeed,
    completion_request,
    extraction_request,
    read_scene_seeds,
    script_text,
)
from characters.script_parser import parse_script
from serving.config import EngineConfig
from serving.files import write_text_atomic
from serving.llm import LLM
from serving.types import LLMError, LLMRequest, LLMResult
from serving.wrappers.recording import (
    RecordingLLM,
    ReplayLLM,
    load_recording,
    write_recording,
)

RECORDING = "generations.msgpack"


def _drop_failed_answers(path: Path) -> None:
    """Rewrites the recording without its failed rows (so a rerun asks them again)."""
    records = load_recording(path)
    kept = [(q, r) for q, r in records if r.ok]
    if len(kept) == len(records):
        return
    write_recording(path, kept)


def resumable(llm: LLM, out_dir: Path) -> LLM:
    """``llm`` recording into ``out_dir``, answering from an earlier recording first."""
    path = out_dir / RECORDING
    existed = path.exists() and path.stat().st_size > 0
    recorder = RecordingLLM(llm, path, append=True)  # cuts a torn last record
    if not existed:
        return recorder
    _drop_failed_answers(path)
    return ReplayLLM(path, strict=False, fallback=recorder)


class _Caller:
    """One request per call, at most ``concurrency`` in flight; counts tokens and failures."""

    def __init__(self, llm: LLM, concurrency: int) -> None:
        self.llm = llm
        self.semaphore = asyncio.Semaphore(max(1, concurrency))
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.failed = 0

    async def __call__(self, request: LLMRequest) -> LLMResult:
        async with self.semaphore:
            try:
                (result,) = await self.llm.generate([request])
            except LLMError as exc:
                result = LLMResult.failure(request, f"{type(exc).__name__}: {exc}")
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        if not result.ok:
            self.failed += 1
        return result


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def build_character(
    profile: Profile | str | os.PathLike[str],
    llm: LLM,
    out_dir: str | os.PathLike[str],
    scenes_per_chunk: int = 20,
    prompts: int = 100,
    seed: int = 0,
    concurrency: int = 32,
    max_tokens: int = 2048,
    generator: str = "",
    structured: bool = True,
) -> dict[str, Any]:
    """Builds a character's data folder; returns the ``build.json`` summary.

    ``profile`` is a :class:`Profile` or a path (a bad one raises :class:`ProfileError` before
    anything is written); ``max_tokens`` bounds each script (completion and protective).
    ``structured`` asks for scripts under a JSON schema (turns of named speakers, rendered into
    the script layout before parsing), which a small generator follows; without it, free text
    in the script layout, as the paper asks.
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    if scenes_per_chunk < 1 or prompts < 0:
        raise ValueError("scenes_per_chunk must be >= 1 and prompts >= 0")
    started = _now()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    call = _Caller(resumable(llm, out), concurrency)
    chunks = scene_prompts(profile, prompts, seed)

    async def one_prompt(k: int, chunk: int) -> list[tuple[SceneSeed, LLMResult]]:
        extracted = await call(extraction_request(profile, chunk, k, scenes_per_chunk, seed))
        seeds = read_scene_seeds(extracted)
        requests = [
            completion_request(profile, chunk, s, k, j, seed, max_tokens, structured)
            for j, s in enumerate(seeds)
        ]
        results = await asyncio.gather(*(call(r) for r in requests))
        return list(zip(seeds, results, strict=True))

    prompt_tasks = [one_prompt(k, c) for k, c in enumerate(chunks)]
    protective_tasks = [
        call(protective_request(profile, i, seed, max_tokens, structured))
        for i in range(len(profile.paragraphs))
    ]
    everything = await asyncio.gather(*prompt_tasks, *protective_tasks)
    per_prompt: list[list[tuple[SceneSeed, LLMResult]]] = everything[: len(prompt_tasks)]  # type: ignore[assignment]
    protective_results: list[LLMResult] = everything[len(prompt_tasks) :]  # type: ignore[assignment]

    drops: Counter[str] = Counter()
    scenes: list[Scene] = []
    raw = completed = 0
    for pairs in per_prompt:
        for seed_scene, result in pairs:
            raw += 1
            if not result.ok:
                continue
            completed += 1
            scene, reason = parse_script(
                script_text(result),
                profile.name,
                setting=seed_scene["type"],
                location=seed_scene["location"],
                source=f"seed_dialogue_{raw - 1}",
            )
            if scene is None:
                drops[reason or "unparsed"] += 1
            else:
                scenes.append(scene)
    protective: list[Scene] = []
    for i, result in enumerate(protective_results):
        if not result.ok:
            continue
        scene, reason = parse_protective(script_text(result), profile.name, f"protective_{i}")
        if scene is None:
            drops[f"protective: {reason}"] += 1
        else:
            protective.append(scene)

    write_scenes(out / "generated.json", scenes)
    write_scenes(out / "protective.json", protective)
    write_prompted(
        out / "prompted.jsonl", [to_prompted(profile.name, s) for s in scenes + protective]
    )
    summary: dict[str, Any] = {
        "character": profile.name,
        "profile": profile.source,
        "generator": generator,
        "seed": seed,
        "prompts": prompts,
        "scenes_per_chunk": scenes_per_chunk,
        "structured": structured,
        "counts": {
            "chunks": len(profile.paragraphs),
            "prompts": len(chunks),
            "raw_scenes": raw,
            "completed": completed,
            "parsed": len(scenes),
            "dropped": completed - len(scenes),
            "protective": len(protective),
        },
        "drops": dict(sorted(drops.items())),
        "tokens": {"prompt": call.prompt_tokens, "completion": call.completion_tokens},
        "failed_generations": call.failed,
        "started": started,
        "finished": _now(),
    }
    write_text_atomic(out / "build.json", json.dumps(summary, ensure_ascii=False, indent=1))
    return summary


@dataclass(frozen=True)
class BuildOptions:
    """``simulacra character build``: a profile, the generator model and how to ask it."""

    profile: Path
    generator: EngineConfig  # the generator model and its engine
    out: Path
    scenes_per_chunk: int = 20
    prompts: int = 100
    concurrency: int = 32
    max_tokens: int = 2048
    seed: int = 0


def run_build(options: BuildOptions) -> tuple[Profile, dict[str, Any]]:
    """The command: the generator is served in-process by :class:`serving.server.LLMServer`,
    the same server class the Serve deployment runs. Returns the profile and the build's
    summary; a bad profile raises :class:`ProfileError` before any model loads."""
    from serving.server import LLMServer

    profile = load_profile(options.profile)
    server = LLMServer(options.generator.model_copy(update={"seed": options.seed}))
    server.start()
    summary = asyncio.run(
        build_character(
            profile,
            server,
            options.out,
            scenes_per_chunk=options.scenes_per_chunk,
            prompts=options.prompts,
            seed=options.seed,
            concurrency=options.concurrency,
            max_tokens=options.max_tokens,
            generator=options.generator.model,
        )
    )
    return profile, summary
