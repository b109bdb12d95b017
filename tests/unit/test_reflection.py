"""Reflection (spec section 4): the trigger, cited insights, depth, failures, post-chat notes."""

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from actors.mind.memory import Memory
from actors.mind.memory_store import InMemoryStore
from actors.mind.persona import Persona
from actors.mind.prompting import Asker
from actors.mind.records import MemoryRecord
from actors.mind.reflection import (
    ReflectionTrigger,
    focal_records,
    insights_schema,
    reflect,
    reflect_after_chat,
)
from actors.mind.settings import ImportanceSettings, ReflectionSettings, RetrievalSettings
from serving.scripted import Rule, ScriptedLLM
from serving.types import LLMRequest
from tests.fakes import HashEmbedder, new_id

NAME = "Klaus Mueller"
PERSONA = Persona(NAME, 20, "curious, kind", "a student who studies at the library")
T0 = datetime(2023, 2, 13, 9, 0)
IMPORTANCE = ImportanceSettings()
QUESTIONS = [
    "How goes gentrification research, housing paper, neighbourhood essay?",
    "Why Maria laughs, gives novel, smiles warmly?",
]
TOPICS = [
    "Klaus writes gentrification research notes",
    "Klaus reads an urban housing paper",
    "Klaus drafts a neighbourhood essay",
    "Maria laughs with Klaus at the cafe",
    "Maria gives Klaus a novel",
    "Maria smiles warmly at Klaus",
]


def make_memory(k: int = 30) -> Memory:
    return Memory(NAME, InMemoryStore(dim=1024), HashEmbedder(1024), RetrievalSettings(top_k=k))


def obs(description: str, minutes: int, importance: int = 5) -> MemoryRecord:
    return MemoryRecord(
        NAME, "observation", description, T0 + timedelta(minutes=minutes), importance, id=new_id()
    )


def user_text(request: LLMRequest) -> str:
    assert request.messages is not None
    return request.messages[-1].content


def statements(request: LLMRequest) -> dict[int, str]:
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^(\d+)\. (.*)$", user_text(request), re.MULTILINE)
    }


def insights(request: LLMRequest) -> dict:
    """Cites up to five statements, reflections first; names the question in the insight."""
    question = re.search(r"mind: (.*)$", user_text(request), re.MULTILINE)
    assert question is not None
    numbered = statements(request)
    cited = sorted(numbered, key=lambda n: ("believes" not in numbered[n], n))[:5]
    count = (request.json_schema or {})["properties"]["insights"]["minItems"]
    return {
        "insights": [
            {"insight": f"Klaus believes {i} on {question.group(1)}", "evidence": cited}
            for i in range(count)
        ]
    }


def rules(**overrides: Any) -> list[Rule]:
    """ScriptedLLM rules by purpose."""
    answers: dict[str, Any] = {
        "reflection_questions": {"questions": QUESTIONS},
        "reflection_insights": insights,
        "importance": {"importance": 7},
        "chat_reflection": {
            "plans": "Klaus will bring Maria the housing paper tomorrow",
            "memo": "Maria is curious about gentrification",
        },
    }
    answers.update(overrides)
    return [(purpose, answer) for purpose, answer in answers.items()]


# --- the trigger -------------------------------------------------------------------------


def test_importance_10_observations_fire_on_the_15th_not_the_14th() -> None:
    trigger = ReflectionTrigger(150)
    fired = [trigger.add([obs(f"Klaus sees thing {i}", i, 10)]) for i in range(1, 16)]
    assert fired == [False] * 14 + [True]
    trigger.reset()
    assert trigger.get_state() == {"total": 0}
    assert not trigger.add([obs("Klaus sees one more thing", 20, 10)])


def test_reflections_plans_and_chats_do_not_count() -> None:
    trigger = ReflectionTrigger(150)
    others = [
        MemoryRecord(NAME, "reflection", "Klaus believes x", T0, 10, depth=1, id=new_id()),
        MemoryRecord(NAME, "plan", "Klaus plans to study", T0, 10, id=new_id()),
        MemoryRecord(
            NAME, "chat", "Klaus chats", T0, 10, transcript=(("Klaus", "hi"),), id=new_id()
        ),
    ]
    for _ in range(20):
        assert not trigger.add(others)
    assert trigger.get_state() == {"total": 0}
    assert trigger.add([obs("Klaus sees a fire", 1, 10)] * 15)
    restored = ReflectionTrigger(150)
    restored.set_state(trigger.get_state())
    assert restored.total == 150 and restored.due


# --- reflect -----------------------------------------------------------------------------


async def test_insights_cite_only_what_was_retrieved_for_their_question() -> None:
    memory = make_memory()
    await memory.remember([obs(d, 0) for d in TOPICS])
    settings = ReflectionSettings(questions=2, insights_per_question=3, retrieval_k=3)
    llm = ScriptedLLM(rules())
    asker = Asker(llm, NAME)
    now = T0 + timedelta(hours=2)

    made = await reflect(asker, memory, PERSONA, now, settings, IMPORTANCE)

    assert len(made) == 6  # questions * insights
    returned: dict[str, set[str]] = {}
    for row in memory.drain_traces():
        if row.returned:
            returned.setdefault(row.query, set()).add(row.record_id)
    assert set(returned) == set(QUESTIONS)
    assert not returned[QUESTIONS[0]] & returned[QUESTIONS[1]]  # so a mix-up would show
    by_id = {r.id: r for r in await memory.records()}
    for record in made:
        question = next(q for q in QUESTIONS if record.description.endswith(q))
        assert record.kind == "reflection" and record.evidence
        assert set(record.evidence) <= returned[question]
        assert record.depth == 1 + max(by_id[e].depth for e in record.evidence) == 1
        assert record.importance == 7 and record.created == now
        assert record.expires == now + timedelta(days=30)
        assert record.id in by_id  # stored
    importance_calls = [r for r in llm.calls if r.purpose == "importance"]
    assert len(importance_calls) == 6 and llm.batch_sizes[-1] == 6  # scored in one batch
    assert asker.stats.failures.total() == 0


