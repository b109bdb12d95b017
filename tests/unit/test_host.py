"""The agent host as a plain object: steps, accounting, conversations, checkpoints, serial mode."""

import asyncio
import json
import pickle
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgpack
import numpy as np
import pytest

from actors.host import AgentHost
from actors.host_protocol import Host
from actors.messages import HostRows, MemoryExport, SeedMemory, Written
from actors.mind.dialogue import Conversation
from actors.mind.events import Observation
from actors.mind.memory_store import InMemoryStore, MemoryStore
from actors.mind.persona import Persona
from actors.mind.settings import MindSettings
from serving.scripted import ScriptedLLM
from serving.types import LLMRequest, LLMResult
from serving.wrappers.serial import SerialLLM
from tests.fakes import HashEmbedder, sample_from_schema

START = datetime(2023, 2, 13, 9, 0)
PERSONAS = [
    Persona("Isabella Rodriguez", 34, "friendly", "runs Hobbs Cafe", home="apartment"),
    Persona("Klaus Mueller", 20, "curious", "student", home="dorm"),
    Persona("Maria Lopez", 21, "energetic", "student", home="dorm"),
]
ISABELLA, KLAUS, MARIA = (p.name for p in PERSONAS)


def seeded_answers(request: LLMRequest) -> Any:
    """A valid answer that depends only on the request's seed (so a resumed run answers alike)."""
    return sample_from_schema(request.json_schema, random.Random(request.seed))


class ConcurrencyLLM:
    """A scripted model that takes a little while and records how many calls overlap."""

    def __init__(self, rules: Any = seeded_answers) -> None:
        self.inner = ScriptedLLM(rules)
        self.in_flight = 0
        self.max_in_flight = 0
        self.batch_sizes: list[int] = []

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.batch_sizes.append(len(requests))
        try:
            await asyncio.sleep(0.001)
            return await self.inner.generate(requests)
        finally:
            self.in_flight -= 1


def make_host(
    llm: Any = None, store: MemoryStore | None = None, sequential: bool = False
) -> tuple[AgentHost, Any, MemoryStore]:
    llm = llm or ScriptedLLM(seeded_answers)
    store = store if store is not None else InMemoryStore(dim=64)
    host = AgentHost(
        PERSONAS,
        settings=MindSettings.model_validate({"reflection": {"threshold": 30}}),
        seed=3,
        llm=llm,
        embedder=HashEmbedder(64),
        store=store,
        sequential=sequential,
    )
    return host, llm, store


def sees(other: str, i: int) -> list[Observation]:
    return [
        Observation("agent", other, f"{other} is reading chapter {i}", "cafe", 2.0),
        Observation("object", "cafe:stove", f"the stove heats pot {i}"),
    ]


def at(i: int) -> datetime:
    return START + timedelta(minutes=10 * i)


async def run(host: AgentHost, steps: range, names: Sequence[str] = (ISABELLA, KLAUS)) -> None:
    for i in steps:
        obs = {n: sees(names[(k + 1) % len(names)], i) for k, n in enumerate(names)}
        await host.step(obs, at(i), i)


async def test_steps_only_the_named_agents_and_accounts_each_call() -> None:
    host, _, store = make_host()
    assert isinstance(host, Host)
    assert await host.ping() is True
    assert await host.names() == [ISABELLA, KLAUS, MARIA]
    result = await host.step({ISABELLA: sees(KLAUS, 0), KLAUS: []}, at(0), 0)
    assert pickle.loads(pickle.dumps(result)) == result  # crosses a process as it is
    actions = result.actions
    assert set(actions) == set(result.written) == {ISABELLA, KLAUS}
    for name, acts in actions.items():
        assert acts and all(a.agent == name for a in acts)
    assert host.agents[MARIA].plan is None and await store.count(MARIA) == 0
    rows = host.accounting.rows()
    assert result.calls == len(rows) > 0
    assert result.tokens == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    written = {n: sorted((w.kind, w.description) for w in ws) for n, ws in result.written.items()}
    for name in (ISABELLA, KLAUS):
        stored = sorted((r.kind, r.description) for r in await store.records(name))
        assert written[name] == stored
    assert ("observation", f"{KLAUS} is reading chapter 0") in written[ISABELLA]

    await host.step({KLAUS: sees(ISABELLA, 1)}, at(1), 1)
    rows = host.accounting.rows()
    assert {(r["step"], r["agent"]) for r in rows} >= {(0, ISABELLA), (0, KLAUS), (1, KLAUS)}
    assert all(r["agent"] in (ISABELLA, KLAUS) and r["step"] in (0, 1) for r in rows)
    assert not any(r["step"] == 1 and r["agent"] == ISABELLA for r in rows)

    with pytest.raises(KeyError, match="Nobody"):
        await host.step({"Nobody": []}, at(2), 2)


