"""One suite for every MemoryStore: in-process, embedded Qdrant in memory and in a folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from actors.mind.memory_store import InMemoryStore, MemoryStore
from actors.mind.records import MemoryRecord
from actors.qdrant import EmbeddedQdrantStore, QdrantStore, ServerQdrantStore, open_qdrant_store
from actors.qdrant.points import point_id
from tests.fakes import new_id

DIM = 16
T0 = datetime(2023, 2, 13, 8, 0)


class Factory:
    """Makes stores of one kind; for the folder kind, each call reopens the same folder.

    The server kind is the server layout (one collection, a tenant index, every call filtered
    by agent) on a local in-memory client: no Qdrant server can run here."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.opened: list[QdrantStore] = []
        self.shared = InMemoryStore(dim=DIM)

    def __call__(self) -> Any:
        if self.kind == "inmemory":
            return self.shared
        store: QdrantStore
        if self.kind == "qdrant-server":
            store = ServerQdrantStore("http://127.0.0.1:6333", dim=DIM)
            store.start(client=AsyncQdrantClient(location=":memory:"))
        else:
            where = ":memory:" if self.kind == "qdrant-memory" else str(self.folder / "q")
            store = open_qdrant_store(where, dim=DIM)
        self.opened.append(store)
        return store


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _records(agent: str, n: int, start: int = 0) -> list[MemoryRecord]:
    kinds = ["observation", "reflection", "plan"]
    out = []
    for i in range(start, start + n):
        kind = kinds[i % 3]
        out.append(
            MemoryRecord(
                agent_id=agent,
                kind=kind,
                description=f"{agent} record {i}",
                created=T0 + timedelta(minutes=10 * i),
                importance=1 + i % 10,
                evidence=("a" * 32,) if kind == "reflection" else (),
                depth=1 if kind == "reflection" else 0,
                id=new_id(),
            )
        )
    return out


def _chat(agent: str, minutes: int) -> MemoryRecord:
    return MemoryRecord(
        agent_id=agent,
        kind="chat",
        description=f"{agent} chatted",
        created=T0 + timedelta(minutes=minutes),
        importance=3,
        transcript=(("Ann", "hi"), ("Bob", "hello")),
        id=new_id(),
    )


