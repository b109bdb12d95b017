"""The simulation end to end on the real stack: local Ray, Serve, the tiny model, the real
embedder, embedded Qdrant in every host actor.

One recorded run of the built-in town is shared: it is checked for what every table holds, and
its recording then drives a replayed run that is interrupted and resumed, which must end in
exactly the recorded run's state. (Hosts dying mid-run, a whole node of them, are the multi-node
test's: tests/integration/test_multi_node.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cluster.checkpoints import checkpoint_dir, checkpoint_steps
from cluster.outputs import EVENTS, LLM_CALLS, MEMORIES, RETRIEVALS
from cluster.run import (
    RunOptions,
    interview_run,
    read_manifest,
    resume_run,
    start_run,
)
from scenarios.loader import load_scenario
from scenarios.schema import Scenario
from serving.config import EngineConfig
from tests.run_state import final_state

pytestmark = pytest.mark.integration

TOWN = Path(__file__).parents[2] / "scenarios" / "town.yaml"
STEPS, EVERY = 12, 6


@pytest.fixture(scope="module")
def town() -> Scenario:
    return load_scenario(TOWN)


@pytest.fixture(scope="module")
def recorded(
    restores_services_after_module: None, town: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The town for 12 steps with the tiny model, every answer recorded: (run dir, recording)."""
    tmp = tmp_path_factory.mktemp("recorded")
    recording = tmp / "answers.msgpack"
    options = RunOptions(
        engine=EngineConfig(model="tiny", record=str(recording)),
        steps=STEPS,
        checkpoint_every=EVERY,
        agents_per_host=5,
        progress=False,
        seed=11,
    )
    return start_run(town, options, out=tmp / "run"), recording


def replay_options(recording: Path, **kw: Any) -> RunOptions:
    return RunOptions(
        engine=EngineConfig(model="tiny", replay=str(recording)),
        checkpoint_every=EVERY,
        agents_per_host=5,
        progress=False,
        seed=11,
        **kw,
    )


def test_the_town_runs_and_every_table_has_its_columns(recorded: tuple[Path, Path]) -> None:
    run, _ = recorded
    names = {a["name"] for a in read_manifest(run)["scenario"]["agents"]}
    assert len(names) == 25
    for table, schema in (
        ("events", EVENTS),
        ("llm_calls", LLM_CALLS),
        ("retrievals", RETRIEVALS),
        ("memories", MEMORIES),
    ):
        data = pq.read_table(run / f"{table}.parquet")
        assert data.schema.names == schema.names, table
        assert data.num_rows > 0, table
    events = pq.read_table(run / "events.parquet").to_pylist()
    by_kind: dict[str, set[str]] = {}
    for e in events:
        by_kind.setdefault(e["kind"], set()).add(e["agent"])
    assert by_kind["plan"] == names  # every agent planned its day
    acted = by_kind["activity"] | by_kind["conversation"]
    assert acted == names  # and acted (a conversation at once is acting too)
    assert by_kind["utterance"] and by_kind["conversation"]  # some of them talked
    calls = pq.read_table(run / "llm_calls.parquet").to_pylist()
    assert {c["agent"] for c in calls} == names
    assert {c["batch_size"] for c in calls if c["batch_size"]} != {1}  # batched across agents
    memories = pq.read_table(run / "memories.parquet").to_pylist()
    assert {m["agent"] for m in memories} == names
    assert len({m["record_id"] for m in memories}) == len(memories)
    manifest = read_manifest(run)
    assert manifest["status"] == "finished" and manifest["step"] == STEPS
    assert checkpoint_steps(run) == [0, 6, 12]


def test_a_resumed_run_ends_like_an_uninterrupted_one_under_replay(
    recorded: tuple[Path, Path], town: Scenario, tmp_path: Path
) -> None:
    run, recording = recorded
    interrupted = start_run(town, replay_options(recording, steps=9), out=tmp_path / "run")
    # a crash after step 9, before its checkpoint: the tables went on past checkpoint 6
    shutil.rmtree(checkpoint_dir(interrupted, 9))
    assert checkpoint_steps(interrupted) == [0, 6]
    resume_run(interrupted, steps=STEPS - 6)
    assert final_state(interrupted) == final_state(run)
    for table in ("events", "memories"):
        a = pq.read_table(run / f"{table}.parquet").to_pylist()
        b = pq.read_table(interrupted / f"{table}.parquet").to_pylist()
        key = lambda r: tuple(str(v) for v in r.values())  # noqa: E731
        assert sorted(b, key=key) == sorted(a, key=key), table
    assert [r["from_step"] for r in read_manifest(interrupted)["resumes"]] == [6]


async def test_interview_answers_from_the_end_of_run_memory(recorded: tuple[Path, Path]) -> None:
    run, _ = recorded
    before = final_state(run)
    answers = await interview_run(run, "Who did you talk to today?", ["Owen Castell"])
    (answer,) = answers
    assert answer["agent"] == "Owen Castell" and isinstance(answer["answer"], str)
    ids = {r["id"] for r in before["memories"]["Owen Castell"]["records"]}
    assert answer["records"] and {r["id"] for r in answer["records"]} <= ids
    assert final_state(run) == before  # an interview changes nothing in the run folder
