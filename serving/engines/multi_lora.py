"""Many LoRA adapters in one forward pass, gathered per row (punica / S-LoRA "BGMV" style).

peft's mixed-batch path (``adapter_names=[...]``) loops over the adapters in every LoRA layer and
runs one sub-batch per adapter, so a batch mixing four adapters costs about four sub-batches. Here
every targeted ``nn.Linear`` is replaced by a :class:`GatheredLoRALinear` that holds all adapters'
matrices stacked (index 0: zeros, the base model) and computes each row's LoRA term with one
batched matmul over matrices gathered by the row's adapter index, however many distinct adapters
the batch has. When every row has the same adapter its matrices are used directly (no gather);
when every row is the base model the LoRA term is skipped.

Adapters are read from peft's folder format (``adapter_config.json`` and
``adapter_model.safetensors``), never from pickles; peft itself is not used.

Usage::

    lora = attach_lora_adapters(model, {"alice": "/path/alice", "bob": "/path/bob"})
    with lora.selected(["alice", None, "bob"]):  # one entry per row; None is the base model
        out = model(input_ids=...)
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from serving.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE

CONFIG_FILE = ADAPTER_CONFIG_FILE
WEIGHTS_FILE = ADAPTER_WEIGHTS_FILE
_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<kind>[AB])(?:\.[^.]+)?\.weight$"
)


class AdapterLoadError(ValueError):
    """An adapter folder that cannot be applied to the model; names the adapter and the module."""


@dataclass(frozen=True)
class _Selection:
    """The adapters of the rows of the next forward passes."""

    uniform: int | None  # the index every row uses, or None when rows differ
    indices: torch.Tensor | None  # [batch] adapter indices on the model's device, when mixed
    active: frozenset[int]  # the distinct indices in the batch
    # flat token mode (sequences laid end to end): (adapter index, token positions) per adapter
    groups: tuple[tuple[int, torch.Tensor], ...] | None = None


_BASE_SELECTION = _Selection(uniform=0, indices=None, active=frozenset({0}))


class AdapterSelection:
    """Which adapter each row of the batch uses; shared by every :class:`GatheredLoRALinear`.

    The selection is per thread, so batches decoded in different threads do not see each other's.
    With nothing selected, every row is the base model.
    """

    def __init__(self, names: Sequence[str], device: torch.device) -> None:
        self.names = tuple(names)  # adapter i + 1 is names[i]; index 0 is the base model
        self._index = {name: i + 1 for i, name in enumerate(self.names)}
        self._device = device
        self._local = threading.local()

    @property
    def current(self) -> _Selection:
        return getattr(self._local, "selection", _BASE_SELECTION)

    def index(self, name: str | None) -> int:
        """The stacked index of adapter ``name`` (``None``: the base model, 0)."""
        if name is None:
            return 0
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(
                f"unknown adapter {name!r}; loaded: {', '.join(self.names) or 'none'}"
            ) from None

    def select(self, names: Sequence[str | None]) -> None:
        """Sets the rows' adapters, one entry per row of the batch (``None``: the base model)."""
        ids = [self.index(name) for name in names]
        active = frozenset(ids)
        if len(active) <= 1:
            self._local.selection = _Selection(next(iter(active), 0), None, active)
        else:
            tensor = torch.tensor(ids, dtype=torch.long, device=self._device)
            self._local.selection = _Selection(None, tensor, active)

    def select_segments(self, names: Sequence[str | None], lengths: Sequence[int]) -> None:
        """Sets the adapters of sequences laid end to end in one row (the flat forward pass):
        ``names[i]`` for the ``lengths[i]`` tokens of sequence ``i``."""
        ids = [self.index(name) for name in names]
        active = frozenset(ids)
        if len(active) <= 1:
            self._local.selection = _Selection(next(iter(active), 0), None, active)
            return
        positions: dict[int, list[int]] = {}
        start = 0
        for index, n in zip(ids, lengths, strict=True):
            if index:
                positions.setdefault(index, []).extend(range(start, start + n))
            start += n
        groups = tuple(
            (index, torch.tensor(pos, dtype=torch.long, device=self._device))
            for index, pos in sorted(positions.items())
        )
        self._local.selection = _Selection(None, None, active, groups)

    def clear(self) -> None:
        """Back to the base model for every row."""
        self._local.__dict__.pop("selection", None)

    @contextmanager
    def selected(self, names: Sequence[str | None]) -> Iterator[AdapterSelection]:
        """:meth:`select` for the duration of the block, then :meth:`clear`."""
        self.select(names)
        try:
            yield self
        finally:
            self.clear()


