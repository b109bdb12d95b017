"""The forward pass of a Llama-family model over the new tokens of many sequences at once.

Continuous batching needs a forward pass whose rows are sequences in different states: some
decode one token, some prefill a chunk of their prompt, each at its own position against its
own KV cache. transformers' own forward takes a rectangular, left-padded batch and a cache that
it concatenates on every step; here the new tokens of every sequence are laid end to end
(``[1, T, hidden]``, no padding), so the linear layers (the real work) run once over all of
them, and only attention is computed per sequence, against that sequence's own KV.

Each sequence's KV lives in one tensor preallocated to the sequence's capacity (its prompt plus
its token budget), written in place and never re-concatenated: :class:`SequenceKV`. Freeing a
sequence is dropping that tensor.

The model's own modules do everything but attention (embeddings, norms, rotary embedding, the
q/k/v/o projections, the MLP, the head), so LoRA wrappers on the projections
(:mod:`serving.engines.multi_lora`) apply unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


class UnsupportedModelError(ValueError):
    """A model whose architecture this forward pass cannot run."""


@dataclass(frozen=True)
class KVSpec:
    """The shape of one token's KV: per layer, keys and values of every KV head."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device

    @property
    def bytes_per_token(self) -> int:
        element = torch.empty((), dtype=self.dtype).element_size()
        return self.layers * 2 * self.kv_heads * self.head_dim * element


class SequenceKV:
    """One sequence's KV cache: ``[layers, 2, kv_heads, capacity, head_dim]``, filled in place.

    Args:
        spec: the model's KV shape.
        capacity: most tokens the sequence will hold (prompt plus token budget).
    """

    def __init__(self, spec: KVSpec, capacity: int) -> None:
        self.capacity = capacity
        self.length = 0
        self.kv = torch.empty(
            (spec.layers, 2, spec.kv_heads, capacity, spec.head_dim),
            dtype=spec.dtype,
            device=spec.device,
        )

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def write_prefix(self, kv: torch.Tensor, start: int) -> None:
        """Copies ``kv`` (``[layers, 2, kv_heads, n, head_dim]``) in at position ``start``."""
        n = kv.shape[3]
        self.kv[:, :, :, start : start + n].copy_(kv)
        self.length = max(self.length, start + n)

    def prefix(self, length: int) -> torch.Tensor:
        """A copy of the first ``length`` positions (for the prefix cache)."""
        return self.kv[:, :, :, :length].clone()


@dataclass
class Segment:
    """New tokens of one sequence for the next forward pass (at ``kv.length`` onwards)."""

    kv: SequenceKV
    tokens: Sequence[int]
    want_logits: bool = True  # a prefill chunk that does not end the prompt needs none


