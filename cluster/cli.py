"""The ``simulacra`` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

EXIT_BAD_INPUT = 2


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
    from serving.config import EngineConfig

    adapters: dict[str, str] = {}
    for spec in args.adapter or []:
        try:
            name, path = parse_adapter_spec(spec)
        except Exception as exc:
            raise UsageError(str(exc)) from None
        if name in adapters:
            raise UsageError(f"--adapter {name!r} is given twice")
        adapters[name] = path
    if args.engine == "openai" and not args.base_url:
        raise UsageError("--engine openai needs --base-url (the OpenAI-compatible server)")
    try:
        return EngineConfig(
            engine=args.engine,
            model=args.model,
            adapters=adapters,
            max_batch_size=args.max_batch_size,
            base_url=args.base_url,
            api_key=args.upstream_api_key,
            seed=args.seed,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(problems) from None


def _check_model(config) -> None:
    """Fails fast, before Ray starts, on a model or adapter folder that does not exist."""
    from serving.tiny_model import resolve_model

    if config.engine != "openai":
        resolve_model(config.model, config.adapters)


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
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    print("stopping the services")
    from ray import serve

    serve.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simulacra", description="Societies of generative agents on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    tiny = sub.add_parser("tiny-model", help="build the tiny random-weight test model")
    tiny.add_argument("dir", help="folder to write the model into")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--adapters", default="alice,bob", help="comma-separated adapter names")
    tiny.set_defaults(func=_cmd_tiny_model)

    srv = sub.add_parser("serve", help="serve an LLM (and embeddings) on local Ray")
    srv.add_argument("--engine", choices=["hf", "vllm", "openai"], default="hf")
    srv.add_argument("--model", default="tiny", help="folder, hub id, or 'tiny'")
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
    srv.add_argument("--seed", type=int, default=0)
    srv.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from serving.types import LLMError

    try:
        return int(args.func(args))
    except (UsageError, LLMError) as exc:
        print(f"simulacra {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
