"""Benchmark of LoRA training (characters/train.py): optimiser steps per second.

Prints a table and writes bench/results/character_train.json.

- ``--model-size tiny`` (the default, CPU): the tiny model through ``train_adapter`` end to end
  (64 records, batch 8, 2 epochs by default); steps/s and output tokens/s of the loop itself.
- ``--model-size 1b --device cuda``: a random-init Llama of about 1B parameters (hidden 2048,
  16 layers, 16 heads, intermediate 5504, the tiny model's tokenizer) in bfloat16 with a rank-16
  LoRA on every projection, trained by the same loop (``characters.train.fit``). Runs only when
  asked, and needs a GPU.

Usage: .venv/bin/python bench/bench_character_train.py [--records 64] [--batch-size 8]
       [--epochs 2] [--model-size tiny|1b] [--device cpu|cuda] [--max-length 512]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from characters.data import Prompted, write_prompted
from characters.examples import format_output, prompt_for
from serving.tiny_model import build_tiny_model

RESULTS = Path(__file__).parent / "results"
WORDS = ("the town river market friend letter music philosophy night question answer").split()  # noqa: SIM905


def _records(n: int, seed: int = 0) -> list[Prompted]:
    """Scenes of 4 to 8 turns of 8 to 30 words, as training examples."""
    rng = random.Random(seed)
    out: list[Prompted] = []
    for i in range(n):
        turns = [
            {
                "role": ("Socrates", "Man")[t % 2],
                "action": "speaking",
                "content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))),
            }
            for t in range(rng.randint(4, 8))
        ]
        out.append(
            {
                "prompt": prompt_for("Socrates", "the agora", f"Socrates talks, scene {i}."),
                "output": format_output(turns),  # type: ignore[arg-type]
                "source": f"bench {i}",
            }
        )
    return out


def _tiny(args: argparse.Namespace) -> dict[str, Any]:
    import os

    from characters.train import train_adapter

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model")
        write_prompted(root / "data" / "prompted.jsonl", _records(args.records))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        card = train_adapter(
            root / "data", str(model_dir), root / "adapter", rank=16, epochs=args.epochs,
            lr=2e-4, batch_size=args.batch_size, max_length=args.max_length, progress=False,
        )  # fmt: skip
        wall = time.perf_counter() - start
        from transformers import AutoTokenizer

        from characters.train import encode, split_records

        tok = AutoTokenizer.from_pretrained(str(model_dir))
        recs, _ = split_records(_records(args.records), 0)  # the train part, as trained
        tokens = sum(len(encode(tok, r, args.max_length)[0]) for r in recs)
    steps, seconds = card["steps"], card["train_seconds"]
    return {
        "model": "tiny (202k parameters)",
        "device": "cpu",
        "records": card["data"]["records"],
        "train_records": card["data"]["train"],
        "steps": steps,
        "loop_seconds": seconds,
        "steps_per_s": steps / seconds,
        "tokens_per_s": tokens * args.epochs / seconds,
        "train_adapter_wall_s": wall,
        "final_train_loss": card["final_train_loss"],
    }


def _one_b(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from characters.train import HyperParameters, add_lora, encode, fit, split_records

    with tempfile.TemporaryDirectory() as tmp:
        tok = AutoTokenizer.from_pretrained(str(build_tiny_model(Path(tmp) / "model")))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=2048,
        intermediate_size=5504,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=16,
        max_position_embeddings=4096,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(args.device):
        model: Any = LlamaForCausalLM(config)
        model = model.to(torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    hp = HyperParameters(epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length)
    model = add_lora(model, hp)
    train, eval_ = split_records(_records(args.records), 0)
    train_ex = [encode(tok, r, args.max_length) for r in train]
    eval_ex = [encode(tok, r, args.max_length) for r in eval_]
    fit(model, train_ex[: args.batch_size], [], HyperParameters(epochs=1), tok.pad_token_id,
        progress=False)  # fmt: skip  # warm-up
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = fit(model, train_ex, eval_ex, hp, tok.pad_token_id, progress=False)
    tokens = sum(len(ids) for ids, _ in train_ex) * args.epochs
    row = {
        "model": f"random-init Llama ({parameters / 1e9:.2f}B parameters), bfloat16",
        "device": args.device,
        "records": args.records,
        "train_records": len(train_ex),
        "steps": result["steps"],
        "loop_seconds": result["seconds"],
        "steps_per_s": result["steps"] / result["seconds"],
        "tokens_per_s": tokens / result["seconds"],
        "final_train_loss": result["epochs"][-1]["train_loss"],
    }
    if args.device == "cuda":
        row["gpu"] = torch.cuda.get_device_name()
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--model-size", choices=["tiny", "1b"], default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.model_size == "tiny" and args.device != "cpu":
        parser.error("the tiny model is benchmarked on the CPU; use --model-size 1b for cuda")

    row = _tiny(args) if args.model_size == "tiny" else _one_b(args)
    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "settings": vars(args),
        "result": row,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "character_train.json" if args.model_size == "tiny" else "character_train_1b.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))

    print(f"\nLoRA training, {row['model']} on {row['device']}, batch {args.batch_size}")
    print(f"{'records':>8} {'steps':>6} {'seconds':>8} {'steps/s':>8} {'tokens/s':>9} {'loss':>7}")
    print(
        f"{row['train_records']:>8} {row['steps']:>6} {row['loop_seconds']:>8.2f}"
        f" {row['steps_per_s']:>8.2f} {row['tokens_per_s']:>9.0f} {row['final_train_loss']:>7.3f}"
    )
    print(f"\nwritten to {RESULTS / name}")


if __name__ == "__main__":
    main()
