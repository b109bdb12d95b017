"""``build_character``: counts, drops, both layouts, resume, concurrency, and the tiny model."""

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from characters.build import RECORDING, build_character
from characters.data import read_prompted, read_scenes
from characters.profile import ProfileError, parse_profile
from serving.scripted import ScriptedLLM
from serving.types import LLMRequest, LLMResult

PROFILES = Path(__file__).parents[3] / "shared" / "data" / "character_llm" / "profiles"
PROFILE = parse_profile(
    "# Socrates\n\nSocrates was a philosopher of Athens.\n\nHe was tried and put to death.\n",
    "socrates.txt",
)
GOOD = (
    "Background: The agora of Athens at noon.\n\nSocrates (speaking)\nWhat is virtue?\n\n"
    "Meno (speaking)\nI do not know.\n\nSocrates (thinking)\nGood, he admits it.\n"
)
SHORT = "Background: A street.\n\nSocrates (speaking)\nHello.\n"
NO_BG = "Socrates (speaking)\nA.\n\nMeno (speaking)\nB.\n\nSocrates (speaking)\nC.\n"
PROTECTIVE = "Person (speaking)\nWhat is a computer?\n\nSocrates (speaking)\nA what?\n\n" * 2


def _scenes(request: LLMRequest) -> dict:
    return {
        "scenes": [
            {"type": "Chat", "location": "Agora", "background": "good"},
            {"type": "Chat", "location": "Street", "background": "short"},
            {"type": "Debate", "location": "Court", "background": "nobg"},
        ]
    }


def _script(request: LLMRequest) -> str:
    text = request.text()
    return GOOD if "Status: good" in text else SHORT if "Status: short" in text else NO_BG


RULES = [
    ("character.scenes", _scenes),
    ("character.experience", _script),
    ("character.protective", PROTECTIVE),
]


def test_counts_drops_and_both_layouts(tmp_path: Path) -> None:
    llm = ScriptedLLM(RULES)
    summary = asyncio.run(
        build_character(
            PROFILE, llm, tmp_path, scenes_per_chunk=3, prompts=4, seed=1, structured=False
        )
    )
    counts = summary["counts"]
    assert counts == {
        "chunks": 2,
        "prompts": 4,
        "raw_scenes": 12,
        "completed": 12,
        "parsed": 4,
        "dropped": 8,
        "protective": 2,
    }
    assert summary["drops"] == {"no background": 4, "too few turns": 4}
    assert summary["failed_generations"] == 0 and summary["tokens"]["completion"] > 0
    assert json.loads((tmp_path / "build.json").read_text()) == summary
    scenes = read_scenes(tmp_path / "generated.json")
    assert len(scenes) == 4 and len({s["source"] for s in scenes}) == 4
    assert scenes[0]["location"] == "Agora" and scenes[0]["setting"] == "Chat"
    assert scenes[0]["dialogue"][2] == {
        "role": "Socrates",
        "action": "thinking",
        "content": "Good, he admits it.",
    }
    protective = read_scenes(tmp_path / "protective.json")
    assert [s["location"] for s in protective] == ["A room", "A room"]
    prompted = read_prompted(tmp_path / "prompted.jsonl")
    assert len(prompted) == 6 and all(r["output"].endswith("<|eot|>") for r in prompted)
    assert "Status: Socrates is chatting with a person." in prompted[-1]["prompt"]
    # 4 extractions, 12 completions, 2 protective: each one request per call
    assert len(llm.calls) == 18 and set(llm.batch_sizes) == {1}


def test_resume_answers_from_the_recording_alone(tmp_path: Path) -> None:
    first = asyncio.run(
        build_character(PROFILE, ScriptedLLM(RULES), tmp_path, 3, 4, seed=2, structured=False)
    )
    assert (tmp_path / RECORDING).stat().st_size > 0
    failing = ScriptedLLM(lambda request: RuntimeError("the generator is down"))
    second = asyncio.run(
        build_character(PROFILE, failing, tmp_path, 3, 4, seed=2, structured=False)
    )
    assert failing.calls == []
    assert second["counts"] == first["counts"] and second["failed_generations"] == 0
    assert len(read_scenes(tmp_path / "generated.json")) == 4


def test_failed_generations_are_asked_again_on_resume(tmp_path: Path) -> None:
    def flaky(request: LLMRequest) -> object:
        if request.purpose == "character.protective":
            return RuntimeError("busy")
        return dict(RULES)[request.purpose](request)  # type: ignore[operator]

    first = asyncio.run(
        build_character(PROFILE, ScriptedLLM(flaky), tmp_path, 3, 4, seed=2, structured=False)
    )
    assert first["failed_generations"] == 2 and first["counts"]["protective"] == 0
    again = ScriptedLLM(RULES)
    second = asyncio.run(build_character(PROFILE, again, tmp_path, 3, 4, seed=2, structured=False))
    assert [r.purpose for r in again.calls] == ["character.protective"] * 2
    assert second["counts"]["protective"] == 2 and second["counts"]["parsed"] == 4


class _Overlapping(ScriptedLLM):
    def __init__(self) -> None:
        super().__init__(RULES)
        self.in_flight = 0
        self.most = 0

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        try:
            return await super().generate(requests)
        finally:
            self.in_flight -= 1


def test_generations_overlap_up_to_the_concurrency(tmp_path: Path) -> None:
    llm = _Overlapping()
    asyncio.run(build_character(PROFILE, llm, tmp_path / "a", 3, 4, seed=0, concurrency=5))
    assert llm.most == 5
    serial = _Overlapping()
    asyncio.run(build_character(PROFILE, serial, tmp_path / "b", 3, 4, seed=0, concurrency=1))
    assert serial.most == 1


def test_bad_profile_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("no header\n\ntext\n")
    out = tmp_path / "out"
    with pytest.raises(ProfileError):
        asyncio.run(build_character(bad, ScriptedLLM(RULES), out))
    assert not out.exists()


def test_tiny_model_build_through_the_cli(
    tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cluster.cli import main

    profile = PROFILES / "wiki_Socrates.txt"
    assert profile.exists(), profile
    out = tmp_path / "socrates"
    flags = ["--generator", "tiny", "--scenes-per-chunk", "2", "--prompts", "4"]
    flags += ["--max-tokens", "64", "--out", str(out)]
    assert main(["character", "build", str(profile), *flags]) == 0
    assert "scenes and" in capsys.readouterr().out
    summary = json.loads((out / "build.json").read_text())
    counts = summary["counts"]
    assert counts["prompts"] == 4 and counts["chunks"] > 4
    assert counts["raw_scenes"] <= 8
    assert counts["completed"] + summary["failed_generations"] >= counts["raw_scenes"]
    assert counts["parsed"] + counts["dropped"] == counts["completed"]
    assert (
        sum(v for k, v in summary["drops"].items() if not k.startswith("protective"))
        == (counts["dropped"])
    )
    assert len(read_scenes(out / "generated.json")) == counts["parsed"]
    assert len(read_scenes(out / "protective.json")) == counts["protective"]
    n = counts["parsed"] + counts["protective"]
    if n:
        records = read_prompted(out / "prompted.jsonl")
        assert len(records) == n and all(r["output"].endswith("<|eot|>") for r in records)
    else:
        assert (out / "prompted.jsonl").read_text() == ""
    missing = str(tmp_path / "missing.txt")
    assert main(["character", "build", missing, *flags]) == 2
    assert "missing.txt" in capsys.readouterr().err
