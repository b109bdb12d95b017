"""The whole mind over a game day, with a model that answers randomly but validly."""

from datetime import datetime, timedelta

import msgpack
import pytest

from actors.mind.agent import Agent
from actors.mind.events import Observation
from actors.mind.memory import Memory
from actors.mind.memory_store import InMemoryStore
from actors.mind.persona import Persona
from actors.mind.settings import MindSettings
from serving.scripted import ScriptedLLM
from tests.fakes import HashEmbedder, random_valid_answers

START = datetime(2023, 2, 13, 0, 0)
PERSONA = Persona(
    "Isabella Rodriguez",
    34,
    "friendly, outgoing, hospitable",
    "runs Hobbs Cafe, goes to bed around 11 pm",
    current_situation="planning a Valentine's Day party at the cafe",
    daily_requirements=("open the cafe at 8 am", "serve customers"),
    home="Isabella's apartment",
    known_places=("Hobbs Cafe", "Isabella's apartment", "Johnson Park"),
)


def make_agent(seed: int = 0) -> tuple[Agent, ScriptedLLM, InMemoryStore]:
    llm = ScriptedLLM(random_valid_answers(seed))
    store = InMemoryStore(dim=64)
    settings = MindSettings.from_preset("paper", reflection={"threshold": 40})
    memory = Memory(PERSONA.name, store, HashEmbedder(), settings.retrieval, seed=seed)
    return Agent(PERSONA, llm, memory, settings, seed=seed), llm, store


def observations_at(i: int) -> list[Observation]:
    if i % 7:
        return []
    return [
        Observation("agent", "Klaus Mueller", f"Klaus Mueller is reading chapter {i}", "cafe", 2),
        Observation("object", "cafe:counter", "the counter is idle", "cafe", 1),
    ]


