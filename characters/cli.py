"""``simulacra character ...``: the commands of the Character-LLM pipeline.

Each command's work lives in its own module (``build``, ``importer``, ``train``, ``evaluate``),
imported only when the command runs.
"""

from __future__ import annotations

import argparse


def _build(args: argparse.Namespace) -> int:
    from characters.build import run_build

    return run_build(args)


def _import(args: argparse.Namespace) -> int:
    from characters.importer import run_import

    return run_import(args)


def _train(args: argparse.Namespace) -> int:
    from characters.train import run_train

    return run_train(args)


def _eval(args: argparse.Namespace) -> int:
    from characters.evaluate import run_eval

    return run_eval(args)


def _engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["hf", "vllm", "openai"], default="hf")
    p.add_argument("--base-url", default=None, help="the OpenAI-compatible server (openai)")
    p.add_argument("--upstream-api-key", default=None, help="key for --base-url")


def add_character_commands(sub: argparse._SubParsersAction) -> None:
    """Adds ``character build|import|train|eval`` to the ``simulacra`` parser."""
    character = sub.add_parser("character", help="Character-LLM: build, import, train, eval")
    commands = character.add_subparsers(dest="character_command", required=True)

    build = commands.add_parser("build", help="reconstruct experiences from a profile")
    build.add_argument("profile", help="a profile: '# <Full Name>', then paragraphs")
    build.add_argument("--generator", required=True, help="the generator model ('tiny' works)")
    _engine_flags(build)
    build.add_argument("--scenes-per-chunk", type=int, default=20)
    build.add_argument("--prompts", type=int, default=100, help="scene-extraction prompts")
    build.add_argument("--concurrency", type=int, default=32, help="generations in flight")
    build.add_argument("--max-tokens", type=int, default=2048, help="a script's token limit")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--out", required=True, help="the data folder (resumed if it exists)")
    build.set_defaults(func=_build)

    imp = commands.add_parser("import", help="read the released Character-LLM data files")
    imp.add_argument("path", help="a prompted/*.jsonl or generated/*.json file, or a folder")
    imp.add_argument("--out", required=True, help="the data folder to write")
    imp.add_argument("--name", default=None, help="the character (from the data when unset)")
    imp.set_defaults(func=_import)

    train = commands.add_parser("train", help="train a LoRA adapter on a data folder")
    train.add_argument("data", help="a data folder (from build or import)")
    train.add_argument("--base", required=True, help="the base model ('tiny' works)")
    train.add_argument("--out", required=True, help="the adapter folder to write")
    train.add_argument("--rank", type=int, default=16)
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--max-length", type=int, default=2048)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train)

    ev = commands.add_parser("eval", help="interview an adapter and have a judge score it")
    ev.add_argument("adapter", help="the adapter folder (from train)")
    ev.add_argument("--base", required=True, help="the base model the adapter was trained on")
    ev.add_argument("--judge", required=True, help="the judge model ('tiny' works)")
    ev.add_argument("--questions", required=True, help="a file of questions, one per line")
    ev.add_argument("--profile", default=None, help="the character's profile (for the judge)")
    ev.add_argument("--multi-turn", type=int, default=0, help="multi-turn interviews of N turns")
    ev.add_argument("--out", required=True, help="the folder for the tables")
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=_eval)
