"""Reaction and dialogue (spec section 7).

Whether two agents may talk (pure rules), the model's reaction to another agent (talk, wait,
carry on), one utterance at a time, the whole conversation between two speakers, its game
duration, its summary and the ``chat`` record each participant stores.

Every model call goes through :class:`~actors.mind.prompting.Asker`; a failed answer never raises:
each function has a fallback (documented on it).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, cast

from actors.mind import schemas
from actors.mind.memory import Memory
from actors.mind.persona import Persona
from actors.mind.prompting import Asker, Question, persona_block
from actors.mind.records import MemoryRecord
from actors.mind.settings import DialogueSettings, RetrievalSettings

Reaction = Literal["talk", "wait", "continue"]
REACTIONS: tuple[Reaction, ...] = ("talk", "wait", "continue")
Transcript = Sequence[tuple[str, str]]
"""(speaker, utterance) lines, oldest first."""

NOTHING = "(nothing)"
UTTERANCE_CHARS = 200
SUMMARY_CHARS = 200
RELATIONSHIP_CHARS = 200


def may_talk(
    me_asleep: bool,
    me_talking: bool,
    other_asleep: bool,
    other_talking: bool,
    now: datetime,
    last_talked: datetime | None,
    settings: DialogueSettings,
    step_seconds: int,
) -> bool:
    """Whether a conversation may start at all (before the model is asked).

    No if either agent is asleep or already talking, at ``no_talk_from`` (23:00) or later, or
    if the pair last talked less than ``cooldown_steps * step_seconds`` game seconds ago
    (exactly the cool-down ago is allowed).
    """
    if me_asleep or me_talking or other_asleep or other_talking:
        return False
    if now.time() >= settings.no_talk_from:
        return False
    cooldown = timedelta(seconds=settings.cooldown_steps * step_seconds)
    return not (last_talked is not None and now - last_talked < cooldown)


def _when(now: datetime) -> str:
    return now.strftime("%A %B %d, %Y, %H:%M")


def _lines(records: Sequence[MemoryRecord]) -> str:
    return "\n".join(f"- {r.description}" for r in records) or NOTHING


def _merged(results: dict[str, list[MemoryRecord]]) -> list[MemoryRecord]:
    """The records of every query, each once, in query order then rank."""
    seen: dict[str, MemoryRecord] = {}
    for records in results.values():
        for r in records:
            seen.setdefault(r.id, r)
    return list(seen.values())


def _doing(other: str, other_action: str) -> str:
    """ "<other> is <action>", unless the action already says who."""
    action = other_action.strip()
    return action if action.startswith(other) else f"{other} is {action}"


def _format_transcript(transcript: Transcript) -> str:
    return "\n".join(f"{speaker}: {line}" for speaker, line in transcript) or NOTHING


def _first(name: str) -> str:
    return name.split()[0] if name.split() else name


def names_of(*names: str) -> list[str]:
    """Each name and its first name, longest first (what a sentence may start with)."""
    found = dict.fromkeys(n for name in names for n in (name, _first(name)) if n)
    return sorted(found, key=len, reverse=True)


def relationship_schema(name: str, other: str) -> dict[str, Any]:
    """One sentence that starts with the other's name or one's own."""
    return schemas.obj(
        summary=schemas.sentence(RELATIONSHIP_CHARS, starts_with=names_of(other, name))
    )


OPENING_LINES = 2
"""The first lines of a conversation (one from each speaker) cannot end it."""
UTTERANCE_SCHEMA = schemas.obj(
    utterance=schemas.sentence(UTTERANCE_CHARS, chars=schemas.SPOKEN_CHARS),
    end=schemas.boolean(),
)
OPENING_SCHEMA = schemas.obj(
    utterance=schemas.sentence(UTTERANCE_CHARS, chars=schemas.SPOKEN_CHARS),
    end={"type": "boolean", "const": False},
)

SUMMARY_SCHEMA = schemas.obj(summary=schemas.sentence(SUMMARY_CHARS))


async def relationship_summary(
    asker: Asker,
    memory: Memory,
    persona: Persona,
    other: str,
    other_action: str,
    now: datetime,
    k: int,
) -> str:
    """One sentence on ``persona``'s relationship with ``other``; ``""`` when the model fails.

    Memories are retrieved (``k`` each, the spec's 50) with the queries
    "What is <me>'s relationship with <other>?" and "<other> is <their current action>".
    """
    queries = [f"What is {persona.name}'s relationship with {other}?", _doing(other, other_action)]
    results = await memory.retrieve(queries, now, k)
    answer = await asker.ask_one(
        Question(
            "relationship",
            {
                "persona": persona_block(persona),
                "other": other,
                "other_first": _first(other),
                "known": persona.relationships.get(other, "") or NOTHING,
                "memories": _lines(_merged(results)),
            },
            relationship_schema(persona.name, other),
            "relationship",
        )
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("summary"), str):
        return ""
    return str(answer["summary"]).strip()


async def decide_reaction(
    asker: Asker,
    memory: Memory,
    persona: Persona,
    other: str,
    other_action: str,
    now: datetime,
    retrieval: RetrievalSettings,
    relationship: str | None = None,
) -> Reaction:
    """Talk to ``other``, wait until its action ends, or carry on; ``"continue"`` on failure.

    The decision rests on the relationship summary (computed with ``retrieval.relationship_k``
    unless given).
    """
    if relationship is None:
        relationship = await relationship_summary(
            asker, memory, persona, other, other_action, now, retrieval.relationship_k
        )
    answer = await asker.ask_one(
        Question(
            "react",
            {
                "persona": persona_block(persona),
                "other": other,
                "now": _when(now),
                "doing": _doing(other, other_action),
                "relationship": relationship or NOTHING,
            },
            schemas.obj(reaction=schemas.choice(REACTIONS)),
            "reaction",
        )
    )
    reaction = answer.get("reaction") if isinstance(answer, dict) else None
    return cast(Reaction, reaction) if reaction in REACTIONS else "continue"


async def next_utterance(
    asker: Asker,
    memory: Memory,
    persona: Persona,
    other: str,
    transcript: Transcript,
    relationship: str,
    now: datetime,
    retrieval: RetrievalSettings,
    settings: DialogueSettings | None = None,
) -> tuple[str, bool]:
    """``persona``'s next line to ``other`` and whether it ends the conversation.

    Memories are retrieved (``retrieval.dialogue_k``, the spec's 15) for the last
    ``settings.context_lines`` lines (for ``other`` itself before anything is said). The
    first :data:`OPENING_LINES` lines cannot end the conversation (their schema says so). A
    failed answer gives ``("", True)``: the conversation ends.
    """
    settings = settings or DialogueSettings()
    may_end = len(transcript) >= OPENING_LINES
    last = list(transcript)[-settings.context_lines :]
    query = "\n".join(f"{s}: {u}" for s, u in last) if last else f"{other}"
    results = await memory.retrieve([query], now, retrieval.dialogue_k)
    answer = await asker.ask_one(
        Question(
            "utterance",
            {
                "persona": persona_block(persona),
                "other": other,
                "now": _when(now),
                "relationship": relationship or NOTHING,
                "memories": _lines(_merged(results)),
                "transcript": _format_transcript(transcript),
            },
            UTTERANCE_SCHEMA if may_end else OPENING_SCHEMA,
            "dialogue",
        )
    )
    if (
        not isinstance(answer, dict)
        or not isinstance(answer.get("utterance"), str)
        or not isinstance(answer.get("end"), bool)
    ):
        return "", True
    return str(answer["utterance"]).strip(), bool(answer["end"])


async def summarize_chat(asker: Asker, persona: Persona, other: str, transcript: Transcript) -> str:
    """A one-line summary of the conversation; ``"<a> and <b> chatted"`` on failure."""
    fallback = f"{persona.name} and {other} chatted"
    answer = await asker.ask_one(
        Question(
            "chat_summary",
            {
                "persona": persona_block(persona),
                "name": persona.name,
                "other": other,
                "transcript": _format_transcript(transcript),
            },
            SUMMARY_SCHEMA,
            "chat_summary",
        )
    )
    summary = answer.get("summary") if isinstance(answer, dict) else None
    return summary.strip() if isinstance(summary, str) and summary.strip() else fallback


@dataclass(frozen=True)
class Conversation:
    """A finished conversation: who, what was said, its summary, when, and for how long."""

    participants: tuple[str, str]
    transcript: tuple[tuple[str, str], ...]
    summary: str
    started: datetime
    minutes: int

    @property
    def ends(self) -> datetime:
        return self.started + timedelta(minutes=self.minutes)


def conversation_minutes(transcript: Transcript, settings: DialogueSettings) -> int:
    """ceil(characters of the utterances / chars_per_word / words_per_minute), at least 1."""
    chars = sum(len(line) for _, line in transcript)
    return max(1, math.ceil(chars / settings.chars_per_word / settings.words_per_minute))


class Speaker(Protocol):
    """One side of a conversation (an agent's host implements it with :func:`next_utterance`)."""

    @property
    def name(self) -> str: ...

    async def speak(self, other: str, transcript: Transcript) -> tuple[str, bool]:
        """The next line to ``other`` given the transcript so far, and whether it ends."""
        ...


Summarizer = Callable[[tuple[tuple[str, str], ...]], Awaitable[str]]
"""The transcript to its summary (e.g. :func:`summarize_chat` bound to the first speaker)."""


async def converse(
    first: Speaker,
    second: Speaker,
    now: datetime,
    settings: DialogueSettings,
    summarize: Summarizer | None = None,
) -> Conversation:
    """Alternates utterances, ``first`` first, until a speaker ends it or ``max_utterances``.

    A speaker's line that ends the conversation is kept (an empty one is not). The summary is
    ``summarize(transcript)``, or ``"<first> and <second> chatted"`` without a summarizer or
    when it gives nothing.
    """
    speakers = (first, second)
    transcript: list[tuple[str, str]] = []
    turn = 0
    while len(transcript) < settings.max_utterances:
        me, you = speakers[turn % 2], speakers[(turn + 1) % 2]
        line, end = await me.speak(you.name, tuple(transcript))
        line = line.strip()
        if line:
            transcript.append((me.name, line))
        if end or not line:
            break
        turn += 1
    lines = tuple(transcript)
    summary = (await summarize(lines)).strip() if summarize is not None else ""
    return Conversation(
        participants=(first.name, second.name),
        transcript=lines,
        summary=summary or f"{first.name} and {second.name} chatted",
        started=now,
        minutes=conversation_minutes(lines, settings),
    )


def chat_record(
    memory: Memory, conversation: Conversation, now: datetime, importance: int
) -> MemoryRecord:
    """The ``chat`` record a participant stores: the summary, with the transcript."""
    return memory.record(
        "chat", conversation.summary, now, importance, transcript=conversation.transcript
    )