async def live_a_day(agent: Agent, llm: ScriptedLLM, minutes: int = 10) -> int:
    quiet_steps = quiet_calls = 0
    for i in range(24 * 60 // minutes):
        now = START + timedelta(minutes=i * minutes)
        before = len(llm.calls)
        continuing = agent.action_until is not None and now < agent.action_until
        obs = observations_at(i)
        actions = await agent.step(obs, now)
        if continuing and not obs and agent.plan is not None and agent.plan.date == now.date():
            quiet_steps += 1
            quiet_calls += len(llm.calls) - before
            assert actions == []
        assert agent.plan is not None and agent.plan.total_minutes() == 1440
    assert quiet_steps > 10
    return quiet_calls


async def test_an_agent_lives_a_day_and_its_memory_is_well_formed() -> None:
    agent, llm, store = make_agent()
    quiet_calls = await live_a_day(agent, llm)
    assert quiet_calls == 0  # continuing an action makes no model call

    records = await store.records(PERSONA.name)
    kinds = {r.kind for r in records}
    assert {"observation", "plan", "reflection"} <= kinds
    by_id = {r.id: r for r in records}
    for r in records:
        assert 1 <= r.importance <= 10 and r.agent_id == PERSONA.name
        if r.kind == "reflection":
            assert r.evidence and all(e in by_id for e in r.evidence)
            assert r.depth == 1 + max(by_id[e].depth for e in r.evidence)
        else:
            assert r.depth == 0
    assert agent.reflections >= 1
    idle = [r for r in records if "idle" in r.description]
    assert idle and all(r.importance == 1 for r in idle)


async def test_state_round_trips_exactly_and_resumes_identically() -> None:
    agent, _, _ = make_agent(seed=3)
    for i in range(40):
        await agent.step(observations_at(i), START + timedelta(minutes=10 * i))
    state = msgpack.unpackb(msgpack.packb(agent.get_state()))
    twin, _, _ = make_agent(seed=3)
    twin.set_state(state)
    assert twin.get_state() == agent.get_state()


async def test_interview_is_grounded_in_retrieved_memories() -> None:
    agent, llm, store = make_agent()
    for i in range(10):
        await agent.step(observations_at(i), START + timedelta(hours=8, minutes=10 * i))
    answer, used = await agent.interview("Who did you see today?", START + timedelta(hours=12))
    assert isinstance(answer, str) and answer
    ids = {r.id for r in await store.records(PERSONA.name)}
    assert used and set(used) <= ids
    assert llm.calls[-1].purpose == "interview"


@pytest.mark.parametrize("seed", [1, 2])
async def test_bad_answers_never_crash_a_day(seed: int) -> None:
    garbage = iter(range(10**6))

    def sometimes_garbage(request):
        n = next(garbage)
        return "not json" if n % 3 == 0 else random_valid_answers(seed + n)(request)

    agent, _, store = make_agent(seed)
    agent.asker.llm = ScriptedLLM(sometimes_garbage)
    for i in range(0, 24 * 6, 3):
        await agent.step(observations_at(i), START + timedelta(minutes=10 * i))
    assert sum(agent.asker.stats.retries.values()) > 0  # garbage was met, retried, survived
    assert await store.count(PERSONA.name) > 0


async def test_two_agents_converse_and_both_remember_it() -> None:
    from functools import partial

    from actors.mind.dialogue import converse, summarize_chat

    isabella, _, store_a = make_agent(seed=4)
    klaus, _, store_b = make_agent(seed=5)
    klaus.persona = Persona("Klaus Mueller", 20, "curious", "student", home="dorm")
    klaus.memory.agent_id = klaus.asker.agent_id = klaus.persona.name
    now = START + timedelta(hours=10)
    await isabella.step([], now)
    await klaus.step([], now)
    talk = await converse(
        isabella.speaker(now),
        klaus.speaker(now),
        now,
        isabella.settings.dialogue,
        partial(summarize_chat, isabella.asker, isabella.persona, klaus.name),
    )
    assert 1 <= len(talk.transcript) <= 16
    for agent, store in ((isabella, store_a), (klaus, store_b)):
        action = await agent.finish_conversation(talk, now)
        assert action.description == talk.summary and action.duration_minutes == talk.minutes
        chats = await store.records(agent.name, ["chat"])
        assert len(chats) == 1 and chats[0].transcript == talk.transcript
        memos = [
            r for r in await store.records(agent.name, ["reflection"]) if chats[0].id in r.evidence
        ]
        assert memos  # post-chat reflections cite the chat
        assert agent.plan is not None and agent.plan.total_minutes() == 1440
    assert klaus.last_talked[isabella.name] == now


@pytest.mark.parametrize("flag", ["asleep", "talking"])
async def test_an_agent_asleep_or_talking_is_not_reacted_to(flag: str) -> None:
    agent, llm, _ = make_agent()
    now = START + timedelta(hours=10)
    await agent.step([], now)
    obs = Observation(
        "agent", "Klaus Mueller", "Klaus Mueller is at the desk", "cafe", 2, **{flag: True}
    )
    before = len(llm.calls)
    await agent.step([obs], now + timedelta(minutes=1))
    assert not {r.purpose for r in llm.calls[before:]} & {"relationship", "reaction"}
    assert not agent.asleep and not agent.talking
    plain = Observation("agent", "Klaus Mueller", "Klaus Mueller is at the window", "cafe", 2)
    before = len(llm.calls)
    await agent.step([plain], now + timedelta(minutes=2))
    assert "reaction" in {r.purpose for r in llm.calls[before:]}


async def test_talking_lasts_for_the_minutes_of_a_finished_chat() -> None:
    from actors.mind.dialogue import Conversation

    agent, _, _ = make_agent()
    now = START + timedelta(hours=10)
    await agent.step([], now)
    assert not agent.talking
    talk = Conversation(
        ("Isabella Rodriguez", "Klaus Mueller"), (("Klaus Mueller", "Hi"),), "a chat", now, 20
    )
    await agent.finish_conversation(talk, now)
    assert agent.talking
    await agent.step([], now + timedelta(minutes=10))
    assert agent.talking
    twin, _, _ = make_agent()
    twin.set_state(agent.get_state())
    assert twin.talking
    await agent.step([], now + timedelta(minutes=20))
    assert not agent.talking


async def test_learned_places_join_the_persona_and_the_plans() -> None:
    agent, llm, _ = make_agent()
    agent.learn_places(["Hobbs Cafe", "Oak Hill College", "Oak Hill College"])
    assert agent.persona.known_places == (*PERSONA.known_places, "Oak Hill College")
    assert agent.known_places == list(agent.persona.known_places)
    await agent.step([], START + timedelta(hours=7))
    assert any("Oak Hill College" in str(r.json_schema) + r.text() for r in llm.calls)
    twin, _, _ = make_agent()
    twin.set_state(agent.get_state())
    assert twin.persona.known_places == agent.persona.known_places


async def test_seed_memories_and_summaries() -> None:
    agent, llm, store = make_agent()
    records = await agent.seed_memories(
        [("is planning a party", 8), ("knows Klaus", None), ("the counter is idle", None)], START
    )
    assert records[0].importance == 8 and records[2].importance == 1
    assert [r.purpose for r in llm.calls] == ["importance"]  # only the non-idle unscored one
    assert [r.id for r in await store.records(PERSONA.name)] == [r.id for r in records]
    assert all(r.id.startswith(agent.memory.ids.prefix) for r in records)
    summary = await agent.summarize("Klaus Mueller", [("Klaus Mueller", "Hello there")])
    assert isinstance(summary, str) and summary
    assert llm.calls[-1].purpose == "chat_summary"