class GatheredLoRALinear(nn.Module):
    """``base(x) + lora(x)`` with each row's LoRA matrices picked by the shared selection.

    Args:
        base: the model's linear layer, kept as is.
        lora_a: ``[n + 1, in, r]``: the adapters' A transposed; index 0 (the base model) zeros.
        lora_b: ``[n + 1, r, out]``: the adapters' B transposed, scaling folded in; index 0 zeros.
        targeted: the indices of the adapters that change this layer (others are zeros).
        selection: the rows' adapters, set before each forward.
    """

    lora_a: torch.Tensor
    lora_b: torch.Tensor

    def __init__(
        self,
        base: nn.Linear,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        targeted: frozenset[int],
        selection: AdapterSelection,
    ) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("lora_a", lora_a, persistent=False)
        self.register_buffer("lora_b", lora_b, persistent=False)
        self.targeted = targeted
        self.selection = selection

    # what code reading a projection's attributes expects of an nn.Linear
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        sel = self.selection.current
        if self.targeted.isdisjoint(sel.active):
            return y  # only base rows, or adapters that leave this layer alone
        if sel.uniform is not None:
            a, b = self.lora_a[sel.uniform], self.lora_b[sel.uniform]
            return y + (x.to(a.dtype) @ a @ b).to(y.dtype)
        if sel.groups is not None:  # flat tokens: one matmul pair per adapter present
            flat_x = x.reshape(-1, x.shape[-1])
            flat_y = y.reshape(-1, y.shape[-1])
            for index, positions in sel.groups:
                if index in self.targeted:
                    a, b = self.lora_a[index], self.lora_b[index]
                    delta = flat_x.index_select(0, positions).to(a.dtype) @ a @ b
                    flat_y.index_add_(0, positions, delta.to(y.dtype))
            return y
        assert sel.indices is not None
        rows = sel.indices.shape[0]
        if x.dim() < 2 or x.shape[0] != rows:
            raise ValueError(
                f"input of shape {tuple(x.shape)} does not have the {rows} rows of the selection"
            )
        a = self.lora_a.index_select(0, sel.indices)  # [rows, in, r]
        b = self.lora_b.index_select(0, sel.indices)  # [rows, r, out]
        x3 = x.reshape(rows, -1, x.shape[-1]).to(a.dtype)
        delta = torch.bmm(torch.bmm(x3, a), b)
        return y + delta.reshape(y.shape).to(y.dtype)

    def extra_repr(self) -> str:
        n, _, r = self.lora_a.shape
        return f"adapters={n - 1}, r_max={r}, targeted={sorted(self.targeted)}"


@dataclass
class _AdapterWeights:
    name: str
    config: dict[str, Any]
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]]  # module -> (A, B, scaling)


def _pattern_value(pattern: Mapping[str, Any], module: str, default: Any) -> Any:
    """peft's ``rank_pattern``/``alpha_pattern`` lookup: a key matches a module name's suffix."""
    for key, value in pattern.items():
        if re.fullmatch(rf"(.*\.)?({key})", module):
            return value
    return default


def _target_matches(target: str, module: str) -> bool:
    return module == target or module.endswith("." + target)


def _read_adapter(name: str, folder: str | Path) -> _AdapterWeights:
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file():
        raise AdapterLoadError(f"adapter {name!r}: no {CONFIG_FILE} in {str(folder)!r}")
    if not weights_path.is_file():
        raise AdapterLoadError(
            f"adapter {name!r}: no {WEIGHTS_FILE} in {str(folder)!r} (only safetensors is read)"
        )
    config = json.loads(config_path.read_text())
    unsupported = [
        (config.get("peft_type", "LORA") != "LORA", f"peft_type {config.get('peft_type')!r}"),
        (bool(config.get("use_dora")), "DoRA"),
        (bool(config.get("lora_bias")), "lora_bias"),
        (config.get("bias", "none") != "none", f"bias {config.get('bias')!r}"),
        (bool(config.get("modules_to_save")), "modules_to_save"),
        (bool(config.get("fan_in_fan_out")), "fan_in_fan_out"),
        (bool(config.get("trainable_token_indices")), "trainable_token_indices"),
    ]
    for bad, what in unsupported:
        if bad:
            raise AdapterLoadError(f"adapter {name!r}: {what} is not supported")
    tensors = load_file(str(weights_path))
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterLoadError(f"adapter {name!r}: unsupported weight {key!r}")
        halves.setdefault(match["module"], {})[match["kind"]] = tensor
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for module, half in halves.items():
        if set(half) != {"A", "B"}:
            raise AdapterLoadError(f"adapter {name!r}, module {module!r}: lora_A or lora_B missing")
        a, b = half["A"], half["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise AdapterLoadError(
                f"adapter {name!r}, module {module!r}: lora_A {tuple(a.shape)} and "
                f"lora_B {tuple(b.shape)} do not make a rank-r pair"
            )
        r = int(_pattern_value(config.get("rank_pattern") or {}, module, config.get("r", 8)))
        if a.shape[0] != r:
            raise AdapterLoadError(
                f"adapter {name!r}, module {module!r}: rank {a.shape[0]} in the weights, "
                f"{r} in {CONFIG_FILE}"
            )
        alpha = float(
            _pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", 8))
        )
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        pairs[module] = (a, b, scaling)
    if not pairs:
        raise AdapterLoadError(f"adapter {name!r}: no LoRA weights in {str(weights_path)!r}")
    return _AdapterWeights(name, config, pairs)