async def test_learned_places_reach_the_agents_plans() -> None:
    host, llm, _ = make_host()
    await host.step({MARIA: []}, at(0), 0, learned={MARIA: ["Oak Hill College", "dorm"]})
    maria = host.agents[MARIA]
    assert maria.persona.known_places == ("Oak Hill College", "dorm")
    assert maria.known_places == ["Oak Hill College", "dorm"]
    assert any("Oak Hill College" in json.dumps(r.json_schema) + r.text() for r in llm.calls)
    state = (await host.get_state())[MARIA]
    assert state["known_places"] == ["Oak Hill College", "dorm"]


async def test_drain_returns_calls_and_retrievals_then_empties() -> None:
    host, _, _ = make_host()
    await run(host, range(3))
    await host.interview(ISABELLA, "Who did you see?", at(3))
    drained = await host.drain_rows()
    assert drained.llm_calls and drained.retrievals
    assert {r["agent"] for r in drained.retrievals} <= {ISABELLA, KLAUS}
    assert any(r["agent"] == ISABELLA for r in drained.retrievals)
    assert {"agent", "retrieval_id", "query", "record_id", "score", "rank", "returned"} <= set(
        drained.retrievals[0]
    )
    assert msgpack.unpackb(msgpack.packb(drained.retrievals)) == list(drained.retrievals)
    assert await host.drain_rows() == HostRows((), ())


async def test_a_conversation_through_the_host() -> None:
    host, _, store = make_host()
    await run(host, range(1))
    now = at(1)
    transcript: list[tuple[str, str]] = []
    speakers = (ISABELLA, KLAUS)
    for turn in range(8):
        me, you = speakers[turn % 2], speakers[(turn + 1) % 2]
        line = await host.speak(me, you, tuple(transcript), now, 1)
        assert isinstance(line.text, str) and isinstance(line.end, bool)
        if line.text:
            transcript.append((me, line.text))
        if line.end or not line.text:
            break
    summary = await host.summarize(ISABELLA, KLAUS, tuple(transcript), 1)
    assert isinstance(summary, str) and summary
    conversation = Conversation((ISABELLA, KLAUS), tuple(transcript), summary, now, 5)
    assert await host.drain_written() == {}
    for name in speakers:
        action = await host.finish_conversation(name, conversation, now, 1)
        assert action.kind == "chat_done" and action.description == summary
        assert action.duration_minutes == 5
        (chat,) = await store.records(name, ["chat"])
        assert list(chat.transcript or ()) == transcript
        assert host.agents[name].talking  # for the conversation's minutes
    written = await host.drain_written()
    assert set(written) == set(speakers) and Written("chat", summary) in written[ISABELLA]
    assert await host.drain_written() == {}
    rows = host.accounting.rows()
    assert {r["purpose"] for r in rows if r["step"] == 1} >= {"dialogue", "chat_summary"}
    # Ten minutes later the chat is over: the agents are no longer talking.
    await host.step({ISABELLA: [], KLAUS: []}, at(2), 2)
    assert not host.agents[ISABELLA].talking and not host.agents[KLAUS].talking


