"""The tiny test model: deterministic, small, chat-ready, with adapters that change its output."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from serving.model_names import resolve_model
from serving.tiny_model import build_tiny_model
from serving.types import ModelNotFoundError


def _greedy(model, tokenizer, text: str, n: int = 8) -> list[int]:
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, tokenizer


def test_same_seed_builds_identical_weights_and_vocab(tiny_model_dir: Path, tmp_path: Path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    for rel in ("model.safetensors", "adapters/alice/adapter_model.safetensors"):
        first, second = load_file(tiny_model_dir / rel), load_file(again / rel)
        assert first.keys() == second.keys()
        for key in first:
            assert torch.equal(first[key], second[key]), f"{rel}: {key} differs"
    assert (tiny_model_dir / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()


def test_model_is_a_few_hundred_thousand_parameters(loaded):
    model, tokenizer = loaded
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 < n < 1_000_000
    assert model.config.vocab_size == len(tokenizer) <= 1024


def test_an_existing_destination_is_kept(tmp_path: Path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "mine.txt").write_text("built by someone else meanwhile")
    assert build_tiny_model(out, adapters=()) == out
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left


def test_says_it_is_meaningless(tiny_model_dir: Path):
    assert "meaningless" in (tiny_model_dir / "TINY_MODEL.md").read_text()


def test_chat_template_renders_roles_and_generation_prompt(loaded):
    _, tokenizer = loaded
    messages = [
        {"role": "system", "content": "You are Alice."},
        {"role": "user", "content": "Rate this: 7"},
    ]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith(tokenizer.bos_token)
    assert "system\nYou are Alice.<|eot|>" in text
    assert "user\nRate this: 7<|eot|>" in text
    assert text.endswith("assistant\n")
    assert tokenizer.convert_tokens_to_ids("<|eot|>") in tokenizer(text)["input_ids"]


def test_tokenizer_has_json_tokens(loaded):
    _, tokenizer = loaded
    text = '{"importance": 7, "start": "07:30"}'
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text)  # merges were learned


def test_adapters_change_greedy_output(tiny_model_dir: Path, loaded):
    from peft import PeftModel

    base_model, tokenizer = loaded
    prompt = "At 07:30 the agent"
    base = _greedy(base_model, tokenizer, prompt)
    outputs = {"base": base}
    for name in ("alice", "bob"):
        model = PeftModel.from_pretrained(
            base_model, tiny_model_dir / "adapters" / name, adapter_name=name
        )
        outputs[name] = _greedy(model, tokenizer, prompt)
        model.unload()
    assert len({tuple(v) for v in outputs.values()}) == 3, outputs


def test_resolve_tiny_uses_cache_and_its_adapters(tiny_cache: Path, tiny_model_dir: Path):
    path, adapters = resolve_model("tiny")
    assert path == str(tiny_model_dir)
    assert adapters == {n: str(tiny_model_dir / "adapters" / n) for n in ("alice", "bob")}
    only = {"alice": str(tiny_model_dir / "adapters" / "alice")}
    assert resolve_model("tiny", only) == (str(tiny_model_dir), only)


def test_resolve_local_folder_and_hub_id(tiny_model_dir: Path):
    assert resolve_model(str(tiny_model_dir)) == (str(tiny_model_dir), {})
    assert resolve_model("meta-llama/Llama-3.2-1B-Instruct") == (
        "meta-llama/Llama-3.2-1B-Instruct",
        {},
    )


@pytest.mark.parametrize("missing", ["/no/such/model", "./no-such-model", "~/no-such-model"])
def test_resolve_missing_local_model_names_the_path(missing: str):
    with pytest.raises(ModelNotFoundError, match=missing.replace(".", r"\.")):
        resolve_model(missing)


def test_resolve_missing_adapter_names_adapter_and_path(tiny_model_dir: Path):
    with pytest.raises(ModelNotFoundError, match=r"'carol'.*/no/such/adapter"):
        resolve_model(str(tiny_model_dir), {"carol": "/no/such/adapter"})
