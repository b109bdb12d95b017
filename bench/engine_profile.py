"""Where an LLM engine's time goes: py-spy samples of the engine thread, sorted into categories.

A sampling profiler (py-spy, installed with ray) records the stacks of the process; the samples
of the engine's decoding thread are put into one category each by the innermost frame that
names one: the model's linear layers (the real work), attention, the KV cache's concatenation
(transformers' ``DynamicLayer.update``), other model operations (norms, rotary embedding,
activations), grammar masks, sampling, and the rest (scheduling, Python). Idle samples (the
thread waiting for work) are not recorded, so shares are of the time the engine was busy.

Works on any engine whose decoding thread has a frame named in ``ENGINE_FRAMES`` (this
project's engine loop, and the static-batch loop it replaced), so before and after compare.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ENGINE_FRAMES = ("._serve (", "._decode_batch (")  # the engine thread's outermost own frame

# (category, substrings of a frame "function (file:line)"), innermost match wins
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kv concat", ("cache_utils.py",)),
    ("kv writes", ("_store_kv (",)),
    ("attention", ("_attend (", "scaled_dot_product", "sdpa_attention", "eager_attention")),
    ("linear (matrix products)", ("modules/linear.py", "GatheredLoRALinear", "multi_lora.py")),
    ("grammar", ("_mask_logits", "fill_next_token_bitmask", "accept_token", "xgrammar")),
    ("sampling", ("sample_token",)),
    ("tokenizer", ("tokenization", "tokenizers", "_encode (", "decode (")),
    ("other model ops", ("modeling_llama.py", "activation", "flat_forward.py", "normalization")),
)
MODEL_WORK = ("linear (matrix products)", "attention")


@dataclass(frozen=True)
class Profile:
    """Samples of the engine thread per category."""

    samples: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def share(self, category: str) -> float:
        return self.samples.get(category, 0) / self.total if self.total else 0.0

    @property
    def model_work_share(self) -> float:
        """Linear layers plus attention: the matrix products of the model."""
        return sum(self.share(c) for c in MODEL_WORK)


def categorise(stack: list[str]) -> str:
    """The category of one sample's stack (outermost frame first)."""
    for frame in reversed(stack):
        for category, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return category
    return "scheduling / python"


def parse_raw(text: str) -> Profile:
    """py-spy's ``--format raw`` output (``frame;frame;... count`` per line) -> a profile."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        stack = stack_text.split(";")
        if not any(any(e in f for e in ENGINE_FRAMES) for f in stack):
            continue
        counts[categorise(stack)] += int(count)
    return Profile(dict(counts))


class Sampler:
    """Runs py-spy on this process between :meth:`start` and :meth:`stop`."""

    def __init__(self, rate: int = 50) -> None:
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = Path(tempfile.mkstemp(prefix="simulacra-pyspy-", suffix=".txt")[1])

    def start(self, pid: int | None = None) -> None:
        self._proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"), "record",
                "--pid", str(pid or os.getpid()), "--format", "raw", "--rate", str(self.rate),
                "--output", str(self._out), "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)  # py-spy attaches before the work starts

    def stop(self) -> Profile:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        self._proc.wait(timeout=60)
        text = self._out.read_text() if self._out.exists() else ""
        self._out.unlink(missing_ok=True)
        return parse_raw(text)
