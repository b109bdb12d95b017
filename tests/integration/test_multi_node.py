"""Runs on a Ray cluster of several nodes on this machine (Ray's own ``cluster_utils.Cluster``):
a head, a node with the LLM's custom resource and two plain workers. The runs are driven from
the command line with ``--address``, as on a real cluster.

One recorded run is the reference; a replayed run loses a worker node (every host on it at once)
mid-run, recovers, then has its driver killed with SIGKILL, and ``simulacra resume`` must finish
it in exactly the reference's state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cluster.checkpoints import checkpoint_steps
from cluster.local_cluster import LocalCluster, lose_node, start_local_cluster
from scenarios.synthetic import synthetic_town, write_scenario
from tests.run_state import final_state

pytestmark = pytest.mark.integration

STEPS, EVERY, PER_HOST, SEED = 12, 4, 2, 11


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    cluster = start_local_cluster(workers=2)
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "town10.yaml"
    write_scenario(synthetic_town(10, seed=3), path)
    return path


def simulacra(*args: str, wait: bool = True) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "cluster.cli", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-4000:]
    return process


def run_args(scenario: Path, out: Path, address: str, *extra: str) -> list[str]:
    return [
        "run",
        str(scenario),
        "--model",
        "tiny",
        "--steps",
        str(STEPS),
        "--checkpoint-every",
        str(EVERY),
        "--agents-per-host",
        str(PER_HOST),
        "--seed",
        str(SEED),
        "--address",
        address,
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def manifest(run: Path) -> dict[str, Any]:
    path = run / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def pause_at_step(run: Path, process: subprocess.Popen[str], step: int) -> dict[str, Any]:
    """Waits until the run's manifest says it checkpointed ``step`` (or later), then freezes the
    driver (SIGSTOP), so what the test does next happens mid-run; returns the manifest."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = manifest(run)
        if found.get("step", 0) >= step and found.get("hosts"):
            process.send_signal(signal.SIGSTOP)
            found = manifest(run)
            assert found["step"] < STEPS, "the run ended before the test could interrupt it"
            return found
        assert process.poll() is None, f"the run ended before step {step}"
        time.sleep(0.01)
    raise AssertionError(f"{run} never reached step {step}")


def events(run: Path) -> list[tuple[str, ...]]:
    rows = pq.read_table(run / "events.parquet").to_pylist()
    return sorted(tuple(str(v) for v in r.values()) for r in rows)


@pytest.fixture(scope="module")
def recorded(
    local_cluster: LocalCluster, scenario: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The reference: an uninterrupted run on the cluster, every answer recorded."""
    tmp = tmp_path_factory.mktemp("recorded")
    recording = tmp / "answers.msgpack"
    run = tmp / "run"
    simulacra(*run_args(scenario, run, local_cluster.address, "--record", str(recording)))
    return run, recording


def test_hosts_spread_over_the_nodes_and_the_llm_on_its_node(
    recorded: tuple[Path, Path], local_cluster: LocalCluster
) -> None:
    run, _ = recorded
    found = manifest(run)
    assert found["status"] == "finished" and found["step"] == STEPS
    names = local_cluster.node_names()
    placed = [names[h["node"]] for h in found["hosts"]]
    assert len(found["hosts"]) == 10 // PER_HOST
    # round robin over the nodes offering the hosts' resource, as each host reported it
    assert set(placed) == {"worker0", "worker1"}, placed
    assert sorted(placed.count(w) for w in set(placed)) == [2, 3], placed


def test_a_lost_node_then_a_killed_driver_and_the_run_ends_as_uninterrupted(
    recorded: tuple[Path, Path], local_cluster: LocalCluster, scenario: Path, tmp_path: Path
) -> None:
    """One replayed run: a worker node lost after checkpoint 4 (its hosts re-placed, the run
    rolled back), then the driver killed with SIGKILL after checkpoint 8, then resumed."""
    reference, recording = recorded
    run = tmp_path / "run"
    process = simulacra(
        *run_args(scenario, run, local_cluster.address, "--replay", str(recording)), wait=False
    )
    placed = pause_at_step(run, process, EVERY)
    by_id = {w.node_id: w for w in local_cluster.workers}
    victims = [h["node"] for h in placed["hosts"] if h["node"] in by_id]
    assert victims, f"no host on a worker node: {placed['hosts']}"
    lost = victims[0]
    on_it = [h["pid"] for h in placed["hosts"] if h["node"] == lost]
    lose_node(local_cluster, by_id[lost], pids=on_it)
    process.send_signal(signal.SIGCONT)

    recovered = pause_at_step(run, process, 2 * EVERY)
    (stretch,) = recovered["stats"]
    assert stretch["recoveries"] >= 1, stretch
    lost_hosts = {h["index"] for h in placed["hosts"] if h["node"] == lost}
    replaced = {i for r in stretch["recovered"] for i in r["hosts"]}
    assert lost_hosts <= replaced, (stretch["recovered"], recovered["hosts"])
    assert all(h["node"] != lost for h in recovered["hosts"])  # re-placed on the nodes left
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    killed_at = checkpoint_steps(run)
    assert manifest(run)["status"] == "running" and killed_at[-1] < STEPS

    simulacra("resume", str(run), "--address", local_cluster.address, "--no-progress")
    found = manifest(run)
    assert found["status"] == "finished" and found["step"] == STEPS
    assert [r["from_step"] for r in found["resumes"]] == [killed_at[-1]]
    state = final_state(run, parts=False)
    for memory in state["memories"].values():
        ids = [r["id"] for r in memory["records"]]
        assert len(ids) == len(set(ids))
    assert state == final_state(reference, parts=False)
    assert events(run) == events(reference)
