"""Evaluation (spec section 3): interviews of a character, scored by a judge, against a baseline.

Two systems answer the same interviews: ``adapter`` (the base model with the character's LoRA
adapter, prompted as in training) and ``baseline`` (the base model with no adapter, prompted
with the profile's text before the same prompt). Each answers single-turn questions, the
protective probes (:mod:`characters.probes`) and, with ``multi_turn`` N, a dialogue in which an
interviewer model (the judge's) asks N follow-up questions without naming the character. The
judge (:mod:`characters.judge`) scores every answer per dimension.

``run_eval`` is ``simulacra character eval``: it writes ``answers.parquet`` (one row per system,
question or dialogue, and dimension) and ``summary.json`` atomically into ``--out``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from characters.examples import EOT, prompt_for
from characters.judge import (
    DIMENSIONS,
    STABILITY,
    judge_request,
    object_schema,
    parse_judgement,
)
from characters.probes import PROBES
from characters.profile import Profile, load_profile
from characters.templates import render
from serving.json_schemas import answer_tokens, sentence
from serving.llm import LLM
from serving.types import LLMRequest, LLMResult

LOCATION = "Coffee Shop - Afternoon"
INTERVIEWER = "Man"
ANSWER_TEMPERATURE = 0.2
ANSWER_MAX_TOKENS = 256
QUESTION_CHARS = 200
INTERVIEWER_SCHEMA: dict[str, Any] = object_schema(question=sentence(QUESTION_CHARS, ends="?"))
SYSTEMS: tuple[str, ...] = ("adapter", "baseline")
PROBES_KEY = "probes"

ROW_COLUMNS: tuple[str, ...] = (
    "system",
    "kind",
    "probe",
    "question",
    "answer",
    "dimension",
    "score",
    "reasoning",
    "judge_ok",
)


class QuestionsError(ValueError):
    """A questions file that cannot be used."""


def status_for(name: str) -> str:
    return (
        f"{name} is casually chatting with a man from the 21st century. {name} fully trusts the "
        f"man who engage in conversation and shares everything {name} knows without reservation."
    )


def interview_prompt(
    name: str,
    history: Sequence[tuple[str, str]],
    question: str,
    profile_text: str | None = None,
) -> str:
    """The Character-LLM prompt for the next answer: the meta-prompt, the coffee-shop scene,
    the turns so far, the question, then ``<Name> (speaking): `` as the cue. With
    ``profile_text`` (the baseline), the profile comes first."""
    head = prompt_for(name, LOCATION, status_for(name))
    if profile_text:
        head = profile_text.strip() + "\n\n" + head
    turns = "".join(
        f"{INTERVIEWER} (speaking): {q}{EOT}\n{name} (speaking): {a}{EOT}\n" for q, a in history
    )
    return head + turns + f"{INTERVIEWER} (speaking): {question}{EOT}\n{name} (speaking): "


_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def clean_reply(text: str) -> str:
    """The reply up to the first ``<|eot|>`` and then up to the first blank line, stripped."""
    text = text.split(EOT, 1)[0]
    return _BLANK_LINE.split(text.lstrip("\n"), 1)[0].strip()


def answer_request(
    name: str,
    history: Sequence[tuple[str, str]],
    question: str,
    system: str,
    adapter_name: str,
    profile: Profile,
    seed: int,
) -> LLMRequest:
    baseline = system == "baseline"
    prompt = interview_prompt(
        name, history, question, "\n\n".join(profile.paragraphs) if baseline else None
    )
    return LLMRequest(
        prompt=prompt,
        adapter=None if baseline else adapter_name,
        max_tokens=ANSWER_MAX_TOKENS,
        temperature=ANSWER_TEMPERATURE,
        top_p=1.0,
        seed=seed,
        stop=(EOT,),
        purpose=f"interview:{system}",
    )


def redact(text: str, name: str) -> str:
    """``text`` with the character's full name and each longer part of it replaced."""
    parts = sorted({name, *(p for p in name.split() if len(p) > 2)}, key=len, reverse=True)
    for part in parts:
        text = re.sub(re.escape(part), "the guest", text, flags=re.IGNORECASE)
    return text


def transcript(history: Sequence[tuple[str, str]], speaker: str) -> str:
    return "\n".join(f"Interviewer: {q}\n{speaker}: {a}" for q, a in history)


def interviewer_request(name: str, history: Sequence[tuple[str, str]], seed: int) -> LLMRequest:
    """Asks the interviewer for one follow-up question; the character's name is never shown.

    The system message (the interviewer's role) is the same for every turn and dialogue; the
    transcript so far follows, and the task comes last."""
    shown = redact(transcript(history, "Guest"), name)
    schema = INTERVIEWER_SCHEMA
    return LLMRequest.chat(
        list(render("interviewer", transcript=shown)),
        json_schema=schema,
        temperature=0.0,
        max_tokens=answer_tokens(schema),
        seed=seed,
        purpose="interviewer",
    )


def _answer_text(result: LLMResult) -> str | None:
    return clean_reply(result.text) if result.ok else None


