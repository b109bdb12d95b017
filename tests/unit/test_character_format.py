"""Profiles, the released data layouts and the training-example format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from characters.data import (
    DataError,
    Scene,
    read_prompted,
    read_scenes,
    write_prompted,
    write_scenes,
)
from characters.examples import EOT, format_output, prompt_for, to_prompted
from characters.profile import ProfileError, load_profile, parse_profile

PROFILES = Path(__file__).parents[3] / "shared" / "data" / "character_llm" / "profiles"


def test_a_shared_profile_loads_as_name_and_paragraphs() -> None:
    profile = load_profile(PROFILES / "wiki_Newton.txt")
    assert profile.name == "Isaac Newton"
    assert len(profile.paragraphs) > 3
    assert profile.first_paragraph.startswith("Sir Isaac Newton")
    assert all("\n" not in p for p in profile.paragraphs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("Isaac Newton\n\nA physicist.", "line 1 must be"),
        ("#\n\nA physicist.", "line 1 must be"),
        ("# Isaac Newton\n\n\n", "no paragraphs"),
    ],
)
def test_bad_profiles_name_the_file_and_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ProfileError, match=expected) as info:
        parse_profile(text, "newton.txt")
    assert "newton.txt" in str(info.value)


def test_a_missing_profile_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"nope\.txt"):
        load_profile(tmp_path / "nope.txt")


def test_turns_are_formatted_merged_and_end_with_eot() -> None:
    turns = [
        {"role": "Man", "action": "speaking", "content": "Good day."},
        {"role": "Isaac Newton", "action": "thinking", "content": "Who is this?"},
        {"role": "Isaac Newton", "action": "thinking", "content": "He looks lost."},
        {"role": "Isaac Newton", "action": "speaking", "content": "Good day to you."},
    ]
    assert format_output(turns) == (
        f"Man (speaking): Good day.{EOT}\n"
        f"Isaac Newton (thinking): Who is this?\nHe looks lost.{EOT}\n"
        f"Isaac Newton (speaking): Good day to you.{EOT}"
    )


def test_a_scene_becomes_a_prompted_record() -> None:
    scene = {
        "setting": "chat",
        "dialogue": [{"role": "Isaac Newton", "action": "speaking", "content": "Hm."}],
        "location": "Trinity College",
        "background": "Newton works late in his rooms.",
        "source": "seed_dialogue_0",
    }
    record = to_prompted("Isaac Newton", scene)
    assert record["prompt"] == prompt_for(
        "Isaac Newton", "Trinity College", "Newton works late in his rooms."
    )
    assert "Location: Trinity College\nStatus: Newton works late" in record["prompt"]
    assert record["output"] == f"Isaac Newton (speaking): Hm.{EOT}"
    assert record["source"] == "seed_dialogue_0"


def test_layouts_round_trip_and_bad_files_are_named(tmp_path: Path) -> None:
    scene: Scene = {
        "setting": "debate",
        "dialogue": [{"role": "A", "action": "speaking", "content": "x"}],
        "location": "L",
        "background": "B",
        "source": "s",
    }
    write_scenes(tmp_path / "g.json", [scene])
    assert read_scenes(tmp_path / "g.json") == [scene]
    write_prompted(tmp_path / "p.jsonl", [{"prompt": "p", "output": "o", "source": "s"}])
    assert read_prompted(tmp_path / "p.jsonl") == [{"prompt": "p", "output": "o", "source": "s"}]
    (tmp_path / "bad.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match=r"bad\.json"):
        read_scenes(tmp_path / "bad.json")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        read_prompted(tmp_path / "bad.jsonl")
    (tmp_path / "torn.json").write_text(json.dumps([{**scene, "dialogue": [{"role": "A"}]}]))
    with pytest.raises(DataError, match=r"dialogue\[0\]"):
        read_scenes(tmp_path / "torn.json")
