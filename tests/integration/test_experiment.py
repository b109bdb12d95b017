"""``simulacra experiment`` on the real stack (local Ray, Serve, the tiny model, the real
embedder), as a user runs it: 2 grid points x 2 seeds into four run folders and one
``results.parquet``; interrupted after its first run finished and started again, it runs only
what was missing and ends with the same table (under ``--replay``); a scaling study of two sizes
writes its table and figure; a bad experiment file is refused before anything is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration

SIMULACRA = [sys.executable, "-m", "cluster.cli"]
ROOT = Path(__file__).parents[2]
TIMED = {"cost.wall_s", "cost.tokens_per_s"}  # wall-clock measures differ between any two runs

GRID = """\
name: tiny-grid
synthetic: {agents: 4, hours: 1, town_seed: 0}
grid:
  settings.retrieval.w_relevance: [1, 3]
seeds: [0, 1]
steps: 4
checkpoint_every: 2
model: tiny
measures: [awareness, network, cost]
declare:
  information:
    - name: fair
      text: Lena Vale is organising a town fair on Saturday.
      question: Do you know about a town fair?
      seeded_in: [Lena Vale]
concurrency: 2
"""


def simulacra(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIMULACRA, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def results(folder: Path) -> list[tuple[str, str, float]]:
    rows = pq.read_table(folder / "results.parquet").to_pylist()
    return sorted(
        (r["run_id"], r["measure"], r["value"]) for r in rows if r["measure"] not in TIMED
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("experiment")
    spec = tmp / "grid.yaml"
    spec.write_text(GRID)
    recording = tmp / "answers.msgpack"
    done = simulacra("experiment", str(spec), "--out", str(tmp / "a"), "--record", str(recording))
    assert done.returncode == 0, done.stderr[-3000:]
    return spec, tmp / "a", recording


def test_four_run_folders_and_the_results_table(recorded: tuple[Path, Path, Path]) -> None:
    _, folder, _ = recorded
    runs = sorted(p.name for p in (folder / "runs").iterdir())
    assert runs == ["p00-s0", "p00-s1", "p01-s0", "p01-s1"]
    for run in runs:
        assert (folder / "runs" / run / "measures.json").is_file()
    table = pq.read_table(folder / "results.parquet")
    assert table.column_names == [
        "run_id",
        "point",
        "seed",
        "settings.retrieval.w_relevance",
        "measure",
        "value",
    ]
    rows = table.to_pylist()
    assert {(r["run_id"], r["settings.retrieval.w_relevance"]) for r in rows} == {
        ("p00-s0", 1),
        ("p00-s1", 1),
        ("p01-s0", 3),
        ("p01-s1", 3),
    }
    measures = {r["measure"] for r in rows}
    assert {"aware_share.fair.start", "aware_share.fair.end", "density_interview.end"} <= measures
    assert (folder / "figures" / "experiment.png").read_bytes()[:4] == b"\x89PNG"


def test_interrupted_and_restarted_it_runs_only_what_was_missing(
    recorded: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    spec, whole, recording = recorded
    folder = tmp_path / "b"
    args = [*SIMULACRA, "experiment", str(spec), "--out", str(folder), "--replay", str(recording)]
    proc = subprocess.Popen(
        [*args, "--concurrency", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    first = folder / "runs" / "p00-s0" / "measures.json"
    deadline = time.monotonic() + 400
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.is_file(), proc.communicate()[0][-3000:] if proc.poll() is not None else "slow"
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    again = simulacra("experiment", str(spec), "--out", str(folder), "--replay", str(recording))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 kept from before" in again.stdout, again.stdout
    assert results(folder) == results(whole)


def test_a_scaling_study_writes_its_table_and_figure(tmp_path: Path) -> None:
    spec = tmp_path / "scaling.yaml"
    spec.write_text(
        "name: tiny-scaling\nkind: scaling\nsynthetic: {hours: 1, town_seed: 0}\n"
        "sizes: [3, 6]\nseeds: [0]\nsteps: 2\nmodel: tiny\nmeasures: [cost]\n"
    )
    done = simulacra("experiment", str(spec), "--out", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pq.read_table(tmp_path / "s" / "scaling.parquet").to_pylist()
    assert [r["agents"] for r in rows] == [3, 6]
    for row in rows:
        assert row["steps"] == 2 and row["agent_steps_per_s"] > 0
        assert row["host_mb_per_agent"] > 0 and row["service_mb"] > 0
        assert 0 < row["engine_busy_share"] <= 1
    assert (tmp_path / "s" / "figures" / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_a_bad_experiment_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(GRID.replace("w_relevance: [1, 3]", "w_relevanc: [1, 3]"))
    done = simulacra("experiment", str(spec), "--out", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 2
    assert "grid.settings.retrieval.w_relevanc" in done.stderr
    assert not (tmp_path / "out").exists()
