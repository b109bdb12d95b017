"""Benchmark of the prompts: how often a small instruct model's answers are used and pass checks.

Drives the mind in-process (no Ray): the ``hf`` engine behind :class:`serving.server.LLMServer`,
an in-memory store, the real embedder, over the first ``--agents`` agents of
``scenarios/town.yaml``, through every purpose: the day plan, its hourly schedule, decomposition
of the current block, importance of the seeded memories and of a few observations, the reaction
to another agent (with the relationship summary), a conversation between pairs of agents
(utterances, its summary, the post-chat reflections, the re-plan), a reflection on the seeded
memories (questions and cited insights) and interviews; then the Character-LLM pipeline's scene
extraction, experience completion and protective experiences on a profile from
``../shared/data/character_llm/profiles``.

Every request and result passes through a capturing wrapper. Per purpose: calls (first
attempts; a retry is the same request with another seed), ``used`` (the first answer validated
and is what the code goes on with: not a fallback, not a retry), ``checks`` (used, and passes
the checks of :mod:`bench.answer_checks`), the failed checks by name, completion tokens (mean,
max) against the request's ``max_tokens``, and answers cut at ``max_tokens``.

Every row is also written to ``<out>.rows.jsonl``; ``--retally ROWS`` recomputes the table from
such a file with no model (after a change to the checks).

Usage: .venv/bin/python bench/bench_prompts.py [--model smollm2] [--agents 3]
       [--utterances 6] [--chunks 2] [--scenes 2] [--script-tokens 768]
       [--out bench/results/bench_prompts.json] [--retally ROWS]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import platform
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from answer_checks import Context, judge, wake_hour_of

from actors.mind.agent import Agent
from actors.mind.dialogue import converse, decide_reaction, relationship_summary
from actors.mind.memory import Memory
from actors.mind.memory_store import InMemoryStore
from actors.mind.persona import Persona
from actors.mind.planning import DAY_MINUTES, decompose, plan_day
from actors.mind.reflection import reflect
from actors.mind.settings import DialogueSettings, MindSettings
from characters.profile import Profile, load_profile
from characters.protective import protective_request
from characters.scenes import (
    completion_request,
    extraction_request,
    read_scene_seeds,
    script_text,
)
from scenarios.loader import load_scenario, mind_settings
from serving.llm import LLM
from serving.types import LLMRequest, LLMResult

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOWN = ROOT / "scenarios" / "town.yaml"
PROFILES = ROOT.parent / "shared" / "data" / "character_llm" / "profiles"
START = datetime(2024, 3, 4, 7, 0)
OBSERVATIONS = (
    "{other} is walking along the quay with a coffee",
    "the kettle in the kitchen is boiling",
    "{other} says the council meeting has been moved to Thursday",
    "a gull is sitting on the harbour wall",
)
INTERVIEW = ("What are you planning to do today?", "Who do you know in Saltmere?")
REFLECTION_MEMORIES = (
    "{name} saw {other} arguing with the harbour master about mooring fees",
    "{name} had tea with {other} in the afternoon",
    "{other} told {name} about the storm forecast for Wednesday",
    "{name} felt tired after a long morning",
    "{name} noticed the price of fish has gone up again",
    "{other} asked {name} for help with a heavy delivery",
    "{name} thought about the town council election",
    "{name} finished a task ahead of schedule and felt proud",
)

CONTEXT: contextvars.ContextVar[Context | None] = contextvars.ContextVar("context", default=None)


@dataclass
class Row:
    purpose: str
    request: LLMRequest
    result: LLMResult
    context: Context


@dataclass
class Capture:
    """An LLM that records every request, its result and the context it was asked in."""

    inner: LLM
    rows: list[Row] = field(default_factory=list)

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        ctx = CONTEXT.get() or Context()
        results = await self.inner.generate(requests)
        for request, result in zip(requests, results, strict=True):
            self.rows.append(Row(request.purpose, request, result, ctx))
        return results


def _retry_key(request: LLMRequest) -> str:
    d = request.to_dict()
    for k in ("request_id", "seed", "purpose"):
        d.pop(k)
    return json.dumps(d, sort_keys=True)


_NUMBERED = re.compile(r"^\s*(\d+)\. ", re.MULTILINE)
_BLOCK = re.compile(r"\((\d+) minutes\)")


def _request_context(row: Row) -> Context:
    """The row's context, with what only its request says (statements shown, block length)."""
    text = row.request.messages[-1].content if row.request.messages else ""
    ctx = row.context
    if row.purpose == "reflection_insights":
        ctx = replace(ctx, statements=len(_NUMBERED.findall(text)))
    schema = row.request.json_schema or {}
    if row.purpose == "plan_hourly":
        ctx = replace(ctx, asked=schema.get("minItems") or len(schema.get("properties", {})))
    listed = {
        "reflection_questions": "questions",
        "reflection_insights": "insights",
        "character.scenes": "scenes",
    }
    if row.purpose in listed:  # how many were asked: the array's minItems
        items = schema.get("properties", {}).get(listed[row.purpose], {})
        ctx = replace(ctx, asked=int(items.get("minItems") or 0))
    if row.purpose == "plan_decompose":
        m = _BLOCK.search(text)
        ctx = replace(ctx, block_minutes=int(m[1]) if m else 0)
    return ctx


