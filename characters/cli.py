"""``simulacra character ...``: the commands of the Character-LLM pipeline.

Each command's work lives in its own module (``build``, ``importer``, ``train``, ``evaluate``),
imported only when the command runs, with typed options; they print nothing. Here the flags
become those options and the results lines on stdout; their errors reach ``simulacra``'s one
handler (a line on stderr, exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serving.config import ENGINE_NAMES, EngineConfig, engine_fields


def _build(args: argparse.Namespace) -> int:
    from characters.build import BuildOptions, run_build

    generator = EngineConfig(**engine_fields({**vars(args), "model": args.generator}))
    options = BuildOptions(
        profile=Path(args.profile),
        generator=generator,
        out=Path(args.out),
        scenes_per_chunk=args.scenes_per_chunk,
        prompts=args.prompts,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        seed=args.seed,
    )
    profile, summary = run_build(options)
    counts = summary["counts"]
    print(
        f"{profile.name}: {counts['parsed']} scenes and {counts['protective']} protective "
        f"experiences from {counts['raw_scenes']} raw scenes "
        f"({counts['dropped']} dropped, {summary['failed_generations']} failed generations) "
        f"-> {args.out}"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from characters.importer import import_data

    summary = import_data(args.path, args.out, name=args.name)
    counts = summary["counts"]
    who = summary["character"] or "unnamed character"
    print(
        f"imported {counts['records']} records for {who} ({counts['prompted']} prompted, "
        f"{counts['scenes']} scenes) from {len(summary['sources'])} file(s) into {args.out}"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from characters.train import train_adapter

    card = train_adapter(
        args.data,
        args.base,
        args.out,
        rank=args.rank,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    eval_loss = card["final_eval_loss"]
    shown = "n/a" if eval_loss is None else f"{eval_loss:.4f}"
    print(
        f"trained {args.out} on {card['data']['train']} records ({card['steps']} steps): "
        f"train loss {card['final_train_loss']:.4f}, eval loss {shown}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from characters.evaluate import EvalOptions, format_summary, run_eval

    options = EvalOptions(
        adapter=Path(args.adapter),
        base=args.base,
        judge=args.judge,
        questions=Path(args.questions),
        profile=None if args.profile is None else Path(args.profile),
        out=Path(args.out),
        multi_turn=args.multi_turn,
        seed=args.seed,
    )
    character, adapter, rows, summary = run_eval(options)
    print(f"{character} ({adapter}): {rows} judged rows -> {args.out}")
    print(format_summary(summary))
    return 0


def _engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINE_NAMES, default="hf")
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
