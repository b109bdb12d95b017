"""Benchmark of whole runs: the built-in town (smollm2 by default), packed against the baselines.

Prints a table per section and writes bench/results/bench_town.json:
- the town (scenarios/town.yaml, 25 agents) for ``--steps`` steps (default 360 = one game hour)
  in each mode, all in one Ray session with one set of services:
  - packed: ``agents_per_host = auto`` (about one host actor per core);
  - one-per-host: one actor per agent (25 actors);
  - sequential: the original implementation's way, one agent and one model call at a time,
    all agents in one host (so no concurrency across hosts either);
  per mode: start-up (host placement + seeding the memories), wall seconds of ``run``, steps/s,
  agent-steps/s, model calls per agent-step, mean executed batch size (from llm_calls.parquet
  and from the service), the share of the wall time the LLM service was busy, tokens/s and the
  hosts' peak memory per agent; then the speed-up sequential / packed (goal >= 5x);
- a synthetic town of ``--synthetic`` agents, packed, for ``--synthetic-steps`` steps: memory
  per agent (goal <= 20 MB) and agent-steps/s.

Model calls made while seeding the memories (start-up) are left out of the per-step figures.
Per mode also: the share of prompt tokens served from the engine's prefix cache, and per purpose
the share of the mind's questions answered on the first try (used) and given up on after the
retry (fallback). ``--record FILE`` records every answer (for bench/bench_engine.py).

Usage: .venv/bin/python bench/bench_town.py [--model smollm2] [--steps 360]
    [--modes packed,one-per-host,sequential] [--synthetic 250] [--synthetic-steps 60]
    [--record FILE] [--threads N] [--out bench/results/bench_town.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_profile import Sampler
from cluster.hosts import ray_host_factory
from cluster.packing import auto_agents_per_host
from cluster.run import RunOptions, Services, versions
from cluster.simulation import Simulation
from scenarios.loader import load_scenario, mind_settings
from scenarios.schema import Scenario
from scenarios.synthetic import synthetic_town
from serving.clients import ServeLLM
from serving.config import EngineConfig

ROOT = Path(__file__).resolve().parent.parent
TOWN = ROOT / "scenarios" / "town.yaml"
MODES = ("packed", "one-per-host", "sequential")
SPEEDUP_GOAL = 5.0
MB_PER_AGENT_GOAL = 20.0


@dataclass
class ModeResult:
    """One mode's run: what it did and what it cost."""

    mode: str
    agents: int
    hosts: int
    agents_per_host: int
    steps: int
    startup_s: float  # host placement + seeding the memories (actor start-up included)
    wall_s: float  # Simulation.run only
    steps_per_s: float
    agent_steps_per_s: float
    model_calls: int  # during run (llm_calls.parquet rows less the seeding's)
    seed_calls: int  # during start-up
    calls_per_agent_step: float
    mean_batch_size: float  # llm_calls.parquet, rows of the run
    service_mean_batch_size: float  # the engine's rows per forward pass during run
    service_passes: int  # the engine's forward passes during run
    llm_busy_share: float  # LLM service busy seconds / wall
    tokens: int  # prompt + completion, rows of the run
    prompt_tokens: int
    cached_tokens: int  # prompt tokens served from the engine's prefix cache
    cached_share: float
    purposes: dict[str, dict[str, float]]  # purpose -> calls, used and fallback shares (run only)
    tokens_per_s: float
    conversations: int
    host_peak_rss_mb: float  # sum over hosts
    host_baseline_rss_mb: float  # sum over hosts, before their agents were built
    peak_mb_per_agent: float
    marginal_mb_per_agent: float  # (peak - baseline) / agents
    finish_s: float  # joining the tables after the run
    engine_profile: dict[str, Any] | None = None  # --profile: the LLM replica's engine thread


def agents_per_host(mode: str, n_agents: int) -> int:
    if mode == "packed":
        return auto_agents_per_host(n_agents)
    if mode == "one-per-host":
        return 1
    if mode == "sequential":
        return n_agents
    raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


