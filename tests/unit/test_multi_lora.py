"""Gathered multi-LoRA on the tiny model: equal to peft per adapter, mixed batches, bad folders."""

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from serving.engines.multi_lora import AdapterLoadError, GatheredLoRALinear, attach_lora_adapters

ADAPTERS = ("alice", "bob", "carol")


def _base(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """alice and bob (rank 8, six modules) and carol: rank 4, two modules, rsLoRA, alpha_pattern."""
    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("adapters")
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        use_rslora=True,
        alpha_pattern={"v_proj": 24},
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.manual_seed(7)
        peft_model = get_peft_model(_base(tiny_model_dir), config, adapter_name="carol")
        peft_model.save_pretrained(str(out), selected_adapters=["carol"])
    dirs = {n: tiny_model_dir / "adapters" / n for n in ("alice", "bob")}
    dirs["carol"] = out / "carol"
    return dirs


@pytest.fixture(scope="module")
def gathered(tiny_model_dir: Path, adapter_dirs: dict[str, Path]) -> tuple[Any, Any]:
    model = _base(tiny_model_dir)
    selection = attach_lora_adapters(model, {n: str(p) for n, p in adapter_dirs.items()})
    return model, selection


def _peft_model(model_dir: Path, name: str, folder: Path) -> Any:
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return PeftModel.from_pretrained(_base(model_dir), str(folder), adapter_name=name).eval()


def _inputs() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, 1000, (rows, length), generator=generator) for rows, length in
            ((1, 1), (1, 9), (3, 17))]  # fmt: skip


def _logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("name", ADAPTERS)
def test_each_adapter_equals_peft(
    tiny_model_dir: Path, adapter_dirs: dict[str, Path], gathered: tuple[Any, Any], name: str
):
    model, selection = gathered
    reference = _peft_model(tiny_model_dir, name, adapter_dirs[name])
    base = _base(tiny_model_dir)
    for ids in _inputs():
        expected = _logits(reference, ids)
        assert not torch.allclose(expected, _logits(base, ids))  # the adapter changes the output
        with selection.selected([name] * ids.shape[0]):
            torch.testing.assert_close(_logits(model, ids), expected, rtol=1e-5, atol=1e-5)


def test_base_rows_equal_the_plain_model(tiny_model_dir: Path, gathered: tuple[Any, Any]):
    model, selection = gathered
    base = _base(tiny_model_dir)
    for ids in _inputs():
        expected = _logits(base, ids)
        torch.testing.assert_close(_logits(model, ids), expected)  # nothing selected: base
        with selection.selected([None] * ids.shape[0]):
            torch.testing.assert_close(_logits(model, ids), expected)


def test_mixed_batch_equals_each_row_alone(gathered: tuple[Any, Any]):
    model, selection = gathered
    rows: list[str | None] = [None, "alice", "bob", "carol", "alice", None, "carol", "bob"]
    ids = torch.randint(0, 1000, (len(rows), 12), generator=torch.Generator().manual_seed(1))
    with selection.selected(rows):
        mixed = _logits(model, ids)
    for i, name in enumerate(rows):
        with selection.selected([name]):
            alone = _logits(model, ids[i : i + 1])
        torch.testing.assert_close(mixed[i : i + 1], alone, rtol=1e-5, atol=1e-5)


def test_modules_only_some_adapters_target(gathered: tuple[Any, Any]):
    model, _ = gathered
    attn = model.model.layers[0].self_attn
    assert isinstance(attn.q_proj, GatheredLoRALinear)
    assert attn.q_proj.targeted == frozenset({1, 2, 3})
    assert attn.k_proj.targeted == frozenset({1, 2})  # carol leaves k_proj alone
    assert attn.k_proj.lora_a.shape == (4, 64, 8)  # base + three adapters, padded to rank 8
    assert not attn.k_proj.lora_a[3].any() and not attn.k_proj.lora_b[0].any()


def test_unknown_adapter_in_selection_is_refused(gathered: tuple[Any, Any]):
    _, selection = gathered
    with pytest.raises(KeyError, match=r"'dave'.*alice, bob, carol"):
        selection.select(["alice", "dave"])


def _copy(src: Path, dst: Path, edit_weights: Any = None, edit_config: Any = None) -> Path:
    shutil.copytree(src, dst)
    if edit_weights is not None:
        path = dst / "adapter_model.safetensors"
        save_file(edit_weights(load_file(str(path))), str(path))
    if edit_config is not None:
        path = dst / "adapter_config.json"
        path.write_text(json.dumps(edit_config(json.loads(path.read_text()))))
    return dst


def _rename_layer(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace("layers.1.", "layers.9."): v for k, v in weights.items()}


def _narrow_a(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    return {**weights, key: weights[key][:, :32].contiguous()}


def _with_target(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "target_modules": [*config["target_modules"], "qkv_proj"]}


def _with_rank(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "r": 16}


@pytest.mark.parametrize(
    ("edit_weights", "edit_config", "message"),
    [
        (_rename_layer, None, r"'broken'.*'model\.layers\.9\.\S+' does not exist in the model"),
        (None, _with_target, r"'broken'.*'qkv_proj' does not exist in the model"),
        (_narrow_a, None, r"'broken'.*'model\.layers\.0\.self_attn\.q_proj'.*do not fit"),
        (None, _with_rank, r"'broken'.*'model\.layers\.0\.\S+'.*rank 8 in the weights, 16"),
    ],
)
def test_bad_adapter_is_refused_naming_it_and_the_module(
    tiny_model_dir: Path, tmp_path: Path, edit_weights: Any, edit_config: Any, message: str
):
    alice = tiny_model_dir / "adapters" / "alice"
    broken = _copy(alice, tmp_path / "broken", edit_weights, edit_config)
    model = _base(tiny_model_dir)
    with pytest.raises(AdapterLoadError, match=message):
        attach_lora_adapters(model, {"alice": str(alice), "broken": str(broken)})
    assert not any(isinstance(m, GatheredLoRALinear) for m in model.modules())  # untouched


def test_pickled_weights_are_not_read(tiny_model_dir: Path, tmp_path: Path):
    folder = _copy(tiny_model_dir / "adapters" / "alice", tmp_path / "pickled")
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    with pytest.raises(AdapterLoadError, match=r"'pickled'.*only safetensors"):
        attach_lora_adapters(_base(tiny_model_dir), {"pickled": str(folder)})