def _check_against_model(adapter: _AdapterWeights, linears: Mapping[str, Any]) -> None:
    """Raises unless every module the adapter targets is a linear layer its matrices fit."""
    for module, (a, b, _) in adapter.pairs.items():
        layer = linears.get(module)
        if layer is None:
            raise AdapterLoadError(
                f"adapter {adapter.name!r}: module {module!r} does not exist in the model"
            )
        if not isinstance(layer, nn.Linear):
            raise AdapterLoadError(
                f"adapter {adapter.name!r}: module {module!r} is a {type(layer).__name__}, "
                "only nn.Linear layers are supported"
            )
        if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
            raise AdapterLoadError(
                f"adapter {adapter.name!r}, module {module!r}: lora_A {tuple(a.shape)} and "
                f"lora_B {tuple(b.shape)} do not fit a Linear({layer.in_features}, "
                f"{layer.out_features})"
            )
    targets = adapter.config.get("target_modules")
    if isinstance(targets, list):
        for target in targets:
            if not any(_target_matches(target, module) for module in linears):
                raise AdapterLoadError(
                    f"adapter {adapter.name!r}: target module {target!r} does not exist "
                    "in the model"
                )


def attach_lora_adapters(model: nn.Module, adapters: Mapping[str, str | Path]) -> AdapterSelection:
    """Loads peft adapter folders and wraps every targeted linear layer of ``model`` in place.

    Every adapter is read and checked before the model is changed, so a bad adapter leaves the
    model as it was.

    Args:
        model: the loaded base model, already on its device and in its dtype.
        adapters: ``{name: folder}``; index ``i + 1`` is the ``i``-th name in sorted order.

    Returns:
        The selection to set before each forward pass.

    Raises:
        AdapterLoadError: a folder that is not a LoRA adapter, a module the model lacks, or
            matrices that do not fit the module; the message names the adapter and the module.
    """
    names = sorted(adapters)
    loaded = [_read_adapter(name, adapters[name]) for name in names]
    modules = dict(model.named_modules())
    for adapter in loaded:
        _check_against_model(adapter, modules)
    targeted_modules = sorted({m for adapter in loaded for m in adapter.pairs})
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    selection = AdapterSelection(names, device)
    for module in targeted_modules:
        layer = modules[module]
        assert isinstance(layer, nn.Linear)
        weight = layer.weight
        r_max = max(
            adapter.pairs[module][0].shape[0] for adapter in loaded if module in adapter.pairs
        )
        n = len(loaded) + 1
        lora_a = torch.zeros(n, layer.in_features, r_max, dtype=torch.float32)
        lora_b = torch.zeros(n, r_max, layer.out_features, dtype=torch.float32)
        targeted: set[int] = set()
        for i, adapter in enumerate(loaded, start=1):
            if module not in adapter.pairs:
                continue
            a, b, scaling = adapter.pairs[module]
            r = a.shape[0]
            lora_a[i, :, :r] = a.float().t()
            lora_b[i, :r, :] = (b.float() * scaling).t()
            targeted.add(i)
        wrapper = GatheredLoRALinear(
            layer,
            lora_a.to(device=weight.device, dtype=weight.dtype),
            lora_b.to(device=weight.device, dtype=weight.dtype),
            frozenset(targeted),
            selection,
        )
        parent_name, _, child = module.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, wrapper)
    return selection