async def test_a_conversation_held_on_one_host_in_one_call() -> None:
    host, _, store = make_host()
    await run(host, range(1))
    outcome = await host.converse(ISABELLA, KLAUS, at(1), 1)
    talk = outcome.conversation
    assert talk.participants == (ISABELLA, KLAUS) and talk.transcript and talk.started == at(1)
    assert talk.transcript[0][0] == ISABELLA  # the first named speaks first
    assert [a.kind for a in outcome.done] == ["chat_done", "chat_done"]
    assert all(a.description == talk.summary for a in outcome.done)
    for name in (ISABELLA, KLAUS):
        (chat,) = await store.records(name, ["chat"])
        assert chat.transcript == talk.transcript
        assert Written("chat", talk.summary) in outcome.written[name]
        assert host.agents[name].talking
    assert await host.drain_written() == {}  # reported with the outcome
    rows = host.accounting.rows()
    assert {r["purpose"] for r in rows if r["step"] == 1} >= {"dialogue", "chat_summary"}


async def test_seed_memories_scores_only_the_unscored_in_one_batch() -> None:
    host, llm, store = make_host()
    await host.seed_memories(
        {
            ISABELLA: [
                SeedMemory("likes jazz", 7),
                SeedMemory("met Klaus at the cafe"),
                SeedMemory("hates rain"),
            ],
            MARIA: [SeedMemory("studies physics", 12)],
        },
        at(0),
    )
    asked = [r for r in llm.calls if r.purpose == "importance"]
    assert len(asked) == 2 and llm.batch_sizes == [2]
    records = await store.records(ISABELLA)
    assert [r.description for r in records] == [
        "likes jazz",
        "met Klaus at the cafe",
        "hates rain",
    ]
    assert records[0].importance == 7 and all(r.kind == "observation" for r in records)
    assert all(r.created == START for r in records)
    ((maria,),) = [await store.records(MARIA)]
    assert maria.importance == 10  # clamped
    assert all(r["agent"] == ISABELLA for r in host.accounting.rows())
    assert await host.drain_written() == {}  # starting memories are no step's events


def qdrant_store() -> MemoryStore:
    from actors.qdrant import open_qdrant_store

    return open_qdrant_store(":memory:", dim=64)


@pytest.mark.parametrize("make_store", [lambda: InMemoryStore(dim=64), qdrant_store])
async def test_export_and_restore_return_to_the_checkpoint_exactly(make_store: Any) -> None:
    host, _, store = make_host(store=make_store())
    await run(host, range(6))
    when = at(5)
    state = msgpack.unpackb(msgpack.packb(await host.get_state()))
    exported = await host.export_memories()
    on_disk = msgpack.unpackb(msgpack.packb({n: m.to_dict() for n, m in exported.items()}))
    memories = {n: MemoryExport.from_dict(m) for n, m in on_disk.items()}
    assert memories == exported  # the checkpoint's plain-data form loses nothing
    for name, saved in memories.items():
        dim = 64
        assert len(saved.vectors) == 4 * dim * len(saved.records)
        assert all("embedding" not in r for r in on_disk[name]["records"])
        records, _ = await store.candidates(name, ("observation", "reflection", "plan", "chat"))
        assert [r.id for r in saved.records] == [r.id for r in records]
    assert memories[ISABELLA].records and not memories[MARIA].records

    await run(host, range(6, 12))
    await host.interview(ISABELLA, "What did you read?", at(12))
    after = await host.export_memories()
    assert len(after[ISABELLA].records) > len(memories[ISABELLA].records)
    saved_access = {r.id: r.last_accessed for r in memories[ISABELLA].records}
    touched = [
        r
        for r in after[ISABELLA].records
        if r.id in saved_access and r.last_accessed != saved_access[r.id]
    ]
    assert touched  # retrieval moved last_accessed of checkpointed records

    await host.restore(state, memories, when)
    assert await host.export_memories() == memories  # newer gone, access restored, none doubled
    assert await host.get_state() == state
    for name in (ISABELLA, KLAUS):
        assert await store.count(name) == len(memories[name].records)

    # Into a fresh host with an empty store: the same checkpoint, and the same future.
    fresh, _, _ = make_host(store=make_store())
    await fresh.restore(state, memories, when)
    assert await fresh.export_memories() == memories
    await run(host, range(6, 9))
    await run(fresh, range(6, 9))
    assert await fresh.export_memories() == await host.export_memories()
    assert await fresh.get_state() == await host.get_state()
    await host.close()
    await fresh.close()


