"""Importance of a memory (spec section 3): a 1..10 score, asked of the model in one batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.mind.persona import Persona
from actors.mind.prompting import Asker, Question, persona_block
from actors.mind.records import Kind, is_idle
from actors.mind.schemas import integer, obj
from actors.mind.settings import ImportanceSettings

PURPOSE = "importance"
SCHEMA = obj(importance=integer(1, 10))
WHAT: dict[str, str] = {
    "observation": "event",
    "reflection": "thought",
    "plan": "plan",
    "chat": "conversation",
}
VERB: dict[str, str] = {
    "observation": "observed",
    "reflection": "thought",
    "plan": "planned",
    "chat": "talked about",
}


def clamp(value: Any, fallback: int) -> int:
    """An answer's importance clamped to 1..10; ``fallback`` where it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return fallback
    return max(1, min(10, int(value)))


async def score_importance(
    asker: Asker,
    persona: Persona,
    descriptions: Sequence[str],
    settings: ImportanceSettings,
    kind: Kind = "observation",
) -> list[int]:
    """The importance of each description, in order.

    Plans score ``settings.plan`` and idle states ``settings.idle``, with no model call; the
    rest are asked in one batch. A failed answer scores ``settings.fallback`` (the asker counts
    the failure). A chat is scored on its summary: the caller passes the summary.
    """
    if kind == "plan":
        return [settings.plan] * len(descriptions)
    scores = [settings.idle if is_idle(d) else 0 for d in descriptions]
    ask = [i for i, d in enumerate(descriptions) if not is_idle(d)]
    if not ask:
        return scores
    system = persona_block(persona)
    questions = [
        Question(
            "importance",
            {
                "persona": system,
                "what": WHAT[kind],
                "verb": VERB[kind],
                "description": descriptions[i],
            },
            SCHEMA,
            PURPOSE,
            temperature=0.0,
        )
        for i in ask
    ]
    answers = await asker.ask(questions)
    for i, answer in zip(ask, answers, strict=True):
        value = answer.get("importance") if isinstance(answer, dict) else None
        scores[i] = clamp(value, settings.fallback)
    return scores
