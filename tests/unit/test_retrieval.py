"""Retrieval as the spec says (section 2): Memory + a store + the hashing embedder."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from actors.mind.memory import Memory
from actors.mind.memory_store import InMemoryStore
from actors.mind.records import MemoryRecord
from actors.mind.retrieval import min_max
from actors.mind.settings import MindSettings, RetrievalSettings
from actors.qdrant import open_qdrant_store
from tests.fakes import HashEmbedder, new_id

T0 = datetime(2023, 2, 13, 7, 0)
DIM = 64


def _rec(
    description: str,
    importance: int = 5,
    hours_ago: float = 0.0,
    now: datetime = T0 + timedelta(hours=100),
    kind: str = "observation",
    created: datetime = T0,
    rid: str | None = None,
) -> MemoryRecord:
    extra: dict[str, Any] = {"id": rid or new_id()}
    if kind == "chat":
        extra["transcript"] = (("Ann", description),)
    return MemoryRecord(
        agent_id="ann",
        kind=kind,
        description=description,
        created=created,
        last_accessed=now - timedelta(hours=hours_ago),
        importance=importance,
        **extra,
    )


def _memory(settings: RetrievalSettings | None = None, store: Any = None) -> Memory:
    return Memory(
        "ann",
        store if store is not None else InMemoryStore(dim=DIM),
        HashEmbedder(dim=DIM),
        settings or MindSettings.from_preset("paper").retrieval,
    )


async def test_worked_example_recency_after_ten_game_hours() -> None:
    memory = _memory()
    now = T0 + timedelta(hours=10)
    await memory.remember([_rec("Ann bakes bread", now=now, hours_ago=10)])
    await memory.retrieve(["bread"], now)
    (row,) = memory.drain_traces()
    assert round(row.recency_raw, 4) == 0.9511
    assert row.recency_raw == pytest.approx(0.995**10)


def test_equal_raw_values_normalise_to_half() -> None:
    assert min_max(np.array([3.0, 3.0, 3.0])).tolist() == [0.5, 0.5, 0.5]
    assert min_max(np.array([1.0, 3.0, 2.0])).tolist() == [0.0, 1.0, 0.5]


async def test_equal_raw_values_normalise_to_half_in_a_retrieval() -> None:
    memory = _memory()
    now = T0 + timedelta(hours=100)
    await memory.remember([_rec("walk", 7, 5), _rec("coffee", 7, 20)])
    await memory.retrieve(["coffee"], now)
    rows = memory.drain_traces()
    assert [r.importance for r in rows] == [0.5, 0.5]
    assert sorted(r.relevance for r in rows) == [0.0, 1.0]


# The fixed set for the presets: query "coffee", now = T0 + 100 h, last accessed h hours ago.
#   A "coffee"      imp 1   h 100   rel 1      -> rec_n 0, imp_n 0,   rel_n 1
#   B "walk"        imp 10  h 50    rel 0      -> rec_n x, imp_n 1,   rel_n 0
#   C "read"        imp 6   h 0     rel 0      -> rec_n 1, imp_n 5/9, rel_n 0
#   D "coffee tea"  imp 1   h 0     rel 1/sqrt2 -> rec_n 1, imp_n 0,   rel_n 0.7071
# with x = (d^50 - d^100) / (1 - d^100): 0.4376 for d = 0.995 (paper), 0.3770 for 0.99 (reference).
#   paper     (1, 1, 1):     A 1.0000  B 1.4376  C 1.5556  D 1.7071  -> D C B A
#   reference (0.5, 2, 3):   A 3.0000  B 2.1885  C 1.6111  D 2.6213  -> A D B C
SPECS = {
    "A": ("coffee", 1, 100.0),
    "B": ("walk", 10, 50.0),
    "C": ("read", 6, 0.0),
    "D": ("coffee tea", 1, 0.0),
}
NOW = T0 + timedelta(hours=100)


def _by_hand(w_rec: float, w_imp: float, w_rel: float, decay: float) -> dict[str, float]:
    x = (decay**50 - decay**100) / (1 - decay**100)
    rec = {"A": 0.0, "B": x, "C": 1.0, "D": 1.0}
    imp = {"A": 0.0, "B": 1.0, "C": 5 / 9, "D": 0.0}
    rel = {"A": 1.0, "B": 0.0, "C": 0.0, "D": 1 / math.sqrt(2)}
    return {n: w_rec * rec[n] + w_imp * imp[n] + w_rel * rel[n] for n in SPECS}


def _fixed_set() -> dict[str, MemoryRecord]:
    return {
        name: _rec(desc, imp, hours, now=NOW, created=T0 + timedelta(minutes=i))
        for i, (name, (desc, imp, hours)) in enumerate(SPECS.items())
    }


@pytest.mark.parametrize(
    ("preset", "weights", "expected"),
    [("paper", (1.0, 1.0, 1.0, 0.995), "DCBA"), ("reference", (0.5, 2.0, 3.0, 0.99), "ADBC")],
)
@pytest.mark.parametrize("backend", ["inmemory", "qdrant"])
async def test_presets_rank_as_the_formula_predicts(
    preset: str, weights: tuple[float, float, float, float], expected: str, backend: str
) -> None:
    settings = MindSettings.from_preset(preset).retrieval
    assert (
        settings.w_recency,
        settings.w_importance,
        settings.w_relevance,
        settings.recency_decay,
    ) == weights
    hand = _by_hand(*weights)
    assert "".join(sorted(hand, key=lambda n: -hand[n])) == expected

    store: Any = InMemoryStore(dim=DIM) if backend == "inmemory" else open_qdrant_store(dim=DIM)
    memory = _memory(settings, store)
    records = _fixed_set()
    await memory.remember(list(records.values()))
    name_of = {r.id: n for n, r in records.items()}
    out = await memory.retrieve(["coffee"], NOW, k=4)
    assert "".join(name_of[r.id] for r in out["coffee"]) == expected
    rows = memory.drain_traces()
    assert {name_of[r.record_id]: r.relevance_raw for r in rows} == pytest.approx(
        {"A": 1.0, "B": 0.0, "C": 0.0, "D": 1 / math.sqrt(2)}
    )
    for row in rows:
        assert row.score == pytest.approx(hand[name_of[row.record_id]])
    if backend == "qdrant":
        await store.close()


async def test_presets_differ_in_order() -> None:
    paper, reference = _by_hand(1, 1, 1, 0.995), _by_hand(0.5, 2, 3, 0.99)
    assert sorted(paper, key=lambda n: -paper[n]) != sorted(reference, key=lambda n: -reference[n])


@pytest.mark.parametrize("backend", ["inmemory", "qdrant"])
async def test_last_accessed_changes_only_on_returned_records(backend: str) -> None:
    store: Any = InMemoryStore(dim=DIM) if backend == "inmemory" else open_qdrant_store(dim=DIM)
    memory = _memory(store=store)
    records = _fixed_set()
    await memory.remember(list(records.values()))
    out = await memory.retrieve(["coffee"], NOW + timedelta(hours=1), k=2)
    returned = {r.id for r in out["coffee"]}
    assert len(returned) == 2
    assert all(r.last_accessed == NOW + timedelta(hours=1) for r in out["coffee"])
    for r in await store.records("ann"):
        original = next(x for x in records.values() if x.id == r.id)
        if r.id in returned:
            assert r.last_accessed == NOW + timedelta(hours=1)
        else:
            assert r.last_accessed == original.last_accessed
    if backend == "qdrant":
        await store.close()


async def test_chats_excluded_unless_include_chats() -> None:
    chat = _rec("coffee with Bob", 9, 0, now=NOW, kind="chat")
    plain = _rec("walk", 2, 3, now=NOW)
    memory = _memory()
    await memory.remember([chat, plain])
    out = await memory.retrieve(["coffee"], NOW)
    assert [r.id for r in out["coffee"]] == [plain.id]
    assert {r.record_id for r in memory.drain_traces()} == {plain.id}

    with_chats = MindSettings.from_preset("paper", retrieval={"include_chats": True}).retrieval
    memory = _memory(with_chats)
    await memory.remember([chat, plain])
    out = await memory.retrieve(["coffee"], NOW)
    assert [r.id for r in out["coffee"]] == [chat.id, plain.id]


async def test_idle_records_excluded() -> None:
    idle = _rec("Ann is idle", 1, 0, now=NOW)
    busy = _rec("Ann paints", 3, 10, now=NOW)
    memory = _memory()
    await memory.remember([idle, busy])
    out = await memory.retrieve(["Ann is idle"], NOW)
    assert [r.id for r in out["Ann is idle"]] == [busy.id]
    assert [r.record_id for r in memory.drain_traces()] == [busy.id]
    stored = {r.id: r for r in await memory.records()}
    assert stored[idle.id].last_accessed == idle.last_accessed  # not touched


async def test_ties_broken_by_newer_created_then_id() -> None:
    ids = ["c" * 32, "a" * 32, "b" * 32, "d" * 32]
    created = [T0, T0, T0, T0 + timedelta(minutes=5)]
    records = [
        _rec("same words", 4, 2, now=NOW, created=c, rid=i)
        for i, c in zip(ids, created, strict=True)
    ]
    orders = []
    for shuffle in (records, records[::-1], records[1:] + records[:1]):
        memory = _memory()
        await memory.remember(shuffle)
        out = await memory.retrieve(["same words"], NOW)
        orders.append([r.id for r in out["same words"]])
        assert {r.score for r in memory.drain_traces()} == {1.5}  # 0.5 + 0.5 + 0.5
    assert orders == [["d" * 32, "a" * 32, "b" * 32, "c" * 32]] * 3


@pytest.mark.parametrize("preset", ["paper", "reference"])
async def test_trace_has_one_row_per_candidate(preset: str) -> None:
    settings = MindSettings.from_preset(preset).retrieval
    memory = _memory(settings)
    rng = np.random.default_rng(0)
    words = ["coffee", "bread", "walk", "paint", "read", "garden", "market", "letter"]
    records = [
        _rec(
            " ".join(rng.choice(words, size=3)),
            int(rng.integers(1, 11)),
            float(rng.uniform(0, 90)),
            now=NOW,
            created=T0 + timedelta(minutes=i),
        )
        for i in range(20)
    ]
    await memory.remember(records)
    k = 7
    out = await memory.retrieve(["coffee and bread", "a walk"], NOW, k=k)
    rows = memory.drain_traces()
    for query in ("coffee and bread", "a walk"):
        mine = [r for r in rows if r.query == query]
        assert len(mine) == len(records)
        assert sorted(r.record_id for r in mine) == sorted(r.id for r in records)
        assert [r.rank for r in mine] == list(range(len(records)))
        assert sum(r.returned for r in mine) == k
        assert [r.record_id for r in mine if r.returned] == [r.id for r in out[query]]
        assert all(mine[i].score >= mine[i + 1].score for i in range(len(mine) - 1))
        for r in mine:
            expected = (
                settings.w_recency * r.recency
                + settings.w_importance * r.importance
                + settings.w_relevance * r.relevance
            )
            assert r.score == pytest.approx(expected, abs=1e-12)
            assert 0.0 <= r.recency <= 1.0 and 0.0 <= r.relevance <= 1.0
        for field in ("recency", "importance", "relevance"):
            raw = np.array([getattr(r, f"{field}_raw") for r in mine])
            norm = np.array([getattr(r, field) for r in mine])
            np.testing.assert_allclose(norm, (raw - raw.min()) / (raw.max() - raw.min()))
        for r in mine:
            assert r.recency_raw == pytest.approx(
                settings.recency_decay
                ** (
                    (NOW - next(x for x in records if x.id == r.record_id).accessed).total_seconds()
                    / 3600
                )
            )
