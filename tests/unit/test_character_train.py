"""LoRA training on the tiny model: the loss falls, the adapter serves, the card, the base check."""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from characters.data import DataError, write_prompted
from characters.train import (
    AdapterBaseError,
    check_adapter_base,
    encode,
    split_records,
    train_adapter,
)

PROMPT = "Location: the agora\nStatus: Socrates meets a young man.\n\n"
LINE = "Socrates (speaking): I know that I know nothing, friend.<|eot|>"


def _records() -> list[Any]:
    return [
        {"prompt": f"{PROMPT}({i})\n", "output": LINE, "source": f"scene {i}"} for i in range(8)
    ] * 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, dict]:
    """An adapter trained for 60 steps on 24 short records (about 2 s on a CPU)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMULACRA_CACHE", str(tiny_model_dir.parent))
    try:
        root = tmp_path_factory.mktemp("train")
        write_prompted(root / "data" / "prompted.jsonl", _records())
        card = train_adapter(
            root / "data", "tiny", root / "socrates", rank=8, epochs=10, lr=1e-2,
            batch_size=4, seed=0, progress=False,
        )  # fmt: skip
    finally:
        mp.undo()
    return root / "socrates", card


def test_training_lowers_the_loss(trained: tuple[Path, dict]):
    _, card = trained
    first, last = card["epochs"][0], card["epochs"][-1]
    assert len(card["epochs"]) == 10
    assert card["final_train_loss"] == last["train_loss"]
    assert last["train_loss"] < 0.5 * first["train_loss"]
    assert card["final_eval_loss"] < 0.5 * first["eval_loss"]


def test_the_folder_is_a_peft_adapter_with_a_card(trained: tuple[Path, dict], tiny_model_dir):
    folder, card = trained
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["adapter_config.json", "adapter_model.safetensors", "card.json"]
    assert json.loads((folder / "card.json").read_text()) == card
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert set(config["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    assert card["base_model"] == {"name": "tiny", "path": str(tiny_model_dir)}
    data = card["data"]
    assert (data["records"], data["train"], data["eval"]) == (24, 23, 1)
    assert len(data["sha256"]) == 64 and data["path"].endswith("prompted.jsonl")
    hp = card["hyper_parameters"]
    assert (hp["rank"], hp["lora_alpha"], hp["epochs"], hp["lr"]) == (8, 16, 10, 1e-2)
    assert hp["weight_decay"] == 0.1 and hp["warmup"] == 0.04 and hp["lora_dropout"] == 0
    assert card["seed"] == 0 and {"torch", "transformers", "peft"} <= card["versions"].keys()
    for row in card["epochs"]:
        assert set(row) == {"epoch", "train_loss", "eval_loss"}


async def test_the_adapter_serves_in_the_hf_engine_and_changes_the_output(
    trained: tuple[Path, dict], tiny_cache: Path
):
    from serving.config import EngineConfig
    from serving.server import LLMServer
    from serving.types import LLMRequest

    folder, _ = trained
    server = LLMServer(EngineConfig(engine="hf", model="tiny", adapters={"socrates": str(folder)}))
    server.start()
    assert "socrates" in server.info().adapters

    def request(adapter: str | None) -> LLMRequest:
        return LLMRequest(prompt=PROMPT + "(3)\n", adapter=adapter, max_tokens=16, seed=1)

    base, tuned = await server.generate([request(None), request("socrates")])
    assert tuned.text != base.text
    assert tuned.text.startswith("Socrates (speaking)")  # it learned how its line begins


def test_check_adapter_base_accepts_its_base_and_rejects_another(
    trained: tuple[Path, dict], tiny_cache: Path, tmp_path: Path
):
    folder, _ = trained
    check_adapter_base(folder, "tiny")
    check_adapter_base(folder, str(tiny_cache / "tiny-model-v1-seed0"))
    other = tmp_path / "other-model"
    other.mkdir()
    with pytest.raises(AdapterBaseError, match=r"socrates.*'tiny'.*other-model") as info:
        check_adapter_base(folder, str(other))
    assert isinstance(info.value, ValueError)
    with pytest.raises(AdapterBaseError, match="not on 'org/some-7b'"):
        check_adapter_base(folder, "org/some-7b")
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(AdapterBaseError, match=r"no card\.json"):
        check_adapter_base(bare, "tiny")
    only_peft = tmp_path / "only-peft"
    shutil.copytree(folder, only_peft)
    (only_peft / "card.json").unlink()
    check_adapter_base(only_peft, "tiny")  # peft's record is the resolved folder
    with pytest.raises(AdapterBaseError):
        check_adapter_base(only_peft, "org/some-7b")


def test_refuses_a_missing_data_file_and_an_existing_adapter_folder(
    trained: tuple[Path, dict], tmp_path: Path
):
    folder, _ = trained
    with pytest.raises(DataError, match=r"no prompted\.jsonl"):
        train_adapter(tmp_path, "tiny", tmp_path / "out", progress=False)
    write_prompted(tmp_path / "prompted.jsonl", _records())
    with pytest.raises(FileExistsError, match="socrates"):
        train_adapter(tmp_path, "tiny", folder, progress=False)


def test_encode_masks_the_prompt_and_truncates(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    record = {"prompt": PROMPT, "output": LINE, "source": ""}
    ids, labels = encode(tok, record, 2048)
    n_prompt = len(tok(PROMPT)["input_ids"])
    assert ids == tok(PROMPT)["input_ids"] + tok(LINE, add_special_tokens=False)["input_ids"]
    assert labels[:n_prompt] == [-100] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.convert_tokens_to_ids("<|eot|>")  # the end of turn is one token
    short_ids, short_labels = encode(tok, record, n_prompt + 2)
    assert short_ids == ids[: n_prompt + 2] and short_labels == labels[: n_prompt + 2]


def test_split_is_98_2_seeded_with_at_least_one_eval():
    records = list(range(200))
    train, eval_ = split_records(records, seed=3)
    assert (len(train), len(eval_)) == (196, 4) and sorted(train + eval_) == records
    assert split_records(records, seed=3) == (train, eval_)
    assert split_records(records, seed=4) != (train, eval_)
    assert [len(part) for part in split_records([1, 2], 0)] == [1, 1]
    assert split_records([1], 0) == ([1], [])
