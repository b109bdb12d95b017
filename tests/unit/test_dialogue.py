"""Reaction and dialogue (spec section 7): no-talk rules, reactions, utterances, conversations."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import pytest

from actors.mind.dialogue import (
    Conversation,
    chat_record,
    conversation_minutes,
    converse,
    decide_reaction,
    may_talk,
    next_utterance,
    relationship_summary,
    summarize_chat,
)
from actors.mind.memory import Memory
from actors.mind.memory_store import InMemoryStore
from actors.mind.persona import Persona
from actors.mind.prompting import Asker
from actors.mind.records import MemoryRecord, RecordIds
from actors.mind.settings import DialogueSettings, RetrievalSettings
from serving.scripted import Matcher, ScriptedLLM, request_text
from tests.fakes import HashEmbedder, new_id

NOW = datetime(2023, 2, 13, 14, 0)
DIALOGUE = DialogueSettings()
RETRIEVAL = RetrievalSettings()
ISABELLA = Persona("Isabella Rodriguez", 34, "friendly, outgoing", "runs Hobbs Cafe")
KLAUS = "Klaus Mueller"


def memory_with() -> tuple[Memory, HashEmbedder]:
    embedder = HashEmbedder(64)
    memory = Memory(ISABELLA.name, InMemoryStore(dim=64), embedder, RETRIEVAL)
    return memory, embedder


async def remember(memory: Memory, *descriptions: str) -> None:
    await memory.remember(
        [
            MemoryRecord(ISABELLA.name, "observation", d, NOW - timedelta(hours=1), 5, id=new_id())
            for d in descriptions
        ]
    )


def purpose(name: str) -> Matcher:
    """Matches requests by purpose only (prompt texts mention each other's words)."""
    return lambda request: request.purpose == name


# --- may_talk -------------------------------------------------------------------------------


def talk(**overrides: object) -> bool:
    args: dict[str, object] = {
        "me_asleep": False,
        "me_talking": False,
        "other_asleep": False,
        "other_talking": False,
        "now": NOW,
        "last_talked": None,
        "settings": DIALOGUE,
        "step_seconds": 10,
    }
    args.update(overrides)
    return may_talk(**args)


def test_may_talk_when_nothing_forbids_it() -> None:
    assert talk()


@pytest.mark.parametrize("flag", ["me_asleep", "me_talking", "other_asleep", "other_talking"])
def test_no_talk_when_either_is_asleep_or_talking(flag: str) -> None:
    assert not talk(**{flag: True})


def test_no_talk_from_23_00() -> None:
    assert talk(now=NOW.replace(hour=22, minute=59, second=59))
    assert not talk(now=NOW.replace(hour=23, minute=0))
    assert not talk(now=NOW.replace(hour=23, minute=59))
    assert talk(now=NOW.replace(hour=0, minute=0))


def test_cool_down_is_800_steps_of_10_seconds() -> None:
    cooldown = timedelta(seconds=800 * 10)  # 2 h 13 min 20 s
    assert talk(last_talked=NOW - cooldown)
    assert not talk(last_talked=NOW - cooldown + timedelta(seconds=1))
    assert not talk(last_talked=NOW)
    # the cool-down is in steps: with 20 s steps the same gap is too short
    assert not talk(last_talked=NOW - cooldown, step_seconds=20)


# --- the model's decisions ------------------------------------------------------------------


async def test_decide_reaction_returns_the_models_choice() -> None:
    llm = ScriptedLLM(
        [
            (purpose("relationship"), {"summary": "Isabella and Klaus are close friends."}),
            (purpose("reaction"), {"reaction": "wait"}),
        ]
    )
    memory, _ = memory_with()
    reaction = await decide_reaction(
        Asker(llm, ISABELLA.name), memory, ISABELLA, KLAUS, "reading a book", NOW, RETRIEVAL
    )
    assert reaction == "wait"
    (asked,) = [c for c in llm.calls if c.purpose == "reaction"]
    assert "close friends" in request_text(asked)
    assert "Klaus Mueller is reading a book" in request_text(asked)
    assert asked.json_schema is not None
    assert asked.json_schema["properties"]["reaction"]["enum"] == ["talk", "wait", "continue"]


@pytest.mark.parametrize("garbage", ["no idea", {"reaction": "dance"}, {"answer": "talk"}])
async def test_decide_reaction_falls_back_to_continue(garbage: object) -> None:
    llm = ScriptedLLM([(purpose("reaction"), garbage)])  # type: ignore[list-item]
    memory, _ = memory_with()
    reaction = await decide_reaction(
        Asker(llm, ISABELLA.name),
        memory,
        ISABELLA,
        KLAUS,
        "reading",
        NOW,
        RETRIEVAL,
        relationship="They are friends.",
    )
    assert reaction == "continue"
    assert len(llm.calls) == 2  # asked, then asked once more
    assert all(c.purpose == "reaction" for c in llm.calls)


async def test_relationship_summary_retrieves_with_the_spec_queries() -> None:
    memory, embedder = memory_with()
    await remember(memory, "Klaus Mueller is writing a paper on gentrification")
    llm = ScriptedLLM([(purpose("relationship"), {"summary": "Klaus is a regular at my cafe."})])
    summary = await relationship_summary(
        Asker(llm, ISABELLA.name), memory, ISABELLA, KLAUS, "reading a book", NOW, k=50
    )
    assert summary == "Klaus is a regular at my cafe."
    assert embedder.calls[-1] == [
        "What is Isabella Rodriguez's relationship with Klaus Mueller?",
        "Klaus Mueller is reading a book",
    ]
    assert "gentrification" in request_text(llm.calls[0])

    failing = ScriptedLLM([(purpose("relationship"), "not json")])
    assert (
        await relationship_summary(
            Asker(failing, ISABELLA.name), memory, ISABELLA, KLAUS, "reading", NOW, k=50
        )
        == ""
    )


async def test_next_utterance_uses_the_last_lines_and_ends_on_failure() -> None:
    memory, embedder = memory_with()
    await remember(memory, "Isabella is planning a Valentine's party")
    transcript = [(ISABELLA.name if i % 2 else KLAUS, f"line {i}") for i in range(6)]
    llm = ScriptedLLM([(purpose("dialogue"), {"utterance": "See you at the party!", "end": True})])
    said = await next_utterance(
        Asker(llm, ISABELLA.name), memory, ISABELLA, KLAUS, transcript, "friends", NOW, RETRIEVAL
    )
    assert said == ("See you at the party!", True)
    (query,) = embedder.calls[-1]
    assert query.splitlines() == [f"{s}: {u}" for s, u in transcript[-DIALOGUE.context_lines :]]
    assert "Valentine's party" in request_text(llm.calls[0])

    failing = ScriptedLLM([(purpose("dialogue"), {"utterance": "hi"})])  # no end flag: invalid
    assert await next_utterance(
        Asker(failing, ISABELLA.name), memory, ISABELLA, KLAUS, [], "", NOW, RETRIEVAL
    ) == ("", True)


async def test_summarize_chat_and_its_fallback() -> None:
    transcript = [(ISABELLA.name, "Come to my party!"), (KLAUS, "I will.")]
    llm = ScriptedLLM(
        [(purpose("chat_summary"), {"summary": "Isabella invited Klaus to her party."})]
    )
    assert (
        await summarize_chat(Asker(llm, ISABELLA.name), ISABELLA, KLAUS, transcript)
        == "Isabella invited Klaus to her party."
    )
    assert "Come to my party!" in request_text(llm.calls[0])
    broken = ScriptedLLM([(purpose("chat_summary"), RuntimeError("down"))])
    assert (
        await summarize_chat(Asker(broken, ISABELLA.name), ISABELLA, KLAUS, transcript)
        == "Isabella Rodriguez and Klaus Mueller chatted"
    )


# --- conversations --------------------------------------------------------------------------


@dataclass
class ScriptedSpeaker:
    name: str
    lines: list[tuple[str, bool]]
    heard: list[tuple[str, int]] = field(default_factory=list)

    async def speak(self, other: str, transcript: Sequence[tuple[str, str]]) -> tuple[str, bool]:
        self.heard.append((other, len(transcript)))
        return self.lines.pop(0) if self.lines else ("...", False)


async def test_conversation_alternates_and_stops_at_the_end_flag() -> None:
    a = ScriptedSpeaker("A", [("Hi B.", False), ("Bye then.", False)])
    b = ScriptedSpeaker("B", [("Hello A.", False), ("I must go.", True)])
    chat = await converse(a, b, NOW, DIALOGUE)
    assert chat.transcript == (
        ("A", "Hi B."),
        ("B", "Hello A."),
        ("A", "Bye then."),
        ("B", "I must go."),
    )
    assert a.heard == [("B", 0), ("B", 2)] and b.heard == [("A", 1), ("A", 3)]
    assert chat.participants == ("A", "B") and chat.started == NOW
    assert chat.summary == "A and B chatted"


async def test_conversation_stops_at_exactly_16_utterances() -> None:
    a, b = ScriptedSpeaker("A", []), ScriptedSpeaker("B", [])  # never end
    chat = await converse(a, b, NOW, DIALOGUE)
    assert len(chat.transcript) == 16 == DIALOGUE.max_utterances
    assert len(a.heard) == len(b.heard) == 8


async def test_an_empty_line_ends_the_conversation_and_is_not_kept() -> None:
    a = ScriptedSpeaker("A", [("Hi.", False)])
    b = ScriptedSpeaker("B", [("", True)])  # what a failed next_utterance gives
    chat = await converse(a, b, NOW, DIALOGUE)
    assert chat.transcript == (("A", "Hi."),)


def test_duration_follows_the_formula() -> None:
    # ceil(chars / 8 / 30): 240 characters are one minute, 241 two, 481 three
    assert conversation_minutes([("A", "x" * 240)], DIALOGUE) == 1
    assert conversation_minutes([("A", "x" * 200), ("B", "y" * 41)], DIALOGUE) == 2
    assert conversation_minutes([("A", "x" * 480)], DIALOGUE) == 2
    assert conversation_minutes([("A", "x" * 481)], DIALOGUE) == 3
    assert conversation_minutes([("A", "Hi.")], DIALOGUE) == 1  # at least one minute
    assert conversation_minutes([], DIALOGUE) == 1
    slow = DialogueSettings(chars_per_word=5, words_per_minute=10)  # 50 characters a minute
    assert conversation_minutes([("A", "x" * 101)], slow) == 3


async def test_converse_with_a_summarizer_gives_the_duration_and_the_chat_record() -> None:
    a = ScriptedSpeaker("Isabella Rodriguez", [("x" * 200, False)])
    b = ScriptedSpeaker(KLAUS, [("y" * 100, True)])
    llm = ScriptedLLM([(purpose("chat_summary"), {"summary": "They talked about the party."})])
    summarize = partial(summarize_chat, Asker(llm, ISABELLA.name), ISABELLA, KLAUS)
    chat = await converse(a, b, NOW, DIALOGUE, summarize)
    assert chat.summary == "They talked about the party."
    assert chat.minutes == 2  # ceil(300 / 240)
    assert chat.ends == NOW + timedelta(minutes=2)
    memory = Memory(KLAUS, InMemoryStore(dim=64), HashEmbedder(), RETRIEVAL, seed=2)
    record = chat_record(memory, chat, chat.ends, importance=6)
    assert record.id == RecordIds(2, KLAUS).next()  # the first of Klaus's ids
    assert (record.kind, record.agent_id, record.importance) == ("chat", KLAUS, 6)
    assert record.description == chat.summary and record.transcript == chat.transcript
    assert MemoryRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert isinstance(chat, Conversation)
