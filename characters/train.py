"""``simulacra character train``: a LoRA adapter trained on a data folder's ``prompted.jsonl``.

Each record is plain text, as the Character-LLM paper trains it: the prompt, then the output
(no chat template). Tokens are ``tok(prompt) + tok(output)``, truncated to ``max_length``; the
loss is on the output tokens only (the prompt's labels are ``-100``), the other characters'
turns included. Records are split 98 / 2 into train / eval with ``random.Random(seed)`` (at
least one eval record when there are two or more).

The loop is plain torch (no ``Trainer``): AdamW with weight decay 0.1, 4% linear warm-up then
linear decay to zero, right-padded batches, CUDA when available, a tqdm bar showing the loss and
the eval loss after every epoch. The adapter folder is a standard peft one (``adapter_config.json``
and ``adapter_model.safetensors``, never a pickle) plus ``card.json``; it is trained into a
temporary folder beside ``out_dir`` and renamed into place at the end.

:func:`check_adapter_base` refuses an adapter used with a base model it was not trained on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from characters.data import DataError, Prompted, read_prompted

PROMPTED_FILE = "prompted.jsonl"
CARD_FILE = "card.json"
ADAPTER_CONFIG = "adapter_config.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100  # the label of a token without loss
WEIGHT_DECAY = 0.1
WARMUP = 0.04
EVAL_SHARE = 0.02


class AdapterBaseError(ValueError):
    """An adapter used with a base model it was not trained on."""


@dataclass(frozen=True)
class HyperParameters:
    rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 8
    max_length: int = 2048
    weight_decay: float = WEIGHT_DECAY
    warmup: float = WARMUP
    target_modules: tuple[str, ...] = LORA_TARGETS


# -- examples ---------------------------------------------------------------------------------


def encode(tokenizer: Any, record: Prompted, max_length: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)``: the prompt's tokens then the output's, the prompt masked."""
    prompt = tokenizer(record["prompt"], add_special_tokens=True)["input_ids"]
    output = tokenizer(record["output"], add_special_tokens=False)["input_ids"]
    ids = (list(prompt) + list(output))[:max_length]
    labels = ([IGNORE] * len(prompt) + list(output))[:max_length]
    return ids, labels


def split_records(records: list[Any], seed: int) -> tuple[list[Any], list[Any]]:
    """98 / 2 at random with ``seed``; at least one eval record when there are two or more."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(EVAL_SHARE * len(records))) if len(records) >= 2 else 0
    return [records[i] for i in order[n_eval:]], [records[i] for i in order[:n_eval]]


def _batches(examples: list[tuple[list[int], list[int]]], size: int, pad_id: int) -> list[Any]:
    import torch

    out = []
    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (x, y) in enumerate(chunk):
            ids[row, : len(x)] = torch.tensor(x)
            labels[row, : len(y)] = torch.tensor(y)
            mask[row, : len(x)] = 1
        out.append((ids, mask, labels))
    return out


# -- the loop ---------------------------------------------------------------------------------


def lora_targets(model: Any) -> list[str]:
    """The attention and MLP projections of :data:`LORA_TARGETS` the model has."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise ValueError(f"the model has none of the projections {', '.join(LORA_TARGETS)}")
    return targets


def add_lora(model: Any, hp: HyperParameters) -> Any:
    """``model`` wrapped by peft with a fresh LoRA adapter ("default") on its projections."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=hp.rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=lora_targets(model),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a deprecated transformers API
        return get_peft_model(model, config)


def _batch_loss(model: Any, batch: Any, device: Any) -> tuple[Any, int]:
    """The mean loss over the batch's labelled tokens, and their number."""
    import torch.nn.functional as F

    ids, mask, labels = (t.to(device) for t in batch)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE
    )
    return loss, int((target != IGNORE).sum())


def evaluate_loss(model: Any, batches: list[Any], device: Any) -> float | None:
    """The token-weighted mean loss over ``batches`` (``None`` when there are none)."""
    import torch

    if not batches:
        return None
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            loss, n = _batch_loss(model, batch, device)
            total, tokens = total + float(loss) * n, tokens + n
    model.train()
    return total / max(tokens, 1)


