"""Deterministic record and retrieval ids: per agent and seed, given by the agent's memory,
resumable."""

import asyncio
import hashlib
import random
import uuid
from datetime import datetime, timedelta

import pytest

from actors.mind.agent import Agent
from actors.mind.events import Observation
from actors.mind.memory import Memory
from actors.mind.memory_store import InMemoryStore
from actors.mind.persona import Persona
from actors.mind.records import MemoryRecord, RecordIds
from actors.mind.settings import MindSettings
from serving.scripted import ScriptedLLM
from tests.fakes import HashEmbedder, sample_from_schema

START = datetime(2023, 2, 13, 7, 0)
ISABELLA = Persona("Isabella Rodriguez", 34, "friendly", "runs Hobbs Cafe", home="apartment")
KLAUS = Persona("Klaus Mueller", 20, "curious", "student", home="dorm")


def seeded_answers(request):
    """A valid answer that depends only on the request's seed (so a resumed run answers alike)."""
    return sample_from_schema(request.json_schema, random.Random(request.seed))


def make_agent(persona: Persona, seed: int, store: InMemoryStore | None = None) -> Agent:
    store = store or InMemoryStore(dim=64)
    settings = MindSettings.from_preset("paper", reflection={"threshold": 30})
    memory = Memory(persona.name, store, HashEmbedder(), settings.retrieval, seed=seed)
    return Agent(persona, ScriptedLLM(seeded_answers), memory, settings, seed=seed)


def observations(agent: str, i: int) -> list[Observation]:
    other = "Klaus Mueller" if agent != "Klaus Mueller" else "Isabella Rodriguez"
    return [
        Observation("agent", other, f"{other} is reading chapter {i}", "cafe", 2),
        Observation("object", "cafe:stove", f"the stove is heating pot {i}", "cafe", 1),
    ]


async def live(agent: Agent, steps: range) -> None:
    for i in steps:
        await agent.step(observations(agent.name, i), START + timedelta(minutes=10 * i))


def test_ids_are_a_seeded_prefix_and_a_counter_and_valid_uuid_hex() -> None:
    ids = RecordIds(7, "Isabella Rodriguez")
    prefix = hashlib.sha256(b"7:Isabella Rodriguez").hexdigest()[:16]
    first, second = ids.next(), ids.next()
    assert first == prefix + "0" * 15 + "1" and second == prefix + "0" * 15 + "2"
    for i in (first, second):
        assert len(i) == 32 and uuid.UUID(hex=i).hex == i
    twin = RecordIds(7, "Isabella Rodriguez")
    twin.set_state(ids.get_state())
    assert twin.next() == ids.next()
    assert RecordIds(8, "Isabella Rodriguez").next()[:16] != prefix


def test_a_record_gets_its_id_from_its_agents_memory_and_from_nowhere_else() -> None:
    memory = Memory("a", InMemoryStore(dim=64), HashEmbedder(), MindSettings().retrieval, seed=4)
    ids = RecordIds(4, "a")
    made = [memory.record("observation", f"x{i}", START, 3) for i in range(2)]
    assert [r.id for r in made] == [ids.next(), ids.next()]
    assert memory.get_state() == {"record_ids": {"counter": 2}, "retrieval_ids": {"counter": 0}}
    with pytest.raises(TypeError, match="id"):  # no record without an id from a source
        MemoryRecord("a", "observation", "x", START, 3)  # type: ignore[call-arg]


async def test_agents_stepped_concurrently_each_use_their_own_sequence() -> None:
    store = InMemoryStore(dim=64)
    isabella, klaus = make_agent(ISABELLA, 1, store), make_agent(KLAUS, 1, store)
    await asyncio.gather(live(isabella, range(12)), live(klaus, range(12)))
    for agent in (isabella, klaus):
        ids = [r.id for r in await store.records(agent.name)]
        assert ids and all(i.startswith(agent.memory.ids.prefix) for i in ids)
        counters = sorted(int(i[16:], 16) for i in ids)
        assert counters == list(range(1, len(ids) + 1))  # none taken by the other agent
        assert agent.memory.ids.counter == len(ids)
    assert isabella.memory.ids.prefix != klaus.memory.ids.prefix