def check_supported(config: Any) -> None:
    """Raises :class:`UnsupportedModelError` unless the flat forward can run this model."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"the hf engine runs Llama-family models ({', '.join(SUPPORTED_MODEL_TYPES)}); "
            f"this model's type is {model_type!r} (use --engine vllm or --engine openai)"
        )
    if getattr(config, "use_sliding_window", False) or (
        model_type == "mistral" and getattr(config, "sliding_window", None)
    ):
        raise UnsupportedModelError(
            f"sliding-window attention ({model_type}) is not supported by the hf engine"
        )


class FlatForward:
    """Runs a loaded Llama-family ``*ForCausalLM`` over :class:`Segment` lists.

    Args:
        model: the loaded model (eval mode, on its device); its modules are used as they are.
    """

    def __init__(self, model: Any) -> None:
        config = model.config
        check_supported(config)
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self._rotate = apply_rotary_pos_emb
        inner = model.model
        self._embed = inner.embed_tokens
        self._layers = list(inner.layers)
        self._norm = inner.norm
        self._rotary = inner.rotary_emb
        self._head = model.lm_head
        self.heads = int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        weight = self._head.weight
        self.spec = KVSpec(len(self._layers), kv_heads, head_dim, weight.dtype, weight.device)
        self.max_len = int(getattr(config, "max_position_embeddings", 2048))

    def new_kv(self, capacity: int) -> SequenceKV:
        return SequenceKV(self.spec, capacity)

    def __call__(self, segments: Sequence[Segment]) -> torch.Tensor:
        """Runs the segments' tokens; returns the logits after the last token of every segment
        that wants them (``[n, vocab]``, in segment order). Advances each segment's KV."""
        device = self.spec.device
        lengths = [len(s.tokens) for s in segments]
        pasts = [s.kv.length for s in segments]
        for s, past, n in zip(segments, pasts, lengths, strict=True):
            if n < 1 or past + n > s.kv.capacity:
                raise ValueError(f"segment of {n} tokens at {past} exceeds its {s.kv.capacity}")
        total = sum(lengths)
        ids = torch.tensor([t for s in segments for t in s.tokens], device=device)
        positions = torch.cat(
            [torch.arange(p, p + n, device=device) for p, n in zip(pasts, lengths, strict=True)]
        )
        h = self._embed(ids).unsqueeze(0)  # [1, T, hidden]
        cos, sin = self._rotary(h, positions.unsqueeze(0))
        starts = [0]
        for n in lengths[:-1]:
            starts.append(starts[-1] + n)
        masks = [self._mask(p, n) for p, n in zip(pasts, lengths, strict=True)]
        d = self.spec.head_dim
        for index, layer in enumerate(self._layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(1, total, -1, d).transpose(1, 2)
            k = attn.k_proj(x).view(1, total, -1, d).transpose(1, 2)
            v = attn.v_proj(x).view(1, total, -1, d).transpose(1, 2)
            q, k = self._rotate(q, k, cos, sin)
            outputs = []
            rows = zip(segments, starts, pasts, lengths, masks, strict=True)
            for s, start, past, n, mask in rows:
                cache = s.kv.kv[index]  # [2, kv_heads, capacity, head_dim]
                _store_kv(cache, k, v, start, past, n)
                outputs.append(_attend(cache, q, start, past, n, mask))
            o = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            h = h + attn.o_proj(o.transpose(1, 2).reshape(1, total, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        for s, n in zip(segments, lengths, strict=True):
            s.kv.length += n
        last = [
            start + n - 1
            for s, start, n in zip(segments, starts, lengths, strict=True)
            if s.want_logits
        ]
        if not last:
            return h.new_empty((0, self._head.out_features))
        picked = h[0].index_select(0, torch.tensor(last, device=device))
        return self._head(self._norm(picked))

    def _mask(self, past: int, n: int) -> torch.Tensor | bool | None:
        """Attention of ``n`` new tokens at ``past``: none for one token, causal for a fresh
        prompt, else a bottom-right-aligned causal mask (True: may attend)."""
        if n == 1:
            return None
        if past == 0:
            return True
        rows = torch.arange(n, device=self.spec.device).unsqueeze(1)
        cols = torch.arange(past + n, device=self.spec.device).unsqueeze(0)
        return cols <= rows + past


def _store_kv(
    cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, past: int, n: int
) -> None:
    """Writes a sequence's new keys and values (``start:start+n`` of the pass) at ``past``."""
    cache[0, :, past : past + n] = k[0, :, start : start + n]
    cache[1, :, past : past + n] = v[0, :, start : start + n]


def _attend(
    cache: torch.Tensor,
    q: torch.Tensor,
    start: int,
    past: int,
    n: int,
    mask: torch.Tensor | bool | None,
) -> torch.Tensor:
    """Attention of a sequence's ``n`` new queries over its ``past + n`` cached positions."""
    return F.scaled_dot_product_attention(
        q[:, :, start : start + n],
        cache[0, :, : past + n].unsqueeze(0),
        cache[1, :, : past + n].unsqueeze(0),
        attn_mask=mask if isinstance(mask, torch.Tensor) else None,
        is_causal=mask is True,
        enable_gqa=True,
    )