async def test_export_vectors_decode_to_the_stored_matrix() -> None:
    host, _, store = make_host()
    await run(host, range(2))
    saved = (await host.export_memories())[KLAUS]
    _, vectors = await store.candidates(KLAUS, ("observation", "reflection", "plan", "chat"))
    decoded = np.frombuffer(saved.vectors, dtype=np.float32).reshape(len(saved.records), -1)
    np.testing.assert_array_equal(decoded, vectors)


async def test_sequential_mode_has_at_most_one_model_call_in_flight() -> None:
    host, llm, _ = make_host(llm=ConcurrencyLLM(), sequential=True)
    await run(host, range(3), names=(ISABELLA, KLAUS, MARIA))
    assert llm.max_in_flight == 1 and set(llm.batch_sizes) == {1}
    assert {r["agent"] for r in host.accounting.rows()} == {ISABELLA, KLAUS, MARIA}
    assert all(r["batch_size"] == 1 for r in host.accounting.rows())

    batched, llm2, _ = make_host(llm=ConcurrencyLLM())
    await run(batched, range(3), names=(ISABELLA, KLAUS, MARIA))
    assert llm2.max_in_flight > 1 and max(llm2.batch_sizes) > 1  # the check can see overlap


async def test_serial_llm_sends_one_request_per_call_one_call_at_a_time() -> None:
    inner = ConcurrencyLLM(lambda request: request.text().upper())
    serial = SerialLLM(inner)
    batches = [
        [LLMRequest(prompt=f"say {b}-{i}", json_schema=None, purpose=f"p{b}{i}") for i in range(3)]
        for b in range(4)
    ]
    results = await asyncio.gather(*[serial.generate(batch) for batch in batches])
    assert inner.max_in_flight == 1 and inner.batch_sizes == [1] * 12
    for batch, got in zip(batches, results, strict=True):
        assert [r.request_id for r in got] == [r.request_id for r in batch]
        assert [r.text for r in got] == [r.text().upper() for r in batch]


async def test_a_step_counts_its_failed_requests_and_the_answers_that_fell_back() -> None:
    def importance_fails(request: LLMRequest) -> Any:
        return "not json" if request.purpose == "importance" else seeded_answers(request)

    host, _, _ = make_host(ScriptedLLM(importance_fails))
    result = await host.step({ISABELLA: sees(KLAUS, 0), KLAUS: sees(ISABELLA, 0)}, at(0), 0)
    failed = [r for r in host.accounting.rows() if not r["ok"]]
    assert result.failed_calls == len(failed) > 0
    assert all(r["purpose"] == "importance" for r in failed)
    asked = sum(a.asker.stats.failures["importance"] for a in host.agents.values())
    assert result.fallbacks == asked > 0 and result.failed_calls == 2 * asked  # asked twice
    state = await host.get_state()  # a checkpoint
    step_1 = {ISABELLA: sees(KLAUS, 1), KLAUS: sees(ISABELLA, 1)}
    first = await host.step(step_1, at(1), 1)
    await host.set_state(state)  # rolled back: the askers' counts are the checkpoint's again
    again = await host.step(step_1, at(1), 1)
    assert again.fallbacks == first.fallbacks > 0  # counted from the checkpoint's counts


async def test_a_backend_that_dies_fails_the_step_and_leaves_no_agent_running() -> None:
    from serving.wrappers import BackendUnavailableError

    def dies_for_isabella(request: LLMRequest) -> Any:  # Klaus's requests are answered
        if f"Name: {ISABELLA}" in (request.messages or ())[0].content:
            return ConnectionError("cannot reach the server: connection refused")
        return seeded_answers(request)

    llm = ConcurrencyLLM(dies_for_isabella)
    host = AgentHost(
        PERSONAS,
        seed=3,
        llm=llm,
        embedder=HashEmbedder(64),
        store=InMemoryStore(dim=64),
        backend_wait_s=0,
    )
    with pytest.raises(BackendUnavailableError, match="connection refused") as info:
        await host.step({ISABELLA: sees(KLAUS, 0), KLAUS: sees(ISABELLA, 0)}, at(0), 0)
    assert info.value.backend == "the LLM service"
    calls = len(llm.batch_sizes)
    await asyncio.sleep(0.05)
    assert len(llm.batch_sizes) == calls and llm.in_flight == 0  # Klaus asks on no more
