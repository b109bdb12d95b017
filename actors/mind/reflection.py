"""Reflection (spec section 4): the trigger, focal questions, cited insights, post-chat notes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from actors.mind.importance import score_importance
from actors.mind.memory import Memory
from actors.mind.persona import Persona
from actors.mind.prompting import Asker, Question, persona_block
from actors.mind.records import MemoryRecord, expiry, is_idle
from actors.mind.schemas import array, integer, obj, question, sentence, text
from actors.mind.settings import ImportanceSettings, ReflectionSettings

QUESTIONS_PURPOSE = "reflection_questions"
INSIGHTS_PURPOSE = "reflection_insights"
CHAT_PURPOSE = "chat_reflection"
MAX_CITATIONS = 5


class ReflectionTrigger:
    """Adds up the importance of new observations; fires once the sum reaches ``threshold``.

    Reflections, plans and chats do not count. The reflector calls :meth:`reset` after it has
    reflected.
    """

    def __init__(self, threshold: int) -> None:
        if threshold < 1:
            raise ValueError("the reflection threshold must be >= 1")
        self.threshold = threshold
        self.total = 0

    def add(self, records: Iterable[MemoryRecord]) -> bool:
        """Counts the observations among ``records``; whether the sum has reached the threshold."""
        self.total += sum(r.importance for r in records if r.kind == "observation")
        return self.total >= self.threshold

    @property
    def due(self) -> bool:
        return self.total >= self.threshold

    def reset(self) -> None:
        self.total = 0

    def get_state(self) -> dict[str, int]:
        return {"total": self.total}

    def set_state(self, state: dict[str, Any]) -> None:
        self.total = int(state["total"])


def questions_schema(n: int) -> dict[str, Any]:
    """Exactly ``n`` questions, each ending with a question mark."""
    return obj(questions=array(question(160), n, n))


def insights_schema(statements: int, insights: int) -> dict[str, Any]:
    """Exactly ``insights`` insights citing statements by number: a number outside
    1..statements (the integers 1..N: an enum of the statements shown) cannot validate."""
    return obj(
        insights=array(
            obj(insight=sentence(200), evidence=array(integer(1, statements), 1, MAX_CITATIONS)),
            insights,
            insights,
        )
    )


CHAT_SCHEMA = obj(plans=text(160), memo=text(160))


def _other(chat: MemoryRecord, name: str) -> str:
    """Whom the chat was with: the other speakers of its transcript."""
    others = dict.fromkeys(who for who, _ in chat.transcript or () if who != name)
    return " and ".join(others) or "someone"


def _numbered(records: Sequence[MemoryRecord]) -> str:
    return "\n".join(f"{i}. {r.description}" for i, r in enumerate(records, start=1))


async def focal_records(memory: Memory, settings: ReflectionSettings) -> list[MemoryRecord]:
    """What the focal questions are asked from, oldest first, idle states left out.

    ``recent``: the ``focal_records`` most recent records. ``since_last_reflection``: the
    records created after the latest reflection (at most ``focal_records`` of them, the newest).
    """
    records = [r for r in await memory.records() if not is_idle(r.description)]
    records.sort(key=lambda r: r.created)  # stable: creation order within a moment
    if settings.focal_source == "since_last_reflection":
        last = max((r.created for r in records if r.kind == "reflection"), default=None)
        if last is not None:
            records = [r for r in records if r.created > last and r.kind != "reflection"]
    return records[-settings.focal_records :]


async def reflect(
    asker: Asker,
    memory: Memory,
    persona: Persona,
    now: datetime,
    settings: ReflectionSettings,
    importance: ImportanceSettings,
) -> list[MemoryRecord]:
    """Reflects once: focal questions, then cited insights for each; stores and returns them.

    At most ``questions * insights_per_question`` reflections. A failed answer skips its part
    (the asker counts it); nothing here raises on a bad answer.
    """
    focal = await focal_records(memory, settings)
    if not focal:
        return []
    system = persona_block(persona)
    answer = await asker.ask_one(
        Question(
            "reflection_questions",
            {
                "persona": system,
                "statements": "\n".join(f"- {r.description}" for r in focal),
                "count": settings.questions,
            },
            questions_schema(settings.questions),
            QUESTIONS_PURPOSE,
        )
    )
    if not isinstance(answer, dict):
        return []
    questions = list(dict.fromkeys(q.strip() for q in answer.get("questions", []) if q.strip()))
    if not questions:
        return []
    retrieved = await memory.retrieve(questions, now, k=settings.retrieval_k)
    asked = [q for q in questions if retrieved.get(q)]
    answers = await asker.ask(
        [
            Question(
                "reflection_insights",
                {
                    "persona": system,
                    "name": persona.name,
                    "question": q,
                    "statements": _numbered(retrieved[q]),
                    "n": len(retrieved[q]),
                    "max_cited": min(MAX_CITATIONS, len(retrieved[q])),
                    "count": settings.insights_per_question,
                },
                insights_schema(len(retrieved[q]), settings.insights_per_question),
                INSIGHTS_PURPOSE,
            )
            for q in asked
        ]
    )
    drafts: list[tuple[str, list[MemoryRecord]]] = []
    for q, insights in zip(asked, answers, strict=True):
        if not isinstance(insights, dict):
            continue
        cited_from = retrieved[q]
        for item in insights.get("insights", [])[: settings.insights_per_question]:
            numbers = dict.fromkeys(
                n for n in item.get("evidence", []) if 1 <= n <= len(cited_from)
            )
            description = str(item.get("insight", "")).strip()
            if not numbers or not description:
                continue
            drafts.append((description, [cited_from[n - 1] for n in numbers]))
    records = await _store(
        asker,
        memory,
        persona,
        now,
        settings,
        importance,
        [(d, tuple(r.id for r in ev), 1 + max(r.depth for r in ev)) for d, ev in drafts],
    )
    return records


async def reflect_after_chat(
    asker: Asker,
    memory: Memory,
    persona: Persona,
    chat: MemoryRecord,
    now: datetime,
    settings: ReflectionSettings,
    importance: ImportanceSettings,
) -> list[MemoryRecord]:
    """Two reflections on a finished conversation, both resting on the chat record.

    One says what the conversation means for the agent's plans, one is a memo of it. None
    where ``settings.post_chat`` is off or the answer fails.
    """
    if not settings.post_chat:
        return []
    transcript = "\n".join(f"{who}: {said}" for who, said in chat.transcript or ())
    answer = await asker.ask_one(
        Question(
            "chat_reflection",
            {
                "persona": persona_block(persona),
                "name": persona.name,
                "other": _other(chat, persona.name),
                "summary": chat.description,
                "transcript": transcript or "(no transcript)",
            },
            CHAT_SCHEMA,
            CHAT_PURPOSE,
        )
    )
    if not isinstance(answer, dict):
        return []
    notes = [str(answer.get(key, "")).strip() for key in ("plans", "memo")]
    return await _store(
        asker,
        memory,
        persona,
        now,
        settings,
        importance,
        [(note, (chat.id,), 1 + chat.depth) for note in notes if note],
    )


async def _store(
    asker: Asker,
    memory: Memory,
    persona: Persona,
    now: datetime,
    settings: ReflectionSettings,
    importance: ImportanceSettings,
    drafts: Sequence[tuple[str, tuple[str, ...], int]],
) -> list[MemoryRecord]:
    """Scores the drafts' importance in one batch, makes reflection records, remembers them."""
    if not drafts:
        return []
    scores = await score_importance(
        asker, persona, [d for d, _, _ in drafts], importance, kind="reflection"
    )
    expires = expiry("reflection", now, settings.expiry_days)
    records = [
        memory.record(
            "reflection", description, now, score, evidence=evidence, depth=depth, expires=expires
        )
        for (description, evidence, depth), score in zip(drafts, scores, strict=True)
    ]
    return await memory.remember(records)
