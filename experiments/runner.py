"""``simulacra experiment``: every (grid point, seed) of an experiment as a run folder, run
concurrently on one Ray cluster sharing one LLM and one embedding service (each run has its own
hosts and memory collections), then measured; the results gathered into ``results.parquet``.

The experiment folder holds ``experiment.json`` (the experiment file as validated, and its
runs), ``runs/<run id>/`` (run folders, each with its measures), ``results.parquet``,
``figures/``. Run again, it resumes: finished and measured runs are kept, an interrupted run
continues from its last checkpoint, a run with no checkpoint starts again.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.checkpoints import checkpoint_steps
from cluster.interrupts import two_stage_sigint
from cluster.run import (
    PreparedRun,
    RunOptions,
    Services,
    drive,
    prepare_resume,
    prepare_start,
    ray_factory,
    read_manifest,
    resolve_agents_per_host,
)
from cluster.simulation import Simulation
from experiments.grid import RunSpec, expand, load_base
from experiments.progress import ExperimentProgress
from experiments.results import write_results
from experiments.scaling import ScalingProbe, write_scaling
from experiments.spec import ExperimentError, ExperimentSpec, load_experiment
from experiments.stats import SummaryRow
from serving.config import EngineConfig
from serving.files import write_text_atomic

EXPERIMENT_FORMAT = "simulacra-experiment"
EXPERIMENT_VERSION = 1
EXPERIMENT_FILE = "experiment.json"


@dataclass
class Experiment:
    """An experiment file, validated and expanded, and the folder it runs into."""

    spec: ExperimentSpec
    source: Path
    runs: list[RunSpec]
    folder: Path
    record: str | None = None
    replay: str | None = None

    def run_dir(self, run: RunSpec) -> Path:
        return self.folder / "runs" / run.run_id


@dataclass
class Outcome:
    """What became of the experiment's runs this time."""

    kept: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    stopping: bool = False  # Ctrl-C: no run starts, the running ones end after their step
    failed: dict[str, str] = field(default_factory=dict)
    summary: list[SummaryRow] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def load(
    path: str | Path,
    out: str | Path | None = None,
    record: str | None = None,
    replay: str | None = None,
) -> Experiment:
    """The experiment file at ``path``, checked whole (every run's scenario included) before
    anything is written; the folder is ``out`` or ``runs/experiments/<name>``."""
    source = Path(path)
    spec = load_experiment(source)
    base = load_base(spec, source)
    runs = expand(spec, base, source=str(source))
    folder = Path(out) if out is not None else Path("runs") / "experiments" / spec.name
    if record and replay:
        raise ExperimentError(str(source), [("", "give --record or --replay, not both")])
    if replay and not Path(replay).is_file():
        raise ExperimentError(str(source), [("", f"--replay {replay}: no such file")])
    experiment = Experiment(spec, source, runs, folder, record, replay)
    _check_folder(experiment)
    return experiment


def _description(experiment: Experiment) -> dict[str, Any]:
    spec = experiment.spec
    return {
        "format": EXPERIMENT_FORMAT,
        "version": EXPERIMENT_VERSION,
        "source": str(experiment.source),
        "spec": spec.model_dump(mode="json"),
        "runs": [
            {"run_id": r.run_id, "point": r.point, "seed": r.seed, "params": dict(r.params)}
            for r in experiment.runs
        ],
    }


def _check_folder(experiment: Experiment) -> None:
    """A new or empty folder, or this experiment's own (the same file, to resume)."""
    folder, source = experiment.folder, str(experiment.source)
    saved = folder / EXPERIMENT_FILE
    if saved.is_file():
        try:
            data = json.loads(saved.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ExperimentError(str(saved), [("", f"not valid JSON ({exc})")]) from None
        if data.get("format") != EXPERIMENT_FORMAT or data.get("version") != EXPERIMENT_VERSION:
            raise ExperimentError(str(saved), [("", "not an experiment folder of this version")])
        if data.get("spec") != experiment.spec.model_dump(mode="json"):
            raise ExperimentError(
                source,
                [
                    (
                        "",
                        f"{folder} holds a different experiment (its {EXPERIMENT_FILE} differs "
                        "from this file); give another --out, nothing was touched",
                    )
                ],
            )
    elif folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExperimentError(
            source, [("", f"--out {folder} exists and is not an experiment folder; untouched")]
        )


def run_experiment(experiment: Experiment, concurrency: int | None = None) -> Outcome:
    """Runs (or resumes) every run of ``experiment``, measures each, writes the results."""
    spec = experiment.spec
    experiment.folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        experiment.folder / EXPERIMENT_FILE, json.dumps(_description(experiment), indent=2)
    )
    limit = 1 if spec.kind == "scaling" else (concurrency or spec.concurrency)
    outcome = Outcome()
    todo = [r for r in experiment.runs if not _done(experiment, r, outcome)]
    for engine, runs in _by_engine(experiment, todo):
        hosts = limit * max(_hosts(experiment, r) for r in runs)
        with Services(RunOptions(engine=engine), hosts=hosts):
            asyncio.run(_run_all(experiment, runs, limit, outcome))
        if outcome.stopping:
            break
    results, outcome.summary = write_results(experiment.folder, spec, experiment.runs)
    outcome.written.append(results)
    if spec.kind == "scaling":
        scaling = write_scaling(experiment.folder, experiment.runs)
        if scaling is not None:
            outcome.written.append(scaling)
    if outcome.stopping:
        raise KeyboardInterrupt
    return outcome


