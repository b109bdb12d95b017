"""get_state() / set_state() round-trip, through msgpack, for every stateful class."""

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from actors.mind.memory_store import InMemoryStore
from actors.mind.prompting import Asker, AskStats
from actors.mind.records import MemoryRecord
from actors.mind.reflection import ReflectionTrigger
from serving.scripted import ScriptedLLM
from serving.types import LLMRequest
from serving.wrappers import AccountingLLM, RecordingLLM, ReplayLLM
from tests.fakes import new_id, random_valid_answers
from tests.unit.test_agent import make_agent, observations_at

T0 = datetime(2023, 2, 13, 7)
Case = tuple[Callable[[Path], Awaitable[Any]], Callable[[Path], Any]]


async def _agent(tmp: Path) -> Any:
    agent, _, _ = make_agent(seed=9)
    for i in range(30):
        await agent.step(observations_at(i), T0 + timedelta(minutes=10 * i))
    return agent


async def _asker(_: Path) -> Any:
    asker = Asker(ScriptedLLM(random_valid_answers(1)), "a", seed=2)
    asker.counter = 17
    asker.stats.calls["importance"] = 5
    asker.stats.failures["plan_day"] = 1
    return asker


async def _stats(_: Path) -> Any:
    stats = AskStats()
    stats.retries["reaction"] = 3
    return stats


async def _trigger(_: Path) -> Any:
    trigger = ReflectionTrigger(150)
    trigger.add([MemoryRecord("a", "observation", f"o{i}", T0, 9, id=new_id()) for i in range(4)])
    return trigger


async def _store(_: Path) -> Any:
    store = InMemoryStore(dim=4)
    records = [
        MemoryRecord("a", "observation", "x", T0, 3, id=new_id()),
        MemoryRecord(
            "a", "chat", "talked", T0, 5, transcript=(("a", "hi"), ("b", "yo")), id=new_id()
        ),
        MemoryRecord("b", "reflection", "r", T0, 7, evidence=("e1",), depth=1, id=new_id()),
    ]
    await store.add(records, np.eye(4, dtype=np.float32)[:3])
    await store.touch("a", [records[0].id], T0 + timedelta(hours=2))
    return store


async def _accounting(_: Path) -> Any:
    acc = AccountingLLM(ScriptedLLM(lambda r: "ok"))
    with acc.context(step=3, agent="a"):
        await acc.generate([LLMRequest(prompt="x", purpose="p")])
    return acc


async def _replay(tmp: Path) -> Any:
    path = tmp / "calls.msgpack"
    requests = [LLMRequest(prompt=f"p{i}") for i in range(3)]
    await RecordingLLM(ScriptedLLM(lambda r: r.prompt or ""), path).generate(requests)
    replay = ReplayLLM(path)
    await replay.generate(requests[:2])
    return replay


CASES: dict[str, Case] = {
    "Agent": (_agent, lambda _: make_agent(seed=9)[0]),
    "Asker": (_asker, lambda _: Asker(ScriptedLLM(random_valid_answers(1)), "a", seed=2)),
    "AskStats": (_stats, lambda _: AskStats()),
    "ReflectionTrigger": (_trigger, lambda _: ReflectionTrigger(150)),
    "InMemoryStore": (_store, lambda _: InMemoryStore(dim=4)),
    "AccountingLLM": (_accounting, lambda _: AccountingLLM(ScriptedLLM(lambda r: "ok"))),
    "ReplayLLM": (_replay, lambda tmp: ReplayLLM(tmp / "calls.msgpack")),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_state_round_trips(name: str, tmp_path: Path) -> None:
    build, fresh = CASES[name]
    original = await build(tmp_path)
    state = original.get_state()
    assert state, f"{name} has an empty state after use"
    packed = msgpack.unpackb(msgpack.packb(state))  # plain data only: no pickle
    twin = fresh(tmp_path)
    assert twin.get_state() != state, f"{name}: a fresh instance already has this state"
    twin.set_state(packed)
    assert twin.get_state() == state
