"""Importing the released Character-LLM files: both layouts, by content, names, and refusals."""

import json
from pathlib import Path

import pytest

from characters.data import DataError, read_prompted, read_scenes
from characters.examples import to_prompted
from characters.importer import import_data, name_from_filename

SCENE = {
    "setting": "Vienna, 1802",
    "dialogue": [
        {"role": "Beethoven", "action": "speaking", "content": "The music is in my head."},
        {"role": "Man", "action": "speaking", "content": "But you cannot hear it."},
    ],
    "location": "A room in Heiligenstadt",
    "background": "Beethoven is writing a letter.",
    "source": "seed",
}
PROMPTED = {"prompt": "Their own prompt.\n\n", "output": "Beethoven (speaking): Yes.<|eot|>",
            "source": "released"}  # fmt: skip


def _write_generated(path: Path, n: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{**SCENE, "source": f"s{i}"} for i in range(n)]))
    return path


def _write_prompted(path: Path, n: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({**PROMPTED, "source": f"p{i}"}) + "\n" for i in range(n)))
    return path


def test_generated_file_is_converted_with_the_name_from_the_file(tmp_path: Path):
    src = _write_generated(tmp_path / "generated" / "wiki_Beethoven.json")
    summary = import_data(src, tmp_path / "out")
    out = tmp_path / "out"
    assert summary["character"] == "Beethoven"
    assert summary["counts"] == {"prompted": 0, "scenes": 2, "records": 2}
    assert summary["sources"] == [{"path": str(src), "layout": "generated", "records": 2}]
    records = read_prompted(out / "prompted.jsonl")
    assert records[0] == to_prompted("Beethoven", {**SCENE, "source": "s0"})  # type: ignore[typeddict-item]
    assert "You are Beethoven" in records[0]["prompt"]
    assert read_scenes(out / "generated.json")[1]["source"] == "s1"
    assert json.loads((out / "import.json").read_text()) == summary


def test_prompted_records_are_kept_as_they_are(tmp_path: Path):
    src = _write_prompted(tmp_path / "prompted_agent_dialogue_Beethoven.jsonl")
    summary = import_data(src, tmp_path / "out")
    assert summary["character"] == "Beethoven"
    assert summary["counts"] == {"prompted": 3, "scenes": 0, "records": 3}
    records = read_prompted(tmp_path / "out" / "prompted.jsonl")
    assert records == [{**PROMPTED, "source": f"p{i}"} for i in range(3)]
    assert not (tmp_path / "out" / "generated.json").exists()


def test_a_folder_with_both_layouts_and_detection_by_content(tmp_path: Path):
    _write_prompted(tmp_path / "data" / "prompted" / "prompted_agent_dialogue_Socrates.jsonl", 2)
    # the layout is told by content: a JSON list in a .jsonl file is still scenes
    _write_generated(tmp_path / "data" / "generated" / "wiki_Socrates.jsonl", 1)
    summary = import_data(tmp_path / "data", tmp_path / "out")
    assert summary["counts"] == {"prompted": 2, "scenes": 1, "records": 3}
    assert [s["layout"] for s in summary["sources"]] == ["prompted", "generated"]
    records = read_prompted(tmp_path / "out" / "prompted.jsonl")
    assert records[0]["prompt"] == PROMPTED["prompt"] and "You are Socrates" in records[2]["prompt"]


def test_name_flag_wins_and_is_needed_without_a_released_file_name(tmp_path: Path):
    src = _write_generated(tmp_path / "scenes.json")
    with pytest.raises(DataError, match=r"scenes\.json.*--name"):
        import_data(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    summary = import_data(src, tmp_path / "out", name="Ludwig van Beethoven")
    assert summary["character"] == "Ludwig van Beethoven"
    assert (
        "You are Ludwig van Beethoven"
        in read_prompted(tmp_path / "out" / "prompted.jsonl")[0]["prompt"]
    )


def test_name_from_filename():
    assert name_from_filename("x/wiki_Beethoven.json") == "Beethoven"
    assert name_from_filename("prompted_agent_dialogue_Beethoven.jsonl") == "Beethoven"
    assert name_from_filename("wiki_Julius_Caesar.json") == "Julius Caesar"
    assert name_from_filename("scenes.json") is None
    assert name_from_filename("wiki_.json") is None


def test_several_characters_need_one_at_a_time(tmp_path: Path):
    _write_generated(tmp_path / "d" / "wiki_Beethoven.json")
    _write_generated(tmp_path / "d" / "wiki_Socrates.json")
    with pytest.raises(DataError, match="Beethoven, Socrates"):
        import_data(tmp_path / "d", tmp_path / "out")


@pytest.mark.parametrize(
    "content",
    ['{"a": 1}\n', "not json at all\n", '{"prompt": "p"}\n', "", '{"x": [1, 2]}'],
)
def test_a_file_in_neither_layout_is_named(tmp_path: Path, content: str):
    bad = tmp_path / "odd_file.jsonl"
    bad.write_text(content)
    with pytest.raises(DataError, match=r"odd_file\.jsonl"):
        import_data(bad, tmp_path / "out", name="X")
    assert not (tmp_path / "out").exists()


def test_a_list_that_is_not_scenes_names_the_file_and_record(tmp_path: Path):
    bad = tmp_path / "wiki_X.json"
    bad.write_text('[{"setting": "s"}]')
    with pytest.raises(DataError, match=r"wiki_X\.json\[0\]"):
        import_data(bad, tmp_path / "out")


def test_out_folder_must_be_new_empty_or_a_previous_import(tmp_path: Path):
    src = _write_generated(tmp_path / "wiki_Beethoven.json")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a previous import"):
        import_data(src, busy)
    empty = tmp_path / "empty"
    empty.mkdir()
    import_data(src, empty)
    # re-importing over a previous import replaces it, stale files included
    import_data(_write_prompted(tmp_path / "prompted_agent_dialogue_Beethoven.jsonl"), empty)
    assert not (empty / "generated.json").exists()
    assert len(read_prompted(empty / "prompted.jsonl")) == 3


def test_run_import_and_the_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from cluster.cli import main

    src = _write_generated(tmp_path / "wiki_Beethoven.json")
    assert main(["character", "import", str(src), "--out", str(tmp_path / "a")]) == 0
    assert "2 records for Beethoven" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"no": "layout"}')
    assert main(["character", "import", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "bad.json" in capsys.readouterr().err
