"""A run folder's life cycle through ``start_run``/``resume_run`` with local hosts: a damaged
folder is refused before anything runs, Ctrl-C ends a run at a step's end with a checkpoint of
it, and the manifest follows every checkpoint."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cluster.checkpoints import checkpoint_steps
from cluster.run import RunError, RunOptions, resume_run, start_run
from cluster.simulation import Simulation
from tests.run_state import final_state
from tests.unit.test_simulation import Setup

OPTIONS = RunOptions(steps=8, checkpoint_every=4, agents_per_host=2, progress=False)


def manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def stopped_run(setup: Setup, run: Path) -> None:
    """A run of 8 steps whose driver stops it after step 4 (a checkpoint at 4, parts to 4)."""
    start_run(
        setup.scenario, OPTIONS.model_copy(update={"steps": 4}), out=run, factory=setup.factory
    )


def test_a_deleted_part_is_named_and_nothing_runs(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    run = tmp_path / "run"
    stopped_run(setup, run)
    part = sorted((run / "parts").glob("events-*.parquet"))[0]
    part.unlink()
    before = manifest(run)
    with pytest.raises(RunError, match=rf"{part.name}: missing .*nothing was run"):
        resume_run(run, steps=4, factory=setup.factory)
    assert checkpoint_steps(run) == [0, 4]
    assert manifest(run) == before


def test_a_truncated_part_is_named_and_nothing_runs(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    run = tmp_path / "run"
    stopped_run(setup, run)
    part = sorted((run / "parts").glob("events-*.parquet"))[-1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(RunError, match=rf"{part.name}: unreadable"):
        resume_run(run, steps=4, factory=setup.factory)
    assert checkpoint_steps(run) == [0, 4]


def test_ctrl_c_ends_the_run_after_its_step_with_a_checkpoint_and_resume_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole"
    start_run(
        Setup(tmp_path / "a").scenario, OPTIONS, out=whole, factory=Setup(tmp_path / "a").factory
    )

    step = Simulation.step

    async def step_and_interrupt(sim: Simulation) -> None:
        if sim.step_no == 5:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while step 5 runs
        await step(sim)

    monkeypatch.setattr(Simulation, "step", step_and_interrupt)
    setup = Setup(tmp_path / "b")
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        start_run(setup.scenario, OPTIONS, out=run, factory=setup.factory)
    assert checkpoint_steps(run) == [0, 4, 6]  # step 5 finished, then a checkpoint of it
    found = manifest(run)
    assert found["status"] == "interrupted" and found["step"] == 6
    monkeypatch.setattr(Simulation, "step", step)
    resume_run(run, factory=setup.factory)
    assert manifest(run)["status"] == "finished"
    # the same state; only the table parts are cut at other steps (4, 6, 8 against 4, 8)
    assert final_state(run, parts=False) == final_state(whole, parts=False)
    for table in ("events", "memories"):
        a = pq.read_table(whole / f"{table}.parquet").to_pylist()
        b = pq.read_table(run / f"{table}.parquet").to_pylist()
        assert sorted(map(str, b)) == sorted(map(str, a)), table


def test_the_manifest_follows_every_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []
    checkpoint = Simulation.checkpoint
    run = tmp_path / "run"

    async def look(sim: Simulation) -> Any:
        if (run / "manifest.json").is_file():
            seen.append((sim.step_no, manifest(run)["step"]))
        return await checkpoint(sim)

    monkeypatch.setattr(Simulation, "checkpoint", look)
    setup = Setup(tmp_path)
    start_run(setup.scenario, OPTIONS, out=run, factory=setup.factory)
    # when checkpoint 8 is written, the manifest already says 4 (what a killed driver leaves)
    assert seen == [(0, 0), (4, 0), (8, 4)]
    found = manifest(run)
    assert found["step"] == 8 and len(found["hosts"]) == len(setup.made)


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m.pop("options"), "options: missing"),
        (lambda m: m["scenario"].update(duration_hours="abc"), "scenario: duration_hours"),
        (lambda m: m.update(settings=42), "settings: "),
        (lambda m: m.update(target_step="abc"), "target_step: expected a step number"),
        (lambda m: m["options"].update(checkpoint_every=-1), "options: checkpoint_every"),
    ],
)
def test_a_damaged_manifest_is_refused_naming_the_field(
    tmp_path: Path, edit: Any, field: str
) -> None:
    setup = Setup(tmp_path)
    run = tmp_path / "run"
    stopped_run(setup, run)
    data = manifest(run)
    edit(data)
    (run / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(RunError, match=rf"manifest.json: {field}"):
        resume_run(run, factory=setup.factory)
    assert checkpoint_steps(run) == [0, 4]


def test_until_more_than_ten_game_years_away_is_refused(tmp_path: Path) -> None:
    from datetime import datetime

    setup = Setup(tmp_path)
    options = OPTIONS.model_copy(update={"steps": None, "until": datetime(9999, 12, 31)})
    with pytest.raises(RunError, match="more than 87,840 game hours"):
        start_run(setup.scenario, options, out=tmp_path / "run", factory=setup.factory)
    assert not (tmp_path / "run").exists()


def test_resume_on_the_command_line_names_a_damaged_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cluster.cli import main

    setup = Setup(tmp_path)
    run = tmp_path / "run"
    stopped_run(setup, run)
    data = manifest(run)
    del data["options"]
    (run / "manifest.json").write_text(json.dumps(data))
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: options: missing" in err and "Traceback" not in err
