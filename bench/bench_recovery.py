"""Benchmark of recovery from a lost node, on a Ray cluster of several nodes on this machine.

A synthetic town runs on a local cluster (a head, a node with the LLM's resource, ``--workers``
plain workers; ``cluster.local_cluster``) with the tiny model: once uninterrupted with every
answer recorded, then replayed with the worker node holding the most hosts lost (its raylet and
every process on it) right after the checkpoint at ``--lose-after``. Prints a table and writes
bench/results/recovery.json: where the hosts ran, the hosts lost, the time from the death being
seen to every host restored (re-placed and rolled back), the steps redone, the two runs' wall
times, and whether the recovered run ended in exactly the uninterrupted run's state.

Usage: .venv/bin/python bench/bench_recovery.py [--agents 10] [--steps 16] [--every 4]
       [--lose-after 4] [--workers 2] [--per-host 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cluster.checkpoints import read_checkpoint
from cluster.hosts import ray_host_factory
from cluster.local_cluster import LocalCluster, lose_node, start_local_cluster
from cluster.run import RunOptions, Services, start_run
from cluster.simulation import Simulation
from scenarios.loader import mind_settings
from scenarios.synthetic import synthetic_town
from serving.config import EngineConfig

RESULTS = Path(__file__).parent / "results"


def final_state(run: Path) -> dict[str, Any]:
    state = read_checkpoint(run)
    for memory in state["memories"].values():
        memory.pop("vectors")
    state.pop("parts", None)
    return state


async def replay_losing_a_node(
    local: LocalCluster, options: RunOptions, args: argparse.Namespace, run: Path
) -> tuple[Simulation, dict[int, str]]:
    scenario = synthetic_town(args.agents, seed=3)
    settings = mind_settings(scenario)
    placed: dict[int, str] = {}

    async def lose(sim: Simulation) -> None:
        if sim.step_no == args.lose_after + 1 and not placed:
            placed.update(await sim.locate_hosts())
            on_worker = Counter(
                n for n in placed.values() if n in {w.node_id for w in local.workers}
            )
            node_id, _ = on_worker.most_common(1)[0]
            lose_node(local, next(w for w in local.workers if w.node_id == node_id))

    factory = ray_host_factory(settings, options.seed, ":memory:", collection_prefix="recovery")
    sim = Simulation(scenario, settings, run, factory, args.per_host, args.every, on_step=lose)
    sim.place_hosts()
    await sim.begin()
    await sim.run(args.steps)
    await sim.finish()
    await sim.close()
    return sim, placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--lose-after", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-host", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    local = start_local_cluster(workers=args.workers)
    try:
        recording = tmp / "answers.msgpack"
        common = dict(
            steps=args.steps,
            checkpoint_every=args.every,
            agents_per_host=args.per_host,
            progress=False,
            seed=11,
            address=local.address,
        )
        record = RunOptions(engine=EngineConfig(model="tiny", record=str(recording)), **common)
        t0 = time.perf_counter()
        start_run(synthetic_town(args.agents, seed=3), record, out=tmp / "reference")
        reference_s = time.perf_counter() - t0  # both runs: services, hosts, steps
        replay = RunOptions(engine=EngineConfig(model="tiny", replay=str(recording)), **common)
        names = local.node_names()  # before a node is lost
        t0 = time.perf_counter()
        with Services(replay):
            sim, placed = asyncio.run(replay_losing_a_node(local, replay, args, tmp / "recovered"))
        recovered_s = time.perf_counter() - t0
        recoveries = sim.stats.recovered
        row = {
            "agents": args.agents,
            "hosts": len(sim.hosts),
            "nodes_with_hosts": len({placed[i] for i in placed}),
            "hosts_lost": sorted({i for r in recoveries for i in r.hosts}),
            "recoveries": len(recoveries),
            "recovery_s": [round(r.seconds, 2) for r in recoveries],
            "steps_redone": sum(r.at_step - r.to_step for r in recoveries),
            "uninterrupted_run_s": round(reference_s, 1),
            "recovered_run_s": round(recovered_s, 1),
            "identical": final_state(tmp / "recovered") == final_state(tmp / "reference"),
            "placement_before": {str(i): names.get(n, n) for i, n in placed.items()},
        }
    finally:
        local.shutdown()
    print(
        "| agents | hosts | nodes with hosts | hosts lost | recovery s | steps redone | "
        "uninterrupted s | recovered s | identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {row['agents']} | {row['hosts']} | {row['nodes_with_hosts']} | "
        f"{len(row['hosts_lost'])} | {', '.join(map(str, row['recovery_s']))} | "
        f"{row['steps_redone']} | {row['uninterrupted_run_s']} | {row['recovered_run_s']} | "
        f"{row['identical']} |"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "recovery.json").write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
