"""A tiny real Llama model with LoRA adapters, built locally for tests and stack checks.

It has random weights, so the text it produces is meaningless; what matters is that it is a real
``transformers`` model with a real byte-level BPE tokenizer, a chat template and real ``peft``
LoRA adapters, so that every code path of the serving stack (batching, mixed adapters, KV cache,
constrained JSON) runs for real in a few seconds on a CPU, with no download.

What a model name means (``tiny`` among them) is :mod:`serving.model_names`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from serving.adapters import ADAPTER_CONFIG_FILE

TINY_MODEL_NAME = "tiny"
TINY_MODEL_VERSION = "v1"
DEFAULT_ADAPTERS = ("alice", "bob")
VOCAB_SIZE = 1000
ADAPTERS_DIR = "adapters"

BOS, EOS, PAD, EOT = "<s>", "</s>", "<pad>", "<|eot|>"
ROLE_START = "<|start|>"
SPECIAL_TOKENS = (BOS, EOS, PAD, EOT, ROLE_START)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start|>{{ message['role'] }}\n{{ message['content'] }}<|eot|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}"
)

README_TEXT = """# Tiny test model (simulacra)

A Llama-architecture model with **random weights**, a byte-level BPE tokenizer trained on
generated sentences, and LoRA adapters with random weights (`adapters/<name>/`).

The text it produces is meaningless. It exists so that tests and stack checks can run the real
serving code paths (batching, mixed LoRA adapters, KV cache, constrained JSON) on a CPU in
seconds, with no download. Built by `serving.tiny_model.build_tiny_model` (seed {seed}).
"""

_WORD_TEXT = (
    "the a an agent town cafe park library house morning evening noon night plan day "
    "talk walk read write paint cook eat sleep work study meet friend neighbor market "
    "alice bob carol dave eve frank grace heidi ivan judy coffee tea bread garden "
    "river bridge school office shop street happy calm busy quiet tired curious "
    "remember reflect observe decide ask answer tell think feel want need like "
    "is was will would could should and or but because then after before while with "
    "to of in on at for from by about into over under near far here there today"
)
_WORDS = _WORD_TEXT.split()
_BUILD_LOCK = threading.Lock()

_KEYS = ("importance", "entries", "start", "activity", "name", "reason", "score", "place")


def _sentence(rng: random.Random) -> str:
    """One English-ish line, sometimes with numbers, times or a JSON object."""
    kind = rng.random()
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
    if kind < 0.5:
        return words.capitalize() + rng.choice(".!?")
    if kind < 0.7:
        hour, minute = rng.randint(0, 23), rng.choice((0, 15, 30, 45, rng.randint(0, 59)))
        return f"At {hour:02d}:{minute:02d} {words}, {rng.randint(0, 9999)} times."
    value: dict[str, object] = {}
    for key in rng.sample(_KEYS, rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.4:
            value[key] = rng.randint(0, 100)
        elif roll < 0.8:
            value[key] = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
        else:
            value[key] = [{"start": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"}]
    separators = rng.choice(((",", ":"), (", ", ": ")))
    return json.dumps(value, separators=separators)


def _corpus(seed: int, n: int = 4000) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(n):
        yield _sentence(rng)


def _build_tokenizer(seed: int):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[EOT, ROLE_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def _build_model(tokenizer, seed: int):  # -> LlamaForCausalLM
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    eos_ids = [tokenizer.convert_tokens_to_ids(EOS), tokenizer.convert_tokens_to_ids(EOT)]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.2,  # wide logits: greedy choices far from ties
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)  # float32, torch's default
    model.generation_config.eos_token_id = eos_ids
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.eval()
    return model


def adapter_seed(seed: int, name: str) -> int:
    """The seed of adapter ``name``'s weights: distinct per name, fixed per model seed."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def _save_adapter(model, name: str, seed: int, out_dir: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"],
        init_lora_weights=False,  # random A and B: the adapter really changes the output
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a deprecated transformers API
        torch.manual_seed(adapter_seed(seed, name))
        peft_model = get_peft_model(model, config, adapter_name=name)
        # peft writes an adapter not named "default" under <dir>/<name>/
        peft_model.save_pretrained(str(out_dir / ADAPTERS_DIR), selected_adapters=[name])
    (out_dir / ADAPTERS_DIR / "README.md").unlink(missing_ok=True)  # peft's model-card stub
    peft_model.unload()  # gives back the untouched base model for the next adapter


def build_tiny_model(
    out_dir: str | Path, seed: int = 0, adapters: Sequence[str] = DEFAULT_ADAPTERS
) -> Path:
    """Builds the tiny model, its tokenizer and LoRA adapters into ``out_dir``.

    Everything is derived from ``seed``: building twice gives identical weights and vocabulary.
    The folder is built next to ``out_dir`` and renamed into place, so concurrent builders never
    see a half-written folder; if ``out_dir`` appears meanwhile, it is kept and ours discarded.

    Args:
        out_dir: the folder to create.
        seed: the seed of the corpus, the weights and (with the name) each adapter.
        adapters: names of the LoRA adapters to write under ``out_dir/adapters/<name>/``.

    Returns:
        ``out_dir`` as a :class:`Path`.
    """
    out_dir = Path(out_dir).expanduser()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        with _BUILD_LOCK:  # weights come from torch's global RNG: one build at a time
            tokenizer = _build_tokenizer(seed)
            model = _build_model(tokenizer, seed)
            tokenizer.save_pretrained(str(tmp))
            model.save_pretrained(str(tmp))
            for name in adapters:
                _save_adapter(model, name, seed, tmp)
        (tmp / "TINY_MODEL.md").write_text(README_TEXT.format(seed=seed))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the user's processes
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not out_dir.is_dir():
                raise  # not a lost race: a real failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def cache_dir() -> Path:
    """Where built models are kept: ``$SIMULACRA_CACHE`` or ``~/.cache/simulacra``."""
    return Path(os.environ.get("SIMULACRA_CACHE") or "~/.cache/simulacra").expanduser()


def tiny_model_dir(seed: int = 0) -> Path:
    """The cached folder of the tiny model with ``seed``."""
    return cache_dir() / f"tiny-model-{TINY_MODEL_VERSION}-seed{seed}"


def tiny_adapters(model_dir: Path) -> dict[str, str]:
    """The adapters stored with a tiny model: ``{name: folder}``."""
    root = model_dir / ADAPTERS_DIR
    if not root.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(root.iterdir()) if (p / ADAPTER_CONFIG_FILE).is_file()}
