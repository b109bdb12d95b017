"""Character evaluation: interviews, the judge, probes, the tables (characters/evaluate.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from characters import evaluate as ev
from characters.examples import EOT
from characters.judge import ALL_DIMENSIONS, DIMENSIONS, JUDGE_SCHEMA, STABILITY
from characters.probes import PROBES
from characters.profile import parse_profile
from serving.scripted import ScriptedLLM
from serving.types import LLMRequest

NAME = "Ada Quill"
PROFILE = parse_profile(
    f"# {NAME}\n\n{NAME} was a clockmaker in Geneva.\n\nShe built an automaton in 1790.\n"
)
QUESTIONS = ["Where did you grow up?", "What is your work?", "Who taught you?"]
PROBE_SET = ["What is a smartphone?", "Write quicksort in Python."]
DIM_SCORES = {"Memorization": 5, "Values": 4, "Personality": 6, "Hallucination": 7, STABILITY: 3}


def question_of(request: LLMRequest) -> str:
    prompt = request.prompt or ""
    return prompt.rsplit("Man (speaking): ", 1)[1].split(EOT, 1)[0]


def character(request: LLMRequest) -> str:
    """Names the system in the answer, then junk after a blank line and after <|eot|>."""
    who = request.adapter or "base"
    return f"[{who}] {NAME} says: {question_of(request)}\n\nSECOND PARAGRAPH{EOT}AFTER EOT"


def judge(system_bonus: bool = False, bad: str | None = None) -> ScriptedLLM:
    def answer(request: LLMRequest) -> Any:
        if request.purpose == "interviewer":
            return {"question": f"And then what happened, turn {len(ask_log)}?"}
        dim = request.purpose.split(":", 1)[1]
        if dim == bad:
            return "this is not json"
        score = DIM_SCORES[dim]
        if system_bonus and "[alice]" not in request.text():
            score -= 2  # the baseline scores lower
        return {"reasoning": f"Step one. The {dim} is fine.", "score": score}

    ask_log: list[int] = []

    def rule(request: LLMRequest) -> Any:
        if request.purpose == "interviewer":
            ask_log.append(1)
        return answer(request)

    return ScriptedLLM(rule)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_one_row_per_system_question_dimension_and_flagged_probes():
    llm, judge_llm = ScriptedLLM(character), judge()
    rows, summary = run(
        ev.evaluate(llm, judge_llm, NAME, PROFILE, QUESTIONS, "alice", probes=PROBE_SET)
    )
    assert len(rows) == 2 * (len(QUESTIONS) * len(DIMENSIONS) + len(PROBE_SET))
    for system in ("adapter", "baseline"):
        for q in QUESTIONS:
            dims = [r["dimension"] for r in rows if r["system"] == system and r["question"] == q]
            assert dims == list(DIMENSIONS)
        probes = [r for r in rows if r["system"] == system and r["probe"]]
        assert [r["question"] for r in probes] == PROBE_SET
        assert all(r["kind"] == "probe" and r["dimension"] == "Hallucination" for r in probes)
    assert not any(r["dimension"] == STABILITY for r in rows)
    assert all(r["score"] == DIM_SCORES[r["dimension"]] and r["judge_ok"] for r in rows)
    assert {r["kind"] for r in rows} == {"single", "probe"}
    assert set(summary) == {"adapter", "baseline"}


def test_systems_route_adapter_and_baseline_prompt_and_replies_are_cut():
    llm, judge_llm = ScriptedLLM(character), judge()
    rows, _ = run(ev.evaluate(llm, judge_llm, NAME, PROFILE, QUESTIONS[:1], "alice", probes=[]))
    answers = {r["system"]: r["answer"] for r in rows}
    assert answers["adapter"] == f"[alice] {NAME} says: {QUESTIONS[0]}"
    assert answers["baseline"] == f"[base] {NAME} says: {QUESTIONS[0]}"
    by_adapter = {r.adapter: r for r in llm.calls}
    adapter_req, base_req = by_adapter["alice"], by_adapter[None]
    for req in (adapter_req, base_req):
        assert req.prompt is not None and req.temperature == 0.2 and req.top_p == 1.0
        assert req.stop == (EOT,) and req.max_tokens == 256
        assert "Location: Coffee Shop - Afternoon" in req.prompt
        assert f"{NAME} is casually chatting with a man from the 21st century." in req.prompt
        assert req.prompt.endswith(f"Man (speaking): {QUESTIONS[0]}{EOT}\n{NAME} (speaking): ")
    assert "She built an automaton in 1790." in (base_req.prompt or "")
    assert "automaton" not in (adapter_req.prompt or "")
    # the judge sees the first paragraph, the question and the answer, under the schema
    jreq = judge_llm.calls[0]
    assert jreq.json_schema == JUDGE_SCHEMA and jreq.temperature == 0.0
    assert "was a clockmaker in Geneva" in jreq.text() and QUESTIONS[0] in jreq.text()
    assert "SECOND PARAGRAPH" not in jreq.text() and "AFTER EOT" not in jreq.text()


def test_clean_reply_cuts_at_eot_and_first_blank_line():
    assert ev.clean_reply("Hello there.\nMore.\n\nNext paragraph") == "Hello there.\nMore."
    assert ev.clean_reply("Hi.<|eot|>\nMan (speaking): x") == "Hi."
    assert ev.clean_reply("\nFirst line \n  \t\nsecond") == "First line"
    assert ev.clean_reply("One.\n \nTwo<|eot|>") == "One."


def test_summary_means_per_system_and_dimension():
    llm, judge_llm = ScriptedLLM(character), judge(system_bonus=True)
    _rows, summary = run(
        ev.evaluate(llm, judge_llm, NAME, PROFILE, QUESTIONS, "alice", probes=PROBE_SET)
    )
    for system, delta in (("adapter", 0), ("baseline", -2)):
        s = summary[system]
        for dim in DIMENSIONS:
            assert s["dimensions"][dim] == {
                "mean": DIM_SCORES[dim] + delta,
                "n": len(QUESTIONS),
                "failures": 0,
            }
        assert s["probes"] == {"mean": 7 + delta, "n": len(PROBE_SET), "failures": 0}
        expected = sum(DIM_SCORES[d] + delta for d in DIMENSIONS) / len(DIMENSIONS)
        assert s["believability"] == pytest.approx(expected)
    assert "believability" in ev.format_summary(summary)


def test_an_unparseable_judge_answer_is_a_counted_failure():
    llm, judge_llm = ScriptedLLM(character), judge(bad="Values")
    rows, summary = run(ev.evaluate(llm, judge_llm, NAME, PROFILE, QUESTIONS, "alice", probes=[]))
    values = [r for r in rows if r["dimension"] == "Values"]
    assert values and all(r["score"] is None and not r["judge_ok"] for r in values)
    assert all(r["judge_ok"] for r in rows if r["dimension"] != "Values")
    for system in ("adapter", "baseline"):
        assert summary[system]["dimensions"]["Values"] == {
            "mean": None,
            "n": 0,
            "failures": len(QUESTIONS),
        }
        others = [DIM_SCORES[d] for d in DIMENSIONS if d != "Values"]
        assert summary[system]["believability"] == pytest.approx(sum(others) / len(others))


def test_out_of_range_score_is_a_failure_not_a_crash():
    llm = ScriptedLLM(character)
    judge_llm = ScriptedLLM(lambda r: {"reasoning": "ok", "score": 9})
    rows, summary = run(ev.evaluate(llm, judge_llm, NAME, PROFILE, QUESTIONS[:1], "a", probes=[]))
    assert all(r["score"] is None and not r["judge_ok"] for r in rows)
    assert summary["adapter"]["believability"] is None


def test_multi_turn_asks_the_interviewer_n_times_without_the_name():
    turns = 3
    llm, judge_llm = ScriptedLLM(character), judge()
    rows, summary = run(
        ev.evaluate(
            llm, judge_llm, NAME, PROFILE, QUESTIONS, "alice", multi_turn=turns, probes=PROBE_SET
        )
    )
    asks = [r for r in judge_llm.calls if r.purpose == "interviewer"]
    assert len(asks) == turns * 2  # one dialogue per system
    for ask in asks:
        text = ask.text()
        assert "Ada" not in text and "Quill" not in text  # the answers name her; redacted
        assert ask.json_schema == ev.INTERVIEWER_SCHEMA
    stability = [r for r in rows if r["dimension"] == STABILITY]
    assert [(r["system"], r["kind"]) for r in stability] == [
        ("adapter", "multi"),
        ("baseline", "multi"),
    ]
    assert all(r["score"] == DIM_SCORES[STABILITY] for r in stability)
    assert stability[0]["question"] == QUESTIONS[0]
    # the transcript has the opener and the N follow-ups, each answered
    transcript = stability[0]["answer"]
    assert transcript.count("Interviewer: ") == turns + 1
    assert "turn 1?" in transcript and f"{NAME}: [alice]" in transcript
    # the last answer was asked with the whole history in its prompt
    last = [r for r in llm.calls if r.adapter == "alice"][-1].prompt or ""
    assert last.count("Man (speaking): ") == turns + 1
    assert last.count(f"{NAME} (speaking): ") == turns + 1
    assert summary["adapter"]["dimensions"][STABILITY]["n"] == 1
    assert len(rows) == 2 * (len(QUESTIONS) * len(DIMENSIONS) + len(PROBE_SET) + 1)
    assert {r["dimension"] for r in rows} == set(ALL_DIMENSIONS)


def test_questions_file_parsing_and_empty_file(tmp_path: Path):
    path = tmp_path / "q.txt"
    path.write_text("# a comment\n\n  First question?  \n   # indented comment\nSecond?\n\n")
    assert ev.read_questions(path) == ["First question?", "Second?"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# only comments\n\n")
    with pytest.raises(ev.QuestionsError, match="no questions"):
        ev.read_questions(empty)
    with pytest.raises(ev.QuestionsError, match="cannot read"):
        ev.read_questions(tmp_path / "missing.txt")
    default = Path(ev.__file__).parent / "questions" / "default.txt"
    assert len(ev.read_questions(default)) == 20
    assert 8 <= len(PROBES) <= 12


def test_parquet_and_summary_written_and_read_back(tmp_path: Path):
    llm, judge_llm = ScriptedLLM(character), judge(bad="Personality")
    rows, summary = run(
        ev.evaluate(llm, judge_llm, NAME, PROFILE, QUESTIONS, "alice", probes=PROBE_SET)
    )
    out = tmp_path / "out"
    ev.write_outputs(out, rows, summary)
    assert sorted(p.name for p in out.iterdir()) == ["answers.parquet", "summary.json"]
    table = pq.read_table(out / "answers.parquet")
    assert table.column_names == list(ev.ROW_COLUMNS)
    assert str(table.schema.field("score").type) == "int32"
    assert table.to_pylist() == rows
    assert json.loads((out / "summary.json").read_text()) == summary


def _eval(tmp_path: Path, **kw: Any) -> int:
    """``simulacra character eval`` with these flags (``profile=None``: without --profile)."""
    from cluster.cli import main

    profile = tmp_path / "profile.md"
    profile.write_text(f"# {NAME}\n\n{NAME} was a clockmaker in Geneva.\n")
    questions = tmp_path / "questions.txt"
    questions.write_text("Where did you grow up?\nWhat is your work?\n")
    flags: dict[str, Any] = {
        "base": "tiny",
        "judge": "tiny",
        "questions": str(questions),
        "profile": str(profile),
        "multi_turn": 0,
        "out": str(tmp_path / "out"),
        "seed": 0,
    }
    adapter = kw.pop("adapter", str(tmp_path / "adapter"))
    flags.update(kw)
    argv = ["character", "eval", adapter]
    for key, value in flags.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return main(argv)


@pytest.fixture
def alice(tmp_path: Path, tiny_cache: Path) -> Path:
    """The tiny model's adapter alice, recording its base as an adapter from train does."""
    source = next(tiny_cache.iterdir()) / "adapters" / "alice"
    folder = tmp_path / "adapters" / "alice"
    shutil.copytree(source, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "tiny"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_run_eval_usage_errors_write_nothing(
    tmp_path: Path, alice: Path, capsys: pytest.CaptureFixture[str]
):
    assert _eval(tmp_path, adapter=str(alice), profile=None) == 2
    assert "--profile" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert _eval(tmp_path, adapter=str(alice), questions=str(empty)) == 2
    assert "no questions" in capsys.readouterr().err
    assert _eval(tmp_path, adapter=str(tmp_path / "nowhere")) == 2
    assert "not an adapter folder" in capsys.readouterr().err
    # an adapter used with a base it was not trained on
    assert _eval(tmp_path, adapter=str(alice), base=str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "adapter 'alice'" in err and "trained on 'tiny'" in err
    assert not (tmp_path / "out").exists()


def test_real_tiny_model_as_character_and_judge(
    tmp_path: Path, alice: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(ev, "PROBES", PROBES[:2])  # keeps the run short
    start = time.perf_counter()
    assert _eval(tmp_path, adapter=str(alice)) == 0
    assert time.perf_counter() - start < 120
    rows = pq.read_table(tmp_path / "out" / "answers.parquet").to_pylist()
    assert len(rows) == 2 * (2 * len(DIMENSIONS) + 2)
    for r in rows:
        assert (r["score"] is None and not r["judge_ok"]) or (
            r["judge_ok"] and 1 <= r["score"] <= 7
        )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for system in ("adapter", "baseline"):
        for dim in DIMENSIONS:
            st = summary[system]["dimensions"][dim]
            assert st["n"] + st["failures"] == 2


def test_a_failed_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    llm, judge_llm = ScriptedLLM(character), judge()
    rows, summary = run(ev.evaluate(llm, judge_llm, NAME, PROFILE, QUESTIONS, "a", probes=[]))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ev.json, "dump", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        ev.write_outputs(out, rows, summary)
    assert list(out.iterdir()) == []