async def test_the_same_seed_gives_the_same_ids_and_a_resumed_run_the_same_records() -> None:
    whole = make_agent(ISABELLA, 5)
    await live(whole, range(30))

    first_half = make_agent(ISABELLA, 5)
    await live(first_half, range(15))
    store = InMemoryStore(dim=64)
    store.set_state(first_half.memory.store.get_state())  # type: ignore[attr-defined]
    resumed = make_agent(ISABELLA, 5, store)
    resumed.set_state(first_half.get_state())
    await live(resumed, range(15, 30))

    def rows(records: list[MemoryRecord]) -> list[tuple]:
        return [(r.id, r.kind, r.description, r.created, r.evidence) for r in records]

    assert rows(await resumed.memory.records()) == rows(await whole.memory.records())
    assert resumed.get_state() == whole.get_state()

    other_seed = make_agent(ISABELLA, 6)
    await live(other_seed, range(3))
    assert not {r.id for r in await other_seed.memory.records()} & {
        r.id for r in await whole.memory.records()
    }


async def _remembering(memory: Memory, n: int) -> None:
    await memory.remember(
        [memory.record("observation", f"the stove is hot {i}", START, 3) for i in range(n)]
    )


async def test_two_retrievals_with_the_same_query_in_one_step_get_different_ids() -> None:
    memory = Memory("a", InMemoryStore(dim=64), HashEmbedder(), MindSettings().retrieval, seed=4)
    await _remembering(memory, 3)
    await memory.retrieve(["the stove"], START)
    await memory.retrieve(["the stove"], START)  # the same agent, query and game time
    await memory.retrieve(["the stove", "the stove"], START)  # twice in one call, too
    rows = memory.drain_traces()
    by_id: dict[str, list] = {}
    for row in rows:
        by_id.setdefault(row.retrieval_id, []).append(row)
    prefix = RecordIds(4, "a").prefix
    assert list(by_id) == [f"{prefix}-r{i:08d}" for i in (1, 2, 3, 4)]  # in order, none shared
    for one in by_id.values():  # a retrieval's rows: every candidate once, ranked 0..n-1
        assert sorted(r.rank for r in one) == [0, 1, 2]
        assert len({r.record_id for r in one}) == 3
    assert memory.get_state()["retrieval_ids"] == {"counter": 4}


async def test_retrieval_ids_survive_get_state_and_set_state() -> None:
    store = InMemoryStore(dim=64)
    memory = Memory("a", store, HashEmbedder(), MindSettings().retrieval, seed=4)
    await _remembering(memory, 2)
    await memory.retrieve(["x"], START)
    saved = memory.get_state()
    await memory.retrieve(["x"], START)
    later = [r.retrieval_id for r in memory.drain_traces()][-1]
    # a restored memory (a rollback to the checkpoint, or a new host) continues the sequence
    for twin in (memory, Memory("a", store, HashEmbedder(), MindSettings().retrieval, seed=4)):
        twin.set_state(saved)
        await twin.retrieve(["x"], START)
        assert {r.retrieval_id for r in twin.drain_traces()} == {later}
    # a state from before retrieval ids (only record ids) reads as counter 0
    memory.set_state({"record_ids": saved["record_ids"]})
    assert memory.retrieval_ids.counter == 0
    await memory.retrieve(["x"], START)
    assert {r.retrieval_id for r in memory.drain_traces()} == {f"{memory.ids.prefix}-r00000001"}


async def test_an_agents_retrieval_ids_are_in_its_state_and_a_resumed_agent_continues() -> None:
    whole = make_agent(ISABELLA, 5)
    await live(whole, range(20))
    first_half = make_agent(ISABELLA, 5)
    await live(first_half, range(10))
    store = InMemoryStore(dim=64)
    store.set_state(first_half.memory.store.get_state())  # type: ignore[attr-defined]
    resumed = make_agent(ISABELLA, 5, store)
    resumed.set_state(first_half.get_state())
    await live(resumed, range(10, 20))
    ids = [r.retrieval_id for r in whole.memory.drain_traces()]
    assert ids and whole.get_state()["retrieval_ids"]["counter"] == len(dict.fromkeys(ids))
    halves = first_half.memory.drain_traces() + resumed.memory.drain_traces()
    assert [r.retrieval_id for r in halves] == ids
