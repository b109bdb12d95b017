"""A run whose model backend dies stops with a clear status and resumes once the backend is
back; a run whose answers merely fail validation finishes. Local hosts, a scripted model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

import cluster.run as run_module
from actors.mind.memory_store import InMemoryStore
from cluster.checkpoints import checkpoint_steps
from cluster.cli import EXIT_BACKEND_FAILED, main
from cluster.hosts import HostFactory, PlacedHost, local_host_factory
from cluster.run import BackendFailedError, RunOptions, resume_run, start_run
from serving.config import EngineConfig
from serving.scripted import Answer, ScriptedLLM
from serving.types import LLMRequest
from tests.fakes import HashEmbedder, content_seeded_answers
from tests.run_state import final_state
from tests.unit.test_run_lifecycle import manifest
from tests.unit.test_simulation import DIM, Setup, scenario_data

REFUSED = "cannot reach the server: [Errno 111] Connection refused"
OPTIONS = RunOptions(steps=8, checkpoint_every=3, agents_per_host=2, progress=False)
# the agents of this scenario think in steps 0 to 3, then keep to their long actions


class DyingBackend:
    """The answers of :class:`Setup`'s model until ``alive`` requests are answered; from then on
    every row fails as the backend's (connection refused), until ``alive`` is set to None."""

    def __init__(self, alive: int | None, bad_purpose: str | None = None) -> None:
        self.alive = alive
        self.bad_purpose = bad_purpose
        self.answered = 0
        self.refused = 0
        self._answers = content_seeded_answers(7)  # Setup's
        self.model = ScriptedLLM(self._answer)

    def _answer(self, request: LLMRequest) -> Answer:
        if self.alive is not None and self.answered >= self.alive:
            self.refused += 1
            return ConnectionError(REFUSED)
        self.answered += 1
        if request.purpose == self.bad_purpose:
            return "not json"  # a bad row: the mind falls back
        return self._answers(request)

    def factory(self, setup: Setup) -> HostFactory:
        """Hosts as :class:`Setup`'s (its stores, outliving a host), on this model, with no
        wait for a failing backend (the guard's backoff is tested on its own)."""
        base = local_host_factory(
            setup.settings,
            3,
            self.model,
            HashEmbedder(DIM),
            lambda i: setup.stores.setdefault(i, InMemoryStore(DIM)),
            backend_wait_s=0,
        )

        def make(index: int, personas: Any) -> PlacedHost:
            return base(index, personas)

        return make


def whole_run(tmp: Path) -> tuple[Path, int]:
    """The run without failures, and how many requests it made before its step 3 and halfway
    through it (so a backend dying then dies in step 3, after checkpoint 3)."""
    setup = Setup(tmp)
    run = tmp / "whole"
    start_run(setup.scenario, OPTIONS, out=run, factory=setup.factory)
    steps = pq.read_table(run / "llm_calls.parquet").column("step").to_pylist()
    before, during = sum(s <= 2 for s in steps), sum(s == 3 for s in steps)
    assert during > 1
    return run, before + during // 2


def test_a_backend_that_dies_stops_the_run_at_its_last_checkpoint_and_resume_finishes_it(
    tmp_path: Path,
) -> None:
    whole, alive = whole_run(tmp_path / "a")
    setup = Setup(tmp_path / "b")
    backend = DyingBackend(alive)
    run = tmp_path / "run"
    with pytest.raises(BackendFailedError) as info:
        start_run(setup.scenario, OPTIONS, out=run, factory=backend.factory(setup))
    assert backend.refused > 0
    message = str(info.value)
    assert "the LLM service (hf engine, model smollm2)" in message and REFUSED in message
    assert "stopped at step 3" in message and "checkpoint of step 3" in message
    assert f"simulacra resume {run}" in message
    # nothing of the failing step is checkpointed; the manifest says why and where
    assert checkpoint_steps(run) == [0, 3]
    found = manifest(run)
    assert found["status"] == "backend_failed" and found["step"] == 3
    assert found["failed_at_step"] == 3 and REFUSED in found["error"]
    stats = found["stats"][-1]
    assert stats["steps"] == 3 and stats["llm_calls"] > 0 and stats["recoveries"] == 0
    assert stats["llm_failed_calls"] == 0 and stats["fallbacks"] == 0

    backend.alive = None  # the backend is back
    resume_run(run, factory=backend.factory(setup))
    found = manifest(run)
    assert found["status"] == "finished" and "error" not in found
    assert found["resumes"][-1]["after"] == "backend_failed"
    assert REFUSED in found["resumes"][-1]["error"]
    assert final_state(run, parts=False) == final_state(whole, parts=False)
    for table in ("events", "memories"):
        a = pq.read_table(whole / f"{table}.parquet").to_pylist()
        b = pq.read_table(run / f"{table}.parquet").to_pylist()
        assert sorted(map(str, b)) == sorted(map(str, a)), table


def test_a_run_whose_answers_fail_validation_finishes_and_counts_them(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    backend = DyingBackend(None, bad_purpose="importance")
    run = tmp_path / "run"
    start_run(setup.scenario, OPTIONS, out=run, factory=backend.factory(setup))
    found = manifest(run)
    assert found["status"] == "finished" and checkpoint_steps(run) == [0, 3, 6, 8]
    stats = found["stats"][-1]
    # every importance question failed twice (asked again once) and fell back
    assert stats["fallbacks"] > 0 and stats["llm_failed_calls"] == 2 * stats["fallbacks"]
    calls = pq.read_table(run / "llm_calls.parquet").to_pylist()
    failed = [c for c in calls if not c["ok"] and c["step"] > 0]  # step 0: seeding too
    assert all(c["purpose"] == "importance" for c in failed)


def test_the_command_line_says_what_failed_exits_3_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, alive = whole_run(tmp_path / "a")
    setup = Setup(tmp_path / "b")
    backend = DyingBackend(alive)
    factory = backend.factory(setup)
    start, resume = run_module.start_run, run_module.resume_run

    def start_here(*args: Any, **kwargs: Any) -> Path:  # the CLI's run on local hosts
        return start(*args, **{**kwargs, "factory": factory})

    def resume_here(*args: Any, **kwargs: Any) -> Path:
        return resume(*args, **{**kwargs, "factory": factory})

    monkeypatch.setattr(run_module, "start_run", start_here)
    monkeypatch.setattr(run_module, "resume_run", resume_here)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(scenario_data()))
    run = tmp_path / "run"
    url = "http://127.0.0.1:8001/v1"
    flags = ["--engine", "openai", "--base-url", url, "--model", "llama", "--no-progress"]
    argv = ["run", str(scenario), "--out", str(run), "--steps", "8", "--checkpoint-every", "3"]
    assert main([*argv, "--agents-per-host", "2", *flags]) == EXIT_BACKEND_FAILED == 3
    err = capsys.readouterr().err
    assert err.startswith("simulacra run: error: the model backend, the OpenAI-compatible ")
    assert url in err and REFUSED in err and f"simulacra resume {run}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert manifest(run)["status"] == "backend_failed"

    backend.alive = None
    assert main(["resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"run {run} resumed and written: 5 steps, " in out
    assert "model calls, 0 failed, 0 answers fell back" in out
    assert manifest(run)["status"] == "finished"


def test_the_options_wait_for_a_failing_backend_two_minutes_by_default() -> None:
    assert RunOptions().backend_wait_s == 120
    assert run_module.describe_backend(EngineConfig(engine="hf", model="tiny")) == (
        "the LLM service (hf engine, model tiny)"
    )