async def service_counters(llm: ServeLLM) -> tuple[float, list[int]]:
    return await llm.busy_seconds(), await llm.batch_sizes()


async def ask_stats(sim: Simulation) -> dict[str, dict[str, int]]:
    """The mind's question counts per purpose (calls, retries, failures), over all agents."""
    totals: dict[str, dict[str, int]] = {}
    for state in await asyncio.gather(*[h.host.get_state() for h in sim.hosts]):
        for agent in state.values():
            for kind, counts in agent["asker"]["stats"].items():
                for purpose, n in counts.items():
                    row = totals.setdefault(purpose, {"calls": 0, "retries": 0, "failures": 0})
                    row[kind] += n
    return totals


def purpose_shares(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    """Per purpose, over the run only: questions, share used on the first try, fallbacks."""
    out = {}
    for purpose, counts in sorted(after.items()):
        base = before.get(purpose, {})
        calls = counts["calls"] - base.get("calls", 0)
        if calls <= 0:
            continue
        retries = counts["retries"] - base.get("retries", 0)
        failures = counts["failures"] - base.get("failures", 0)
        out[purpose] = {
            "calls": calls,
            "used": (calls - retries) / calls,
            "fallback": failures / calls,
        }
    return out


def llm_replica_pid() -> int:
    """The process of the LLM service's replica (its Ray process title names it)."""
    found = subprocess.run(
        ["pgrep", "-f", "ServeReplica:llm"], capture_output=True, text=True, check=False
    ).stdout.split()
    if not found:
        raise RuntimeError("no LLM replica process found to profile")
    return int(found[0])


async def run_mode(
    mode: str,
    scenario: Scenario,
    steps: int,
    seed: int,
    work: Path,
    llm: ServeLLM,
    profile: bool = False,
) -> ModeResult:
    """Runs ``scenario`` for ``steps`` steps in a fresh simulation; kills its hosts after."""
    n = len(scenario.agents)
    per_host = agents_per_host(mode, n)
    sequential = mode == "sequential"
    settings = mind_settings(scenario)
    run_dir = work / mode
    factory = ray_host_factory(
        settings,
        seed,
        ":memory:",
        sequential=sequential,
        collection_prefix=f"bench_{mode.replace('-', '_')}",
    )
    sim = Simulation(scenario, settings, run_dir, factory, per_host, sequential=sequential)
    try:
        t0 = time.perf_counter()
        sim.place_hosts()
        await sim.begin()
        startup_s = time.perf_counter() - t0
        seed_calls = sim.tables.counts["llm_calls"]
        asked0 = await ask_stats(sim)
        busy0, sizes0 = await service_counters(llm)
        sampler = Sampler() if profile else None
        if sampler is not None:
            sampler.start(llm_replica_pid())
        t1 = time.perf_counter()
        await sim.run(steps)
        wall_s = time.perf_counter() - t1
        sampled = None if sampler is None else sampler.stop()
        busy1, sizes1 = await service_counters(llm)
        asked1 = await ask_stats(sim)
        t2 = time.perf_counter()
        written = await sim.finish()
        finish_s = time.perf_counter() - t2
        usage = await asyncio.gather(*[h.host.usage() for h in sim.hosts])
    finally:
        await sim.close()
        for host in sim.hosts:
            host.kill()

    calls = pq.read_table(written["llm_calls"]).slice(seed_calls)  # the seeding's rows first
    batch = [b for b in calls.column("batch_size").to_pylist() if b is not None]
    prompt_tokens = sum(calls.column("prompt_tokens").to_pylist())
    cached_tokens = sum(c or 0 for c in calls.column("cached_tokens").to_pylist())
    tokens = prompt_tokens + sum(calls.column("completion_tokens").to_pylist())
    served = sizes1[len(sizes0) :]
    agent_steps = sim.stats.agent_steps
    peak = sum(u.peak_rss_mb for u in usage)
    baseline = sum(u.baseline_rss_mb for u in usage)
    return ModeResult(
        mode=mode,
        agents=n,
        hosts=len(sim.hosts),
        agents_per_host=per_host,
        steps=sim.stats.steps,
        startup_s=startup_s,
        wall_s=wall_s,
        steps_per_s=sim.stats.steps / wall_s,
        agent_steps_per_s=agent_steps / wall_s,
        model_calls=calls.num_rows,
        seed_calls=seed_calls,
        calls_per_agent_step=calls.num_rows / max(agent_steps, 1),
        mean_batch_size=statistics.fmean(batch) if batch else 0.0,
        service_mean_batch_size=statistics.fmean(served) if served else 0.0,
        service_passes=len(served),
        llm_busy_share=(busy1 - busy0) / wall_s,
        tokens=tokens,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        cached_share=cached_tokens / prompt_tokens if prompt_tokens else 0.0,
        purposes=purpose_shares(asked0, asked1),
        tokens_per_s=tokens / wall_s,
        conversations=sim.stats.conversations,
        host_peak_rss_mb=peak,
        host_baseline_rss_mb=baseline,
        peak_mb_per_agent=peak / n,
        marginal_mb_per_agent=(peak - baseline) / n,
        finish_s=finish_s,
        engine_profile=None
        if sampled is None
        else {"samples": sampled.samples, "model_work_share": sampled.model_work_share},
    )


async def run_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    llm = ServeLLM()
    await llm.info()  # the service is up and the handle is warm before any timing
    town = load_scenario(TOWN)
    modes = [
        await run_mode(m, town, args.steps, args.seed, work / "town", llm, args.profile)
        for m in args.modes
    ]
    synthetic = None
    if args.synthetic:
        hours = args.synthetic_steps * 10 / 3600
        scenario = synthetic_town(args.synthetic, seed=0, hours=hours)
        synthetic = await run_mode(
            "packed", scenario, args.synthetic_steps, args.seed, work / "synthetic", llm
        )
    return {"town": modes, "synthetic": synthetic}


def print_purposes(r: ModeResult) -> None:
    print(f"  {r.mode}: per purpose, questions / used on the first try / fallback")
    for purpose, row in r.purposes.items():
        print(f"    {purpose:<24} {row['calls']:>5.0f} {row['used']:>7.1%} {row['fallback']:>7.1%}")


def print_town(rows: list[ModeResult], steps: int, model: str) -> None:
    print(f"\nTown (25 agents), {model}, {steps} steps of 10 s; run wall time excludes start-up")
    print(
        f"{'mode':>13} {'hosts':>5} {'start s':>8} {'wall s':>8} {'steps/s':>8}"
        f" {'agent-st/s':>10} {'calls':>6} {'calls/a-st':>10} {'batch':>6} {'svc batch':>9}"
        f" {'LLM busy':>8} {'tok/s':>8} {'cached':>7} {'MB/agent':>8} {'marg MB':>8}"
    )
    for r in rows:
        print(
            f"{r.mode:>13} {r.hosts:>5} {r.startup_s:>8.1f} {r.wall_s:>8.1f} {r.steps_per_s:>8.2f}"
            f" {r.agent_steps_per_s:>10.1f} {r.model_calls:>6} {r.calls_per_agent_step:>10.3f}"
            f" {r.mean_batch_size:>6.2f} {r.service_mean_batch_size:>9.2f}"
            f" {r.llm_busy_share:>8.0%} {r.tokens_per_s:>8.0f} {r.cached_share:>7.0%}"
            f" {r.peak_mb_per_agent:>8.1f}"
            f" {r.marginal_mb_per_agent:>8.1f}"
        )


def speedup(rows: list[ModeResult]) -> float | None:
    by_mode = {r.mode: r for r in rows}
    if "packed" not in by_mode or "sequential" not in by_mode:
        return None
    return by_mode["sequential"].wall_s / by_mode["packed"].wall_s


def print_synthetic(r: ModeResult) -> None:
    print(f"\nSynthetic town, {r.agents} agents, packed ({r.hosts} hosts), {r.steps} steps")
    print(
        f"{'start s':>8} {'wall s':>8} {'agent-st/s':>10} {'calls':>6} {'svc batch':>9}"
        f" {'peak MB':>8} {'MB/agent':>8} {'marg MB/agent':>13}"
    )
    print(
        f"{r.startup_s:>8.1f} {r.wall_s:>8.1f} {r.agent_steps_per_s:>10.1f} {r.model_calls:>6}"
        f" {r.service_mean_batch_size:>9.2f} {r.host_peak_rss_mb:>8.0f}"
        f" {r.peak_mb_per_agent:>8.1f} {r.marginal_mb_per_agent:>13.1f}"
    )
    print(
        f"goal <= {MB_PER_AGENT_GOAL:.0f} MB/agent: {r.peak_mb_per_agent:.1f} (hosts' whole peak"
        f" RSS / agents), {r.marginal_mb_per_agent:.1f} (peak less the hosts' start)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", help="smollm2, tiny, or a model folder")
    parser.add_argument("--record", default=None, help="record every model answer to this file")
    parser.add_argument("--threads", type=int, default=None, help="the engine's torch threads")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the LLM replica during each mode's run"
    )
    parser.add_argument("--steps", type=int, default=360, help="steps of every town mode")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + str(MODES))
    parser.add_argument("--synthetic", type=int, default=250, help="agents; 0 skips it")
    parser.add_argument("--synthetic-steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch-wait-ms", type=float, default=None, help="the engine's wait for company"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_town.json"))
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in args.modes:
        agents_per_host(mode, 25)  # fails early on an unknown mode
    return args


def main() -> None:
    args = parse_args()
    engine = EngineConfig(
        engine="hf", model=args.model, record=args.record, cpu_threads=args.threads
    )
    if args.batch_wait_ms is not None:
        engine = engine.model_copy(update={"batch_wait_ms": args.batch_wait_ms})
    options = RunOptions(engine=engine, progress=False)
    work = Path(tempfile.mkdtemp(prefix="simulacra-bench-town-"))
    started = time.perf_counter()
    hosts = max(-(-25 // agents_per_host(mode, 25)) for mode in args.modes or ["packed"])
    with Services(options, hosts=hosts):
        results = asyncio.run(run_all(args, work))
    total_s = time.perf_counter() - started

    town: list[ModeResult] = results["town"]
    synthetic: ModeResult | None = results["synthetic"]
    ratio = speedup(town)
    if town:
        print_town(town, args.steps, args.model)
        for r in town:
            print(
                f"  {r.mode}: {r.model_calls} model calls in the run ({r.seed_calls} seeding),"
                f" {r.service_passes} forward passes, {r.conversations} conversations,"
                f" {r.tokens} tokens ({r.cached_tokens} of {r.prompt_tokens} prompt tokens"
                " from the prefix cache)"
            )
            print_purposes(r)
            if r.engine_profile is not None:
                samples = r.engine_profile["samples"]
                total = sum(samples.values()) or 1
                print(f"  {r.mode}: the LLM engine thread, share of busy samples:")
                for name, count in sorted(samples.items(), key=lambda kv: -kv[1]):
                    print(f"    {name:<26} {count / total:>6.1%}")
                share = r.engine_profile["model_work_share"]
                print(f"    model's matrix products (linear + attention): {share:.1%}")
    if ratio is not None:
        print(f"speed-up sequential / packed: {ratio:.2f}x (goal >= {SPEEDUP_GOAL:.0f}x)")
    if synthetic is not None:
        print_synthetic(synthetic)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "other processes (tests) may have shared the machine",
        },
        "versions": versions(),
        "settings": {**vars(args), "engine": options.engine.model_dump(mode="json")},
        "town": [asdict(r) for r in town],
        "speedup_sequential_over_packed": ratio,
        "synthetic": None if synthetic is None else asdict(synthetic),
        "total_s": total_s,
        "work_dir": str(work),
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