async def test_reflections_on_reflections_have_depth_2() -> None:
    memory = make_memory()
    await memory.remember([obs(d, 0) for d in TOPICS])
    settings = ReflectionSettings(questions=2, insights_per_question=2, retrieval_k=8)
    asker = Asker(ScriptedLLM(rules()), NAME)
    first = await reflect(asker, memory, PERSONA, T0 + timedelta(hours=1), settings, IMPORTANCE)
    assert {r.depth for r in first} == {1}

    second = await reflect(asker, memory, PERSONA, T0 + timedelta(hours=2), settings, IMPORTANCE)
    by_id = {r.id: r for r in await memory.records()}
    for record in second:
        assert record.depth == 1 + max(by_id[e].depth for e in record.evidence)
    assert {r.depth for r in second} == {2}
    assert len(await memory.records(["reflection"])) == 8


async def test_citations_outside_the_statements_cannot_validate_and_are_skipped() -> None:
    schema = insights_schema(3, 2)
    assert schema["properties"]["insights"]["items"]["properties"]["evidence"]["items"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 3,
    }

    def bad_for_the_first(request: LLMRequest) -> dict:
        answer = insights(request)
        if QUESTIONS[0] in user_text(request):
            answer["insights"][0]["evidence"] = [len(statements(request)) + 1]
        return answer

    memory = make_memory()
    await memory.remember([obs(d, 0) for d in TOPICS])
    settings = ReflectionSettings(questions=2, insights_per_question=2, retrieval_k=3)
    asker = Asker(ScriptedLLM(rules(reflection_insights=bad_for_the_first)), NAME)

    made = await reflect(asker, memory, PERSONA, T0 + timedelta(hours=1), settings, IMPORTANCE)

    assert len(made) == 2 and all(r.description.endswith(QUESTIONS[1]) for r in made)
    assert asker.stats.failures["reflection_insights"] == 1


@pytest.mark.parametrize(
    "purpose, answer",
    [
        ("reflection_questions", {"questions": ["only one?"]}),  # too few
        ("reflection_questions", "not json"),
        ("reflection_insights", {"insights": []}),  # too few
        ("reflection_insights", ValueError("engine error")),
    ],
)
async def test_an_invalid_answer_skips_without_raising(purpose: str, answer: object) -> None:
    memory = make_memory()
    await memory.remember([obs(d, 0) for d in TOPICS])
    settings = ReflectionSettings(questions=2, insights_per_question=2)
    asker = Asker(ScriptedLLM(rules(**{purpose: answer})), NAME)

    made = await reflect(asker, memory, PERSONA, T0 + timedelta(hours=1), settings, IMPORTANCE)

    assert made == []
    assert await memory.records(["reflection"]) == []
    assert asker.stats.failures[purpose] == (1 if purpose == "reflection_questions" else 2)


async def test_focal_records_recent_and_since_last_reflection() -> None:
    memory = make_memory()
    await memory.remember([obs(f"Klaus sees thing {i}", i) for i in range(6)])
    await memory.remember(
        [
            MemoryRecord(
                NAME, "reflection", "Klaus believes x", T0 + timedelta(minutes=3), 5, id=new_id()
            )
        ]
    )
    await memory.remember([obs("the chair is idle", 7)])
    recent = await focal_records(memory, ReflectionSettings(focal_records=4))
    assert [r.description for r in recent] == [
        "Klaus sees thing 3",
        "Klaus believes x",
        "Klaus sees thing 4",
        "Klaus sees thing 5",
    ]
    since = await focal_records(memory, ReflectionSettings(focal_source="since_last_reflection"))
    assert [r.description for r in since] == ["Klaus sees thing 4", "Klaus sees thing 5"]


# --- after a chat ------------------------------------------------------------------------


async def test_post_chat_reflections_cite_the_chat() -> None:
    memory = make_memory()
    chat = MemoryRecord(
        NAME,
        "chat",
        "Klaus and Maria talked about gentrification",
        T0,
        6,
        transcript=(("Klaus", "I study housing."), ("Maria", "Tell me more!")),
        id=new_id(),
    )
    await memory.remember([chat])
    llm = ScriptedLLM(rules())
    asker = Asker(llm, NAME)
    now = T0 + timedelta(minutes=5)

    made = await reflect_after_chat(
        asker, memory, PERSONA, chat, now, ReflectionSettings(), IMPORTANCE
    )

    assert [r.description for r in made] == [
        "Klaus will bring Maria the housing paper tomorrow",
        "Maria is curious about gentrification",
    ]
    assert all(r.evidence == (chat.id,) and r.depth == 1 for r in made)
    assert all(r.kind == "reflection" and r.importance == 7 for r in made)
    assert len(await memory.records(["reflection"])) == 2
    assert "Maria: Tell me more!" in user_text(llm.calls[0])

    off = await reflect_after_chat(
        asker, memory, PERSONA, chat, now, ReflectionSettings(post_chat=False), IMPORTANCE
    )
    failed = await reflect_after_chat(
        Asker(ScriptedLLM(rules(chat_reflection="nope")), NAME),
        memory,
        PERSONA,
        chat,
        now,
        ReflectionSettings(),
        IMPORTANCE,
    )
    assert off == [] and failed == []
