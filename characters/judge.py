"""The judge (spec section 3): one prompt per dimension, step-by-step reasoning, then a score.

The judge sees the first paragraph of the character's profile, the question and the answer (or
the whole transcript, for Stability), and answers under a JSON schema ``{reasoning, score}``
(``score`` an integer 1..7) at temperature 0. An answer that does not come back valid is a judge
failure: its score is ``None`` and it is counted, never raised. The prompts' wording is the
project's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from characters.templates import render
from serving.json_schemas import answer_tokens
from serving.json_schemas import obj as object_schema
from serving.json_schemas import text as bounded_text
from serving.types import ChatMessage, LLMRequest, LLMResult

DIMENSIONS: tuple[str, ...] = ("Memorization", "Values", "Personality", "Hallucination")
"""The dimensions every single-turn answer is judged on."""
STABILITY = "Stability"
"""Judged on multi-turn transcripts only."""
ALL_DIMENSIONS: tuple[str, ...] = (*DIMENSIONS, STABILITY)

SCORE_MIN, SCORE_MAX = 1, 7
REASONING_CHARS = 600

CRITERIA: dict[str, str] = {
    "Memorization": (
        "Memorization: is the answer factually correct about {name}? Do the people, places, "
        "events and dates it mentions agree with what is known of {name}'s life? Details that "
        "contradict the profile lower the score; accurate, specific knowledge raises it."
    ),
    "Values": (
        "Values: does the answer reflect {name}'s values, beliefs and way of judging right and "
        "wrong, as far as they are known? Opinions that {name} would not hold lower the score."
    ),
    "Personality": (
        "Personality: does the answer sound like {name}: the tone, manner, temperament and "
        "vocabulary {name} is known for? A generic or out-of-character voice lowers the score."
    ),
    "Hallucination": (
        "Hallucination (a high score means none): does the answer avoid knowledge {name} could "
        "not have, such as things from a later era or outside {name}'s world? Stating that "
        "{name} does not know or understand such a thing is correct and scores high; explaining "
        "it, or making up facts, scores low."
    ),
    STABILITY: (
        "Stability: over the whole conversation, does the speaker stay {name} throughout: the "
        "same identity, knowledge, personality and values from the first turn to the last? "
        "Drifting into another persona, or into a generic assistant, lowers the score."
    ),
}


JUDGE_SCHEMA: dict[str, Any] = object_schema(
    reasoning=bounded_text(REASONING_CHARS),
    score={"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX},
)
JUDGE_MAX_TOKENS = answer_tokens(JUDGE_SCHEMA)
"""The longest verdict the schema admits."""


@dataclass(frozen=True)
class Judgement:
    """One dimension's verdict; ``score`` is ``None`` (and ``ok`` false) when the judge failed."""

    score: int | None
    reasoning: str
    ok: bool


def judge_messages(
    dimension: str, name: str, profile_paragraph: str, question: str, answer: str
) -> tuple[ChatMessage, ChatMessage]:
    """The judge's messages for one dimension: the system message (the role and what is known
    of the character) is the same for every judgement of the character; the answer judged
    follows (the same for each of its dimensions), the dimension's criterion last. For
    Stability, ``answer`` is the transcript."""
    if dimension not in CRITERIA:
        raise ValueError(f"unknown dimension {dimension!r}; known: {', '.join(CRITERIA)}")
    if dimension == STABILITY:
        shown = f"The conversation:\n{answer}"
    else:
        shown = f"The question: {question}\n\nThe answer given as {name}:\n{answer}"
    return render(
        "judge",
        name=name,
        profile=profile_paragraph,
        shown=shown,
        criterion=CRITERIA[dimension].format(name=name),
    )


def judge_prompt(
    dimension: str, name: str, profile_paragraph: str, question: str, answer: str
) -> str:
    """The judge's messages as one text (system, then user)."""
    system, user = judge_messages(dimension, name, profile_paragraph, question, answer)
    return f"{system.content}\n\n{user.content}"


def judge_request(
    dimension: str,
    name: str,
    profile_paragraph: str,
    question: str,
    answer: str,
    seed: int | None = 0,
) -> LLMRequest:
    """The judge's request for one dimension: schema-constrained, temperature 0."""
    return LLMRequest.chat(
        list(judge_messages(dimension, name, profile_paragraph, question, answer)),
        json_schema=JUDGE_SCHEMA,
        temperature=0.0,
        max_tokens=JUDGE_MAX_TOKENS,
        seed=seed,
        purpose=f"judge:{dimension}",
    )


def parse_judgement(result: LLMResult) -> Judgement:
    """The verdict in a judge's result; anything that is not a valid answer is a failure."""
    if not result.ok:
        return Judgement(None, f"judge failed: {result.error}", False)
    parsed = result.parsed
    if not isinstance(parsed, dict):
        return Judgement(None, f"judge answer did not parse: {result.text[:200]!r}", False)
    score, reasoning = parsed.get("score"), parsed.get("reasoning")
    if (
        isinstance(score, bool)
        or not isinstance(score, int)
        or not SCORE_MIN <= score <= SCORE_MAX
        or not isinstance(reasoning, str)
    ):
        return Judgement(None, f"judge answer is not a valid verdict: {result.text[:200]!r}", False)
    return Judgement(score, reasoning, True)