def fit(
    model: Any,
    train: list[tuple[list[int], list[int]]],
    eval_: list[tuple[list[int], list[int]]],
    hp: HyperParameters,
    pad_id: int,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains the peft ``model``'s trainable weights in place.

    Returns:
        ``{epochs: [{epoch, train_loss, eval_loss}], steps, seconds}``.
    """
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(train) / hp.batch_size)
    total = steps_per_epoch * hp.epochs
    warmup = max(1, round(hp.warmup * total)) if total else 0
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)

    def schedule(step: int) -> float:  # 4% linear warm-up, then linear decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    eval_batches = _batches(eval_, hp.batch_size, pad_id)
    epochs: list[dict[str, Any]] = []
    model.train()
    start = time.perf_counter()
    with tqdm(total=total, desc="train", unit="step", disable=not progress) as bar:
        for epoch in range(1, hp.epochs + 1):
            order = list(train)
            rng.shuffle(order)
            losses = []
            for batch in _batches(order, hp.batch_size, pad_id):
                loss, _ = _batch_loss(model, batch, device)
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}")
            eval_loss = evaluate_loss(model, eval_batches, device)
            row = {
                "epoch": epoch,
                "train_loss": sum(losses) / len(losses) if losses else None,
                "eval_loss": eval_loss,
            }
            epochs.append(row)
            if eval_loss is not None:
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}", eval=f"{eval_loss:.4f}")
    model.eval()
    return {"epochs": epochs, "steps": total, "seconds": time.perf_counter() - start}


# -- the command ------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists; choose a new adapter folder")


def train_adapter(
    data_dir: str | os.PathLike[str],
    base: str,
    out_dir: str | os.PathLike[str],
    rank: int = 16,
    epochs: int = 3,
    lr: float = 2e-4,
    batch_size: int = 8,
    max_length: int = 2048,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains a LoRA adapter on ``data_dir/prompted.jsonl`` and writes it to ``out_dir``.

    Args:
        data_dir: a data folder (from ``build`` or ``import``).
        base: the base model: ``"tiny"``, a local folder or a hub id.
        out_dir: the adapter folder to create (must not exist, or be empty).
        rank: the LoRA rank (alpha is twice the rank).
        epochs, lr, batch_size, max_length, seed: as named; see the module's docstring.
        progress: show a tqdm bar.

    Returns:
        The card written to ``out_dir/card.json``.

    Raises:
        DataError: no ``prompted.jsonl``, or no record with an output token left.
        FileExistsError: ``out_dir`` exists and is not empty.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from serving.model_names import resolve_model

    data, out = Path(data_dir).expanduser(), Path(out_dir).expanduser()
    prompted = data / PROMPTED_FILE
    if not prompted.is_file():
        raise DataError(f"{data}: no {PROMPTED_FILE} (a data folder from build or import)")
    if rank < 1 or epochs < 1 or batch_size < 1 or max_length < 2 or lr <= 0:
        raise ValueError("rank, epochs and batch size must be >= 1, max length >= 2, lr > 0")
    _check_out_dir(out)
    records = read_prompted(prompted)
    hp = HyperParameters(
        rank=rank,
        lora_alpha=2 * rank,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
    )
    path, _ = resolve_model(base, {})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    train_records, eval_records = split_records(records, seed)
    train, eval_ = (
        [
            e
            for e in (encode(tokenizer, r, max_length) for r in part)
            if any(y != IGNORE for y in e[1])
        ]
        for part in (train_records, eval_records)
    )
    dropped = len(records) - len(train) - len(eval_)
    if not train:
        raise DataError(f"{prompted}: no training record keeps an output token within max length")

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model = model.to(device)
        model = add_lora(model, hp)
        result = fit(model, train, eval_, hp, pad_id, seed=seed, progress=progress)

    last = result["epochs"][-1]
    card: dict[str, Any] = {
        "base_model": {"name": base, "path": path},
        "data": {
            "path": str(prompted),
            "sha256": _sha256(prompted),
            "records": len(records),
            "train": len(train),
            "eval": len(eval_),
            "dropped": dropped,
        },
        "hyper_parameters": {
            **asdict(hp),
            "target_modules": lora_targets(model.get_base_model()),
            "schedule": "linear warm-up then linear decay",
            "optimizer": "AdamW",
            "device": device.type,
            "dtype": str(dtype).removeprefix("torch."),
        },
        "epochs": result["epochs"],
        "final_train_loss": last["train_loss"],
        "final_eval_loss": last["eval_loss"],
        "steps": result["steps"],
        "train_seconds": round(result["seconds"], 3),
        "seed": seed,
        "versions": _versions(),
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "README.md").unlink(missing_ok=True)  # peft's model-card stub
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=1), encoding="utf-8")
        tmp.chmod(0o755)
        _check_out_dir(out)
        with contextlib.suppress(FileNotFoundError):
            out.rmdir()  # an empty folder
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


# -- adapters and their base ------------------------------------------------------------------


def _same_model(name: str) -> set[str]:
    """The ways a configured model may be recorded: the name, and its folder when it is local."""
    from serving.tiny_model import TINY_MODEL_NAME, tiny_model_dir

    ways = {name}
    if name == TINY_MODEL_NAME:
        ways.add(os.path.realpath(tiny_model_dir()))
    elif Path(name).expanduser().is_dir():
        ways.add(os.path.realpath(Path(name).expanduser()))
    return ways


def check_adapter_base(adapter_dir: str | os.PathLike[str], base: str) -> None:
    """Raises :class:`AdapterBaseError` unless the adapter was trained on ``base``.

    The adapter's records of its base (``card.json``'s name and resolved path, peft's
    ``adapter_config.json`` ``base_model_name_or_path``) must share a name or a folder with
    ``base`` (``"tiny"``, a local folder or a hub id).
    """
    folder = Path(adapter_dir).expanduser()
    recorded: list[str] = []
    card_path, config_path = folder / CARD_FILE, folder / ADAPTER_CONFIG
    try:
        if card_path.is_file():
            card = json.loads(card_path.read_text(encoding="utf-8"))
            base_model = card.get("base_model") or {}
            recorded += [v for v in (base_model.get("name"), base_model.get("path")) if v]
        if config_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if config.get("base_model_name_or_path"):
                recorded.append(config["base_model_name_or_path"])
    except (OSError, ValueError, AttributeError) as exc:
        raise AdapterBaseError(f"adapter {folder}: cannot read its base model ({exc})") from None
    if not recorded:
        raise AdapterBaseError(
            f"adapter {folder}: no {CARD_FILE} or {ADAPTER_CONFIG} naming its base model"
        )
    known: set[str] = set()
    for name in recorded:
        known |= _same_model(name)
    if not known & _same_model(base):
        raise AdapterBaseError(
            f"adapter {folder} was trained on {recorded[0]!r}"
            + (f" ({recorded[1]})" if len(recorded) > 1 and recorded[1] != recorded[0] else "")
            + f", not on {base!r}"
        )