@pytest.fixture(params=["inmemory", "qdrant-memory", "qdrant-folder", "qdrant-server"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    factory = Factory(request.param, tmp_path)
    yield factory
    for s in factory.opened:
        await s.close()


async def test_is_a_memory_store(make: Factory) -> None:
    assert isinstance(make(), MemoryStore)


async def test_add_and_read_back_in_creation_order(make: Factory) -> None:
    store = make()
    rng = np.random.default_rng(0)
    recs = _records("ann", 7)
    vecs = _unit(rng, 7)
    await store.add(recs[3:], vecs[3:])
    await store.add(recs[:3], vecs[:3])
    assert await store.count("ann") == 7
    got = await store.records("ann")
    assert sorted(r.id for r in got) == sorted(r.id for r in recs)
    if make.kind == "inmemory":  # insertion order
        assert [r.id for r in got] == [r.id for r in recs[3:] + recs[:3]]
    by_id = {r.id: r for r in got}
    for r in recs:
        assert by_id[r.id] == r
    cands, matrix = await store.candidates("ann", ("observation", "reflection", "plan"))
    assert len(cands) == 7 and matrix.shape == (7, DIM)
    want = {r.id: v for r, v in zip(recs, vecs, strict=True)}
    for r, row in zip(cands, matrix, strict=True):
        np.testing.assert_allclose(row, want[r.id], atol=1e-6)


async def test_reloaded_qdrant_returns_creation_order(make: Factory) -> None:
    store = make()
    recs = _records("ann", 6)
    await store.add(recs[::-1], _unit(np.random.default_rng(1), 6))
    if make.kind == "inmemory":  # insertion order by design
        assert [r.id for r in await store.records("ann")] == [r.id for r in recs[::-1]]
        return
    if make.kind == "qdrant-folder":
        await store.close()
        store = make()
    elif make.kind == "qdrant-memory":
        store._cache.clear()  # the cache keeps insertion order; a reload sorts by creation
    assert [r.id for r in await store.records("ann")] == [r.id for r in recs]


async def test_kinds_filter(make: Factory) -> None:
    store = make()
    recs = [*_records("ann", 6), _chat("ann", 500)]
    await store.add(recs, _unit(np.random.default_rng(2), 7))
    plans = await store.records("ann", ["plan"])
    assert {r.id for r in plans} == {r.id for r in recs if r.kind == "plan"}
    cands, matrix = await store.candidates("ann", ("observation", "reflection"))
    assert {r.kind for r in cands} == {"observation", "reflection"}
    assert len(cands) == 4 and matrix.shape == (4, DIM)
    chats, _ = await store.candidates("ann", ("chat",))
    assert [r.id for r in chats] == [recs[-1].id]
    assert chats[0].transcript == (("Ann", "hi"), ("Bob", "hello"))
    assert len(await store.records("ann")) == 7


async def test_get_order_and_key_error(make: Factory) -> None:
    store = make()
    recs = _records("ann", 5)
    await store.add(recs, _unit(np.random.default_rng(3), 5))
    ids = [recs[4].id, recs[0].id, recs[2].id]
    assert [r.id for r in await store.get("ann", ids)] == ids
    with pytest.raises(KeyError):
        await store.get("ann", [recs[0].id, "f" * 32])
    await store.add(_records("bob", 1), _unit(np.random.default_rng(4), 1))
    bob_id = (await store.records("bob"))[0].id
    with pytest.raises(KeyError):
        await store.get("ann", [bob_id])


async def test_touch_changes_exactly_the_given_ids(make: Factory) -> None:
    store = make()
    recs = _records("ann", 6)
    await store.add(recs, _unit(np.random.default_rng(5), 6))
    when = T0 + timedelta(days=2)
    touched = {recs[1].id, recs[4].id}
    await store.touch("ann", list(touched), when)
    for r in await store.records("ann"):
        original = next(x for x in recs if x.id == r.id)
        if r.id in touched:
            assert r.last_accessed == when
        else:
            assert r.last_accessed == original.last_accessed == original.created
        assert r.created == original.created and r.description == original.description


async def test_delete_created_after(make: Factory) -> None:
    store = make()
    recs = _records("ann", 10)  # created every 10 minutes from T0
    await store.add(recs, _unit(np.random.default_rng(6), 10))
    await store.add(_records("bob", 10), _unit(np.random.default_rng(7), 10))
    n = await store.delete_created_after("ann", T0 + timedelta(minutes=40))
    assert n == 5
    assert [r.id for r in await store.records("ann")] == [r.id for r in recs[:5]]
    cands, matrix = await store.candidates("ann", ("observation", "reflection", "plan"))
    assert len(cands) == 5 and matrix.shape == (5, DIM)
    assert await store.count("ann") == 5
    assert await store.count("bob") == 10
    assert await store.delete_created_after("ann", T0 + timedelta(minutes=40)) == 0
    assert await store.delete_created_after("nobody", T0) == 0


async def test_per_agent_isolation(make: Factory) -> None:
    store = make()
    rng = np.random.default_rng(8)
    await store.add(_records("ann", 4), _unit(rng, 4))
    await store.add(_records("bob", 3), _unit(rng, 3))
    mixed = _records("ann", 1, start=10) + _records("bob", 1, start=10)
    await store.add(mixed, _unit(rng, 2))
    assert await store.count("ann") == 5 and await store.count("bob") == 4
    assert {r.agent_id for r in await store.records("ann")} == {"ann"}
    assert {r.agent_id for r in await store.records("bob")} == {"bob"}
    assert await store.count("carol") == 0
    assert await store.records("carol") == []
    cands, matrix = await store.candidates("carol", ("observation",))
    assert cands == [] and matrix.shape == (0, DIM)
    bob_ids = [r.id for r in await store.records("bob")]
    await store.touch("bob", bob_ids, T0 + timedelta(days=1))
    assert all(r.last_accessed == r.created for r in await store.records("ann"))


async def test_a_record_comes_back_as_stored_and_its_vector_apart(make: Factory) -> None:
    store = make()
    rec = _records("ann", 1)[0]
    vec = _unit(np.random.default_rng(9), 1)
    await store.add([rec], vec)
    (got,) = await store.records("ann")
    assert got == rec
    cands, matrix = await store.candidates("ann", ("observation",))
    assert cands == [rec] and np.allclose(matrix, vec, atol=1e-6)


async def test_add_rejects_mismatched_vectors(make: Factory) -> None:
    store = make()
    with pytest.raises(ValueError):
        await store.add(_records("ann", 2), _unit(np.random.default_rng(10), 3))


async def test_reopened_folder_store_keeps_everything(tmp_path: Path) -> None:
    folder = str(tmp_path / "store")
    store = open_qdrant_store(folder, dim=DIM)
    rng = np.random.default_rng(11)
    recs = [*_records("ann", 8), _chat("ann", 999)]
    vecs = _unit(rng, 9)
    await store.add(recs, vecs)
    await store.add(_records("bob with spaces/slash", 2), _unit(rng, 2))
    when = T0 + timedelta(days=3)
    await store.touch("ann", [recs[2].id, recs[8].id], when)
    await store.delete_created_after("ann", T0 + timedelta(minutes=65))  # drops records 7, chat
    await store.close()

    again = open_qdrant_store(folder, dim=DIM)
    try:
        got = await again.records("ann")
        assert [r.id for r in got] == [r.id for r in recs[:7]]
        assert got[2].last_accessed == when
        assert all(r.last_accessed == r.created for i, r in enumerate(got) if i != 2)
        assert got == [r.touched(when) if i == 2 else r for i, r in enumerate(recs[:7])]
        cands, matrix = await again.candidates("ann", ("observation", "reflection", "plan"))
        assert [r.id for r in cands] == [r.id for r in recs[:7]]
        np.testing.assert_allclose(matrix, vecs[:7], atol=1e-6)
        assert await again.count("bob with spaces/slash") == 2
        # writes after reopening go on from the loaded state
        await again.add(_records("ann", 1, start=20), _unit(rng, 1))
        assert await again.count("ann") == 8
    finally:
        await again.close()


async def test_qdrant_payload_layout() -> None:
    store = open_qdrant_store(dim=DIM, collection_prefix="t")
    assert isinstance(store, EmbeddedQdrantStore)
    try:
        rec = _records("ann", 1)[0]
        await store.add([rec], _unit(np.random.default_rng(12), 1))
        assert store.collection("ann") == "t__ann"
        assert store.collection("a b") != store.collection("a_b")
        (point,) = await store.client.retrieve("t__ann", [point_id(rec.id)], with_payload=True)
        assert point.payload is not None
        assert point.payload["created_ts"] == rec.created.timestamp()
        assert "embedding" not in point.payload
        assert point.payload["description"] == rec.description
    finally:
        await store.close()


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")  # no server here
async def test_the_opener_picks_the_layout_and_constructing_opens_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "never"
    idle = EmbeddedQdrantStore(str(folder), dim=DIM)
    assert not folder.exists()  # no client, no lock, no folder until start()
    with pytest.raises(RuntimeError, match="not started"):
        await idle.count("ann")
    server = open_qdrant_store("http://127.0.0.1:6333", dim=DIM, collection_prefix="run7")
    assert isinstance(server, ServerQdrantStore) and server.collection("ann") == "run7__memory"
    await server.close()


async def test_the_server_layout_keeps_agents_apart_in_one_collection() -> None:
    client = AsyncQdrantClient(location=":memory:")
    store = ServerQdrantStore("http://127.0.0.1:6333", dim=DIM, collection_prefix="t")
    store.start(client=client)
    rng = np.random.default_rng(13)
    ann, bob = _records("ann", 3), _records("bob", 2)
    await store.add([*ann, *bob], _unit(rng, 5))
    assert [c.name for c in (await client.get_collections()).collections] == ["t__memory"]
    assert [r.id for r in await store.records("ann")] == [r.id for r in ann]
    assert await store.count("bob") == 2
    with pytest.raises(KeyError, match="bob: no records"):
        await store.get("bob", [ann[0].id])  # another agent's record is not bob's
    assert await store.delete_created_after("ann", T0) == 2 and await store.count("bob") == 2
    await store.close()