async def evaluate(
    llm: LLM,
    judge_llm: LLM,
    character: str,
    profile: Profile,
    questions: Sequence[str],
    adapter_name: str,
    multi_turn: int = 0,
    seed: int = 0,
    probes: Sequence[str] | None = None,
    dialogues: int = 1,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Interviews both systems and judges every answer; returns ``(rows, summary)``.

    ``probes`` defaults to :data:`characters.probes.PROBES`. ``multi_turn`` N > 0 adds
    ``dialogues`` multi-turn interviews per system, each opened by one of the first questions
    and followed by N interviewer questions, judged on Stability.
    """
    if multi_turn < 0:
        raise ValueError(f"multi_turn must be >= 0, not {multi_turn}")
    if probes is None:
        probes = PROBES
    singles = [("single", q) for q in questions] + [("probe", q) for q in probes]
    asked = [(system, kind, q) for system in SYSTEMS for kind, q in singles]
    results = await llm.generate(
        [
            answer_request(character, [], q, system, adapter_name, profile, seed)
            for system, _, q in asked
        ]
    )
    # (system, kind, question, answer or None when the character failed, dimensions)
    items: list[tuple[str, str, str, str | None, tuple[str, ...]]] = [
        (system, kind, q, _answer_text(r), DIMENSIONS if kind == "single" else ("Hallucination",))
        for (system, kind, q), r in zip(asked, results, strict=True)
    ]
    if multi_turn:
        items += await _multi_turn(
            llm, judge_llm, character, profile, questions, adapter_name, multi_turn, seed, dialogues
        )

    jobs = [(i, dim) for i, item in enumerate(items) if item[3] is not None for dim in item[4]]
    verdicts = await judge_llm.generate(
        [
            judge_request(
                dim, character, profile.first_paragraph, items[i][2], items[i][3] or "", seed
            )
            for i, dim in jobs
        ]
    )
    judged = {(i, dim): parse_judgement(v) for (i, dim), v in zip(jobs, verdicts, strict=True)}
    rows: list[dict[str, Any]] = []
    for i, (system, kind, question, answer, dims) in enumerate(items):
        for dim in dims:
            verdict = judged.get((i, dim))
            rows.append(
                {
                    "system": system,
                    "kind": kind,
                    "probe": kind == "probe",
                    "question": question,
                    "answer": answer or "",
                    "dimension": dim,
                    "score": verdict.score if verdict else None,
                    "reasoning": verdict.reasoning if verdict else "the character gave no answer",
                    "judge_ok": verdict.ok if verdict else False,
                }
            )
    return rows, summarize(rows)


async def _multi_turn(
    llm: LLM,
    judge_llm: LLM,
    character: str,
    profile: Profile,
    questions: Sequence[str],
    adapter_name: str,
    turns: int,
    seed: int,
    dialogues: int,
) -> list[tuple[str, str, str, str | None, tuple[str, ...]]]:
    openers = list(questions[: max(1, dialogues)])
    # one dialogue per (system, opener); all advance together, one batch per turn
    keys = [(system, opener) for system in SYSTEMS for opener in openers]
    histories: list[list[tuple[str, str]]] = [[] for _ in keys]
    failed = [False for _ in keys]
    pending = [opener for _, opener in keys]
    for turn in range(turns + 1):
        live = [k for k in range(len(keys)) if not failed[k]]
        results = await llm.generate(
            [
                answer_request(
                    character, histories[k], pending[k], keys[k][0], adapter_name, profile, seed
                )
                for k in live
            ]
        )
        for k, result in zip(live, results, strict=True):
            answer = _answer_text(result)
            if answer is None:
                failed[k] = True
            else:
                histories[k].append((pending[k], answer))
        if turn == turns:
            break
        live = [k for k in range(len(keys)) if not failed[k]]
        asks = await judge_llm.generate(
            [interviewer_request(character, histories[k], seed + turn) for k in live]
        )
        for k, ask in zip(live, asks, strict=True):
            question = ask.parsed.get("question") if isinstance(ask.parsed, dict) else None
            if not ask.ok or not isinstance(question, str) or not question.strip():
                failed[k] = True
            else:
                pending[k] = question.strip()
    return [
        (
            system,
            "multi",
            opener,
            None if failed[k] else transcript(histories[k], character),
            (STABILITY,),
        )
        for k, (system, opener) in enumerate(keys)
    ]


def _stats(scores: list[int | None]) -> dict[str, Any]:
    valid = [s for s in scores if s is not None]
    return {
        "mean": sum(valid) / len(valid) if valid else None,
        "n": len(valid),
        "failures": len(scores) - len(valid),
    }


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per system: each dimension's mean score, n (valid scores) and failures; the probes'
    Hallucination apart (``probes``); believability = the mean of the dimensions' means."""
    summary: dict[str, Any] = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        dims = {
            dim: _stats([r["score"] for r in mine if r["dimension"] == dim and not r["probe"]])
            for dim in dict.fromkeys(r["dimension"] for r in mine if not r["probe"])
        }
        means = [d["mean"] for d in dims.values() if d["mean"] is not None]
        summary[system] = {
            "dimensions": dims,
            PROBES_KEY: _stats([r["score"] for r in mine if r["probe"]]),
            "believability": sum(means) / len(means) if means else None,
        }
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table: one line per system and dimension."""

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [f"{'system':<10} {'dimension':<16} {'mean':>6} {'n':>5} {'failed':>7}"]
    for system, s in summary.items():
        for dim, st in [*s["dimensions"].items(), (PROBES_KEY, s[PROBES_KEY])]:
            lines.append(
                f"{system:<10} {dim:<16} {num(st['mean']):>6} {st['n']:>5} {st['failures']:>7}"
            )
        lines.append(f"{system:<10} {'believability':<16} {num(s['believability']):>6}")
    return "\n".join(lines)


def read_questions(path: str | os.PathLike[str]) -> list[str]:
    """One question per line; blank lines and ``#`` comments are ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QuestionsError(f"{path}: cannot read the questions ({exc.strerror or exc})") from None
    questions = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not questions:
        raise QuestionsError(f"{path}: no questions (one per line; '#' starts a comment)")
    return questions


def answers_table(rows: Sequence[dict[str, Any]]) -> Any:  # -> pyarrow.Table
    """The rows as a table of the fixed answers schema."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("system", pa.string()),
            ("kind", pa.string()),
            ("probe", pa.bool_()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("dimension", pa.string()),
            ("score", pa.int32()),
            ("reasoning", pa.string()),
            ("judge_ok", pa.bool_()),
        ]
    )
    return pa.Table.from_pylist([{c: r.get(c) for c in ROW_COLUMNS} for r in rows], schema=schema)


def write_outputs(
    out: str | os.PathLike[str], rows: Sequence[dict[str, Any]], summary: dict[str, Any]
) -> None:
    """Writes ``answers.parquet`` and ``summary.json``: both to temporary files first, then
    renamed, so that an error leaves nothing half-written."""
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = answers_table(rows)
    temps: list[str] = []
    try:
        fd, parquet_tmp = tempfile.mkstemp(prefix=".answers.", suffix=".tmp", dir=out)
        os.close(fd)
        temps.append(parquet_tmp)
        pq.write_table(table, parquet_tmp)
        fd, summary_tmp = tempfile.mkstemp(prefix=".summary.", suffix=".tmp", dir=out)
        temps.append(summary_tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        os.replace(parquet_tmp, out / "answers.parquet")
        os.replace(summary_tmp, out / "summary.json")
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def adapter_base_error(adapter_dir: str, base: str) -> str | None:
    """Why the adapter cannot be served on ``base`` (``None`` when it can). The one place that
    calls ``characters.train.check_adapter_base``, imported only when eval runs."""
    from characters.train import AdapterBaseError, check_adapter_base

    try:
        check_adapter_base(adapter_dir, base)
    except AdapterBaseError as exc:
        return str(exc)
    return None


def make_server(model: str, adapters: dict[str, str] | None = None) -> LLM:
    """A started in-process LLM server (the hf engine) for ``model`` and ``adapters``."""
    from serving.config import EngineConfig
    from serving.server import LLMServer

    server = LLMServer(EngineConfig(engine="hf", model=model, adapters=adapters or {}))
    server.start()
    return server


class EvalInputError(ValueError):
    """Bad input to ``character eval`` (found before any model loads)."""


@dataclass(frozen=True)
class EvalOptions:
    """``simulacra character eval``: the adapter, its base, the judge and the questions."""

    adapter: Path
    base: str
    judge: str
    questions: Path
    profile: Path | None
    out: Path
    multi_turn: int = 0
    seed: int = 0


def run_eval(options: EvalOptions) -> tuple[str, str, int, dict[str, Any]]:
    """The command: interviews, judges and writes the tables. Returns the character's name,
    the adapter's, the number of judged rows and the summary.

    Raises:
        EvalInputError, ProfileError, QuestionsError: bad input, before any model loads (and
            nothing is written).
    """
    import asyncio

    if options.profile is None:
        raise EvalInputError("the judge needs the character's profile: pass --profile")
    if options.multi_turn < 0:
        raise EvalInputError(f"--multi-turn must be >= 0, not {options.multi_turn}")
    profile = load_profile(options.profile)
    questions = read_questions(options.questions)
    adapter = options.adapter
    if not (adapter / "adapter_config.json").is_file():
        raise EvalInputError(f"{adapter}: not an adapter folder (no adapter_config.json)")
    name = adapter.resolve().name
    problem = adapter_base_error(str(adapter), options.base)
    if problem is not None:
        raise EvalInputError(
            f"adapter {name!r} cannot be used with base {options.base!r}: {problem}"
        )
    try:
        llm = make_server(options.base, {name: str(adapter)})
    except ValueError as exc:  # a name the service refuses, a bad config
        raise EvalInputError(f"adapter {name!r}: {exc}") from None
    judge_llm = llm if options.judge == options.base else make_server(options.judge)
    rows, summary = asyncio.run(
        evaluate(
            llm,
            judge_llm,
            profile.name,
            profile,
            questions,
            name,
            multi_turn=options.multi_turn,
            seed=options.seed,
        )
    )
    write_outputs(options.out, rows, summary)
    return profile.name, name, len(rows), summary