def _hosts(experiment: Experiment, run: RunSpec) -> int:
    """How many host actors ``run`` places (the LLM's CPU threads are what they leave)."""
    agents = len(run.scenario.agents)
    return -(-agents // resolve_agents_per_host(_options(experiment, run), agents))


def _done(experiment: Experiment, run: RunSpec, outcome: Outcome) -> bool:
    """Whether ``run`` finished and was measured (kept as it is)."""
    run_dir = experiment.run_dir(run)
    if not (run_dir / "manifest.json").is_file():
        return False
    manifest = read_manifest(run_dir)
    measured = (run_dir / "measures.json").is_file()
    scaled = experiment.spec.kind != "scaling" or (run_dir / "scaling.json").is_file()
    if manifest.get("status") == "finished" and measured and scaled:
        outcome.kept.append(run.run_id)
        return True
    return False


def _by_engine(
    experiment: Experiment, runs: Sequence[RunSpec]
) -> list[tuple[EngineConfig, list[RunSpec]]]:
    """Runs grouped by the model they need: one set of services per group."""
    groups: dict[str, tuple[EngineConfig, list[RunSpec]]] = {}
    for run in runs:
        engine = _engine(experiment, run)
        groups.setdefault(engine.model_dump_json(), (engine, []))[1].append(run)
    return list(groups.values())


def _engine(experiment: Experiment, run: RunSpec) -> EngineConfig:
    options = dict(run.options)
    return EngineConfig(
        engine=options["engine"],
        model=options["model"],
        record=str(Path(experiment.record).resolve()) if experiment.record else None,
        replay=str(Path(experiment.replay).resolve()) if experiment.replay else None,
    )


def _options(experiment: Experiment, run: RunSpec) -> RunOptions:
    every = experiment.spec.checkpoint_every or min(run.scenario.checkpoint_every, run.steps)
    return RunOptions(
        engine=_engine(experiment, run),
        seed=run.seed,
        steps=run.steps,
        checkpoint_every=every,
        progress=False,
    )


def _prepare(experiment: Experiment, run: RunSpec) -> PreparedRun | None:
    """The run ready to start or resume; None for one that already ran to its end."""
    run_dir = experiment.run_dir(run)
    options = _options(experiment, run)
    if (run_dir / "manifest.json").is_file():
        manifest = read_manifest(run_dir)
        steps = checkpoint_steps(run_dir)
        if manifest.get("status") == "finished" or (steps and steps[-1] >= run.steps):
            return None
        if steps:
            return prepare_resume(run_dir, check_model=False)
        shutil.rmtree(run_dir)  # started, never reached a checkpoint: nothing to keep
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return prepare_start(run.scenario, options, out=run_dir, check_model=False)


async def _run_all(
    experiment: Experiment, runs: Sequence[RunSpec], limit: int, outcome: Outcome
) -> None:
    progress = ExperimentProgress(experiment, runs)
    active: dict[str, Simulation] = {}
    slots = asyncio.Semaphore(limit)
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    def stop_after_step() -> None:
        outcome.stopping = True
        for sim in active.values():
            sim.request_stop()

    def stop_now() -> None:
        for task in tasks:
            loop.call_soon_threadsafe(task.cancel)

    async def one(run: RunSpec) -> None:
        async with slots:
            if outcome.stopping:
                return
            await _one(experiment, run, outcome, progress, active)

    guard = two_stage_sigint(
        lambda: outcome.stopping, stop_after_step, stop_now, "stopping every run after its step"
    )
    try:
        with guard:
            tasks = [asyncio.create_task(one(r)) for r in runs]
            for done in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(done, asyncio.CancelledError):
                    outcome.stopping = True
                elif isinstance(done, BaseException):
                    raise done
    finally:
        progress.close()


async def _one(
    experiment: Experiment,
    run: RunSpec,
    outcome: Outcome,
    progress: ExperimentProgress,
    active: dict[str, Simulation],
) -> None:
    from measures.measure_run import measure_run
    from serving.clients import ServeEmbedder, ServeLLM

    spec = experiment.spec
    run_dir = experiment.run_dir(run)
    probe = ScalingProbe() if spec.kind == "scaling" else None
    prepared = _prepare(experiment, run)
    if prepared is not None:
        (outcome.resumed if prepared.resume_from is not None else outcome.started).append(
            run.run_id
        )
        factory = ray_factory(prepared, f"{spec.name}_{run.run_id}")
        progress.begin(run, prepared.resume_from or 0)
        if probe is not None:
            await probe.start()
        try:
            await drive(
                prepared,
                factory,
                on_step=lambda sim: progress.step(run, sim),
                started=lambda sim: active.__setitem__(run.run_id, sim),
                at_end=probe.finish if probe is not None else None,
            )
        except KeyboardInterrupt:  # Ctrl-C (outcome.stopping): it resumes next time
            return
        except Exception as exc:
            outcome.failed[run.run_id] = f"{type(exc).__name__}: {exc}"
            progress.note(f"{run.run_id} failed: {exc}")
            return
        finally:
            active.pop(run.run_id, None)
    if probe is not None and probe.result is not None:
        write_text_atomic(run_dir / "scaling.json", json.dumps(probe.result, indent=2))
    progress.note(f"{run.run_id}: measuring")
    await measure_run(
        run_dir,
        at=spec.measure_at,
        take=spec.measures,
        llm=ServeLLM(),
        embedder=ServeEmbedder(),
        figures=True,
    )
    progress.finish(run)