SCRIPTS = ("character.experience", "character.protective")


def answer_of(row: Row) -> Any:
    if row.purpose in SCRIPTS:  # a structured script is judged as the text it renders to
        return script_text(row.result) if row.result.ok else None
    if row.request.json_schema is None:
        return row.result.text if row.result.ok else None
    return row.result.parsed if row.result.ok else None


def tally(rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    """Per purpose: calls, used, passed checks, failed checks by name, tokens, cut answers."""
    failed_before: set[str] = set()  # requests whose last answer failed (the asker retries)
    out: dict[str, dict[str, Any]] = {}
    per: dict[str, list[tuple[Row, bool, list[str]]]] = defaultdict(list)
    retries: dict[str, int] = defaultdict(int)
    for row in rows:
        key = _retry_key(row.request)
        invalid = not row.result.ok or (
            row.request.json_schema is not None and row.result.parsed is None
        )
        if key in failed_before:
            retries[row.purpose] += 1
            if not invalid:
                failed_before.discard(key)
            continue
        if invalid:
            failed_before.add(key)
        used, failed_checks = judge(row.purpose, answer_of(row), _request_context(row))
        per[row.purpose].append((row, used, failed_checks))
    for purpose, items in per.items():
        failed_by: dict[str, int] = defaultdict(int)
        for _, _, failed in items:
            for name in failed:
                failed_by[name] += 1
        tokens = [r.result.completion_tokens for r, _, _ in items]
        budgets = [r.request.max_tokens for r, _, _ in items]
        samples = [
            {"answer": answer_of(r), "failed": f, "error": r.result.error} for r, _, f in items[:3]
        ]
        out[purpose] = {
            "calls": len(items),
            "used": sum(u for _, u, _ in items),
            "checks": sum(u and not f for _, u, f in items),
            "retries": retries[purpose],
            "failed_checks": dict(sorted(failed_by.items())),
            "cut": sum(r.result.completion_tokens >= r.request.max_tokens for r, _, _ in items),
            "errors": sum(not r.result.ok for r, _, _ in items),
            "completion_tokens_mean": statistics.fmean(tokens),
            "completion_tokens_max": max(tokens),
            "max_tokens": max(budgets),
            "prompt_tokens_mean": statistics.fmean(r.result.prompt_tokens for r, _, _ in items),
            "samples": samples,
        }
    return dict(sorted(out.items()))


# -- driving the mind -------------------------------------------------------------------------


def _ctx(agent: Agent, **kw: Any) -> Context:
    p = agent.persona
    return Context(
        agent=p.name, places=tuple(p.known_places or ()), wake_hour=wake_hour_of(p.lifestyle), **kw
    )


class _Speaker:
    """An agent in a conversation; sets the context (previous line) before each utterance."""

    def __init__(self, agent: Agent, now: datetime) -> None:
        self.agent, self.now = agent, now

    @property
    def name(self) -> str:
        return self.agent.name

    async def speak(self, other: str, transcript: Sequence[tuple[str, str]]) -> tuple[str, bool]:
        previous = transcript[-1][1] if transcript else ""
        CONTEXT.set(_ctx(self.agent, other=other, previous=previous))
        return await self.agent.speak(other, tuple(transcript), self.now)


async def drive_agents(
    llm: LLM, embedder: Any, personas: list[Persona], settings: MindSettings, utterances: int
) -> list[Agent]:
    agents = [
        Agent(p, llm, Memory(p.name, InMemoryStore(384), embedder, settings.retrieval), settings, 0)
        for p in personas
    ]
    others = [agents[(i + 1) % len(agents)].name for i in range(len(agents))]
    now = START

    async def each(fn: Any) -> list[Any]:
        async def one(i: int) -> Any:
            return await fn(i, agents[i], others[i])

        return await asyncio.gather(*(asyncio.create_task(one(i)) for i in range(len(agents))))

    async def importance(i: int, a: Agent, other: str) -> None:
        CONTEXT.set(_ctx(a))
        texts = [o.format(other=other) for o in OBSERVATIONS]
        await a.seed_memories([(t, None) for t in texts], now)

    async def day(i: int, a: Agent, other: str) -> None:
        CONTEXT.set(_ctx(a))
        a.plan = await plan_day(a.asker, a.persona, now.date(), "", settings.planning)

    print("importance ...", flush=True)
    await each(importance)
    print("plans ...", flush=True)
    await each(day)

    async def split(i: int, a: Agent, other: str) -> None:
        assert a.plan is not None
        CONTEXT.set(_ctx(a))
        minute = next(
            (e.start for e in a.plan.entries if not e.is_sleep and e.duration >= 60),
            a.plan.wake_hour * 60,
        )
        a.plan = await decompose(a.asker, a.persona, a.plan, minute, settings.planning)

    print("decompose ...", flush=True)
    await each(split)

    async def react(i: int, a: Agent, other: str) -> None:
        CONTEXT.set(_ctx(a, other=other))
        await decide_reaction(
            a.asker, a.memory, a.persona, other, "walking to the harbour", now, settings.retrieval
        )

    print("react ...", flush=True)
    await each(react)

    async def talk(pair: tuple[Agent, Agent], at: datetime) -> None:
        first, second = pair

        async def summarize(transcript: tuple[tuple[str, str], ...]) -> str:
            CONTEXT.set(_ctx(first, other=second.name))
            return await first.summarize(second.name, transcript)

        conversation = await converse(
            _Speaker(first, at),
            _Speaker(second, at),
            at,
            DialogueSettings(max_utterances=utterances),
            summarize,
        )
        for me, you in ((first, second), (second, first)):
            remaining = DAY_MINUTES - (at.hour * 60 + at.minute + conversation.minutes)
            CONTEXT.set(_ctx(me, other=you.name, remaining=remaining))
            await me.finish_conversation(conversation, at)

    pairs = [(agents[i], agents[i + 1]) for i in range(0, len(agents) - 1, 2)]
    if len(agents) % 2 and len(agents) > 1:
        pairs.append((agents[-1], agents[0]))
    talk_at = now + timedelta(hours=3)
    print(f"{len(pairs)} conversations ...", flush=True)
    first_round, second_round = pairs[: len(agents) // 2], pairs[len(agents) // 2 :]
    await asyncio.gather(*(talk(p, talk_at) for p in first_round))
    await asyncio.gather(*(talk(p, talk_at + timedelta(hours=1)) for p in second_round))

    later = now + timedelta(hours=8)

    async def think(i: int, a: Agent, other: str) -> None:
        CONTEXT.set(_ctx(a))
        memories = [(m.format(name=a.name, other=other), 5) for m in REFLECTION_MEMORIES]
        await a.seed_memories(memories, later - timedelta(hours=1))
        await reflect(a.asker, a.memory, a.persona, later, settings.reflection, settings.importance)

    print("reflect ...", flush=True)
    await each(think)

    async def interview(i: int, a: Agent, other: str) -> None:
        CONTEXT.set(_ctx(a, other=other))
        await relationship_summary(a.asker, a.memory, a.persona, other, "reading", later, 50)
        for q in INTERVIEW:
            await a.interview(q, later)

    print("interviews ...", flush=True)
    await each(interview)
    return agents


async def drive_character(
    llm: LLM, profile: Profile, chunks: int, scenes: int, script_tokens: int
) -> None:
    CONTEXT.set(Context(agent=profile.name))
    extracted = await asyncio.gather(
        *(llm.generate([extraction_request(profile, c, c, scenes, 0)]) for c in range(chunks))
    )
    requests = []
    for c, (result,) in enumerate(extracted):
        for j, seed in enumerate(read_scene_seeds(result)[:scenes]):
            requests.append(completion_request(profile, c, seed, c, j, 0, script_tokens))
    requests += [protective_request(profile, p, 0, script_tokens) for p in range(chunks)]
    CONTEXT.set(Context(agent=profile.name))
    print(f"{len(requests)} scripts ...", flush=True)
    await asyncio.gather(*(llm.generate([r]) for r in requests))


# -- the table --------------------------------------------------------------------------------


def table(purposes: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'purpose':<22}{'calls':>6}{'used %':>8}{'checks %':>9}{'retry':>6}{'cut':>5}"
        f"{'tok mean':>9}{'tok max':>8}{'budget':>7}  failed checks"
    )
    lines = [head]
    for purpose, p in purposes.items():
        failed = ", ".join(f"{k} {v}" for k, v in p["failed_checks"].items())
        lines.append(
            f"{purpose:<22}{p['calls']:>6}{100 * p['used'] / p['calls']:>8.0f}"
            f"{100 * p['checks'] / p['calls']:>9.0f}{p['retries']:>6}{p['cut']:>5}"
            f"{p['completion_tokens_mean']:>9.1f}{p['completion_tokens_max']:>8}"
            f"{p['max_tokens']:>7}  {failed}"
        )
    return "\n".join(lines)


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Every request, result and context, one JSON line each (what ``--retally`` reads)."""
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            line = {
                "purpose": r.purpose,
                "request": r.request.to_dict(),
                "result": r.result.to_dict(),
                "context": asdict(r.context),
            }
            f.write(json.dumps(line, default=str) + "\n")


def read_rows(path: Path) -> list[Row]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        ctx = d["context"]
        ctx["places"] = tuple(ctx["places"])
        rows.append(
            Row(
                d["purpose"],
                LLMRequest.from_dict(d["request"]),
                LLMResult.from_dict(d["result"]),
                Context(**ctx),
            )
        )
    return rows


def report(rows: Sequence[Row], out: Path, meta: dict[str, Any]) -> None:
    purposes = tally(rows)
    print(table(purposes))
    calls = sum(p["calls"] for p in purposes.values())
    tokens = sum(r.result.completion_tokens for r in rows)
    print(f"{calls} calls ({len(rows)} requests with retries), {tokens} completion tokens")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "purposes": purposes}, indent=1, default=str))
    print(f"-> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--utterances", type=int, default=6)
    parser.add_argument("--profile", default=str(PROFILES / "wiki_Socrates.txt"))
    parser.add_argument("--chunks", type=int, default=2, help="profile paragraphs used")
    parser.add_argument("--scenes", type=int, default=2, help="scenes asked per paragraph")
    parser.add_argument("--script-tokens", type=int, default=768)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "bench_prompts.json"))
    parser.add_argument(
        "--retally", metavar="ROWS", help="recompute the table from a run's rows file, no model"
    )
    args = parser.parse_args()
    out = Path(args.out)
    if args.retally:
        report(read_rows(Path(args.retally)), out, {"rows": args.retally})
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from serving.config import EngineConfig
    from serving.embedding import MiniLMEmbedder
    from serving.server import LLMServer

    scenario = load_scenario(TOWN)
    settings = mind_settings(scenario)
    personas = [Persona.from_dict(a.persona()) for a in scenario.agents[: args.agents]]
    server = LLMServer(EngineConfig(engine="hf", model=args.model, seed=args.seed))
    server.start()
    embedder = MiniLMEmbedder()
    embedder.start()
    capture = Capture(server)
    started = time.perf_counter()
    asyncio.run(drive_agents(capture, embedder, personas, settings, args.utterances))
    mind_s = time.perf_counter() - started
    profile = load_profile(args.profile)
    asyncio.run(drive_character(capture, profile, args.chunks, args.scenes, args.script_tokens))
    wall = time.perf_counter() - started
    rows_path = out.with_suffix(".rows.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_rows(rows_path, capture.rows)
    print(f"{wall:.0f} s (the mind {mind_s:.0f} s); every row -> {rows_path}")
    meta = {
        "args": vars(args),
        "agents": [p.name for p in personas],
        "profile": profile.name,
        "wall_s": wall,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "rows": str(rows_path),
    }
    report(capture.rows, out, meta)


if __name__ == "__main__":
    main()
