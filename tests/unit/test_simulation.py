"""The driver in one process: hosts are local objects, the model is scripted (no Ray here).

What is checked: every table gets rows with its documented columns, retrievals join memories on
``record_id``, agents that only continue make no model call, checkpoints, a run interrupted and
resumed equals one that was not (retrieval ids included), and a host that dies mid-run is
restarted with nothing lost or duplicated.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from actors.mind.memory_store import InMemoryStore
from cluster.checkpoints import checkpoint_dir, checkpoint_steps
from cluster.hosts import HostDiedError, PlacedHost, local_host_factory
from cluster.outputs import EVENTS, LLM_CALLS, MEMORIES, RETRIEVALS
from cluster.simulation import Simulation
from scenarios.loader import mind_settings, parse_scenario
from serving.scripted import ScriptedLLM
from tests.fakes import HashEmbedder, content_seeded_answers, scripted_host_factory
from tests.run_state import final_state

DIM = 64


def scenario_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "cafe-test",
        "start": "2024-03-04T08:00:00",
        "step_seconds": 600,
        "duration_hours": 2,
        "checkpoint_every": 4,
        "settings": {
            "perception": {"vision_radius": 8, "attention_bandwidth": 4, "retention": 6},
            "reflection": {"threshold": 12},
            "dialogue": {"cooldown_steps": 3, "max_utterances": 4},
        },
        "world": {
            "name": "Testville",
            "sectors": [
                {
                    "name": "Ada's house",
                    "position": [0, 0],
                    "arenas": [
                        {"name": "bedroom", "objects": [{"name": "bed"}, {"name": "desk"}]},
                        {"name": "kitchen", "objects": [{"name": "stove"}]},
                    ],
                },
                {
                    "name": "Corner Cafe",
                    "position": [40, 0],
                    "arenas": [
                        {
                            "name": "cafe",
                            "objects": [{"name": "espresso machine"}, {"name": "table"}],
                        }
                    ],
                },
            ],
        },
        "agents": [
            {
                "name": name,
                "age": 30 + i,
                "traits": "curious, kind",
                "lifestyle": "wakes at 7, sleeps at 23",
                "home": "Ada's house:bedroom" if i == 0 else "Ada's house:kitchen",
                "start": "Corner Cafe:cafe",
                "known_places": ["Corner Cafe:cafe"],
                "relationships": {other: "a friend" for other in NAMES if other != name},
                "memories": [
                    f"{name} wants to talk about the town fair",
                    {"text": "x", "importance": 3},
                ],
            }
            for i, name in enumerate(NAMES)
        ],
        "events": [{"at": "2024-03-04T08:30:00", "text": "The church bells ring"}],
    }
    data.update(overrides)
    return data


NAMES = ["Ada Byrne", "Ben Ortiz", "Cleo Park"]


class Setup:
    """A scenario with local hosts over shared stores (a store outlives its host)."""

    def __init__(self, tmp: Path, per_host: int = 2, **overrides: Any) -> None:
        self.scenario = parse_scenario(scenario_data(**overrides))
        self.settings = mind_settings(self.scenario)
        self.llm = ScriptedLLM(content_seeded_answers(7))
        self.stores: dict[int, InMemoryStore] = {}
        self.per_host = per_host
        self.made: list[PlacedHost] = []
        base = local_host_factory(
            self.settings,
            3,
            self.llm,
            HashEmbedder(DIM),
            lambda i: self.stores.setdefault(i, InMemoryStore(DIM)),
        )

        def factory(index: int, personas: Any) -> PlacedHost:
            host = base(index, personas)
            self.made.append(host)
            return host

        self.factory = factory
        self.tmp = tmp

    def sim(self, name: str, **kwargs: Any) -> Simulation:
        sim = Simulation(
            self.scenario, self.settings, self.tmp / name, self.factory, self.per_host, **kwargs
        )
        sim.place_hosts()
        return sim


async def full_run(setup: Setup, name: str, steps: int) -> Simulation:
    sim = setup.sim(name)
    await sim.begin()
    await sim.run(steps)
    await sim.finish()
    return sim


async def test_a_run_writes_every_table_with_its_columns(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    sim = await full_run(setup, "run", 12)
    run = tmp_path / "run"
    for name, schema in (
        ("events", EVENTS),
        ("llm_calls", LLM_CALLS),
        ("retrievals", RETRIEVALS),
        ("memories", MEMORIES),
    ):
        table = pq.read_table(run / f"{name}.parquet")
        assert table.schema.names == schema.names, name
        assert table.num_rows > 0, name
    events = pq.read_table(run / "events.parquet").to_pylist()
    kinds = {e["kind"] for e in events}
    assert {"activity", "observation", "plan", "event"} <= kinds
    assert {e["agent"] for e in events if e["kind"] == "plan"} == set(NAMES)
    bells = [e for e in events if e["kind"] == "event"]
    assert {e["agent"] for e in bells} == set(NAMES) and len(bells) == 3
    calls = pq.read_table(run / "llm_calls.parquet").to_pylist()
    assert {c["agent"] for c in calls} == set(NAMES)
    assert all(c["step"] is not None and c["purpose"] for c in calls)
    assert len(calls) == len(setup.llm.calls)
    assert checkpoint_steps(run) == [0, 4, 8, 12]
    assert sim.stats.steps == 12 and sim.stats.agent_steps == 36
    # agents that only continued their action were not sent to their hosts
    assert sim.stats.thinking_steps < sim.stats.agent_steps


async def test_retrievals_join_memories_on_record_id(tmp_path: Path) -> None:
    await full_run(Setup(tmp_path), "run", 12)
    run = tmp_path / "run"
    retrievals = pq.read_table(run / "retrievals.parquet")
    memories = pq.read_table(run / "memories.parquet")
    assert "record_id" in memories.schema.names and "id" not in memories.schema.names
    # every candidate of every retrieval is one of its agent's records, found by the join
    kept = memories.select(["agent", "record_id", "kind", "description"])
    joined = retrievals.join(kept, keys=["agent", "record_id"], join_type="inner")
    assert retrievals.num_rows > 0 and joined.num_rows == retrievals.num_rows
    assert None not in joined.column("description").to_pylist()
    # a retrieval's rows share its id: one agent, query and step; each candidate ranked once
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in retrievals.to_pylist():
        by_id.setdefault(row["retrieval_id"], []).append(row)
    for rid, rows in by_id.items():
        assert len({(r["agent"], r["query"], r["step"]) for r in rows}) == 1, rid
        assert sorted(r["rank"] for r in rows) == list(range(len(rows))), rid
        assert len({r["record_id"] for r in rows}) == len(rows), rid
    # the case the ids are for: one agent asks the same query more than once in a step
    repeated = Counter((r[0]["agent"], r[0]["step"], r[0]["query"]) for r in by_id.values())
    assert max(repeated.values()) >= 2


async def test_a_checkpoint_from_before_record_id_still_finishes(tmp_path: Path) -> None:
    sim = await full_run(Setup(tmp_path), "run", 4)
    run = tmp_path / "run"
    assert sim.last_checkpoint_step is not None
    saved = checkpoint_dir(run, sim.last_checkpoint_step) / "memories.parquet"
    new = pq.read_table(saved)
    old = new.rename_columns(["id" if n == "record_id" else n for n in new.schema.names])
    pq.write_table(old, saved)  # as versions before record_id wrote it
    await sim.finish()
    assert pq.read_table(run / "memories.parquet").equals(new)


async def test_conversations_run_between_hosts(tmp_path: Path) -> None:
    setup = Setup(tmp_path, per_host=1)
    sim = await full_run(setup, "run", 12)
    events = pq.read_table(tmp_path / "run" / "events.parquet").to_pylist()
    assert sim.stats.conversations > 0
    utterances = [e for e in events if e["kind"] == "utterance"]
    assert utterances and {e["agent"] for e in utterances} <= set(NAMES)
    memories = pq.read_table(tmp_path / "run" / "memories.parquet").to_pylist()
    assert any(m["kind"] == "chat" for m in memories)


class _Counting:
    """A host that counts the calls it gets (the driver's crossings of the host boundary)."""

    def __init__(self, host: Any, calls: Counter[str]) -> None:
        self._host, self._calls = host, calls

    def __getattr__(self, name: str) -> Any:
        self._calls[name] += 1
        return getattr(self._host, name)


def _tables(run: Path) -> dict[str, list[dict[str, Any]]]:
    drop = {"latency_s", "engine_s", "request_id", "call"}
    out = {}
    for table in ("events", "memories"):
        rows = pq.read_table(run / f"{table}.parquet").to_pylist()
        out[table] = sorted(({k: v for k, v in r.items() if k not in drop} for r in rows), key=repr)
    return out


async def test_a_conversation_on_one_host_stays_there_and_says_the_same(tmp_path: Path) -> None:
    runs = {}
    for per_host in (1, 3):
        setup = Setup(tmp_path / str(per_host), per_host=per_host)
        calls: Counter[str] = Counter()
        sim = setup.sim("run")
        for placed in sim.hosts:
            placed.host = _Counting(placed.host, calls)
        await sim.begin()
        await sim.run(12)
        await sim.finish()
        runs[per_host] = (sim.stats.conversations, calls, _tables(tmp_path / str(per_host) / "run"))
    (across, calls_across, tables_across), (within, calls_within, tables_within) = (
        runs[1],
        runs[3],
    )
    assert across == within > 0
    assert calls_across["speak"] > 0 and calls_across["converse"] == 0
    assert calls_within["converse"] == within and calls_within["speak"] == 0
    assert calls_within["finish_conversation"] == calls_within["summarize"] == 0
    assert tables_within == tables_across


async def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = await full_run(Setup(tmp_path / "a"), "run", 12)
    setup = Setup(tmp_path / "b")

    def interrupt(sim: Simulation) -> None:
        if sim.step_no == 6:  # after checkpoint 4: steps 4 and 5 wrote memories, then a crash
            raise KeyboardInterrupt

    first = setup.sim("run", on_step=interrupt)
    await first.begin()
    with pytest.raises(KeyboardInterrupt):
        await first.run(12)
    assert checkpoint_steps(tmp_path / "b" / "run") == [0, 4]
    store = setup.stores[0]
    assert await store.count(NAMES[0]) > 0
    second = setup.sim("run")  # the same stores: what steps 4-5 wrote must be discarded
    assert await second.resume() == 4
    await second.run(12)
    await second.finish()
    assert final_state(tmp_path / "b" / "run") == final_state(tmp_path / "a" / "run")
    for table in ("events", "llm_calls", "retrievals", "memories"):
        a = pq.read_table(tmp_path / "a" / "run" / f"{table}.parquet")
        b = pq.read_table(tmp_path / "b" / "run" / f"{table}.parquet")
        drop = [c for c in ("latency_s", "engine_s", "request_id") if c in a.schema.names]
        assert b.drop_columns(drop).sort_by("step").to_pylist() == (
            a.drop_columns(drop).sort_by("step").to_pylist()
        ), table
    assert whole.stats.steps == 12


class _Dies:
    """A host that dies (as a Ray actor's proxy reports it) when asked for its state the
    ``nth`` time: in the middle of a checkpoint, after it has written memories since the
    previous one."""

    def __init__(self, host: Any, index: int, nth: int) -> None:
        self._host, self._index, self._nth, self._calls, self.died = host, index, nth, 0, False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._host, name)
        if name != "get_state":
            return method

        async def get_state() -> Any:
            self._calls += 1
            if self._calls == self._nth:
                self.died = True
                raise HostDiedError(self._index, RuntimeError("the host's process exited"))
            return await method()

        return get_state


async def test_a_host_that_dies_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    await full_run(Setup(tmp_path / "a", per_host=1), "run", 12)
    setup = Setup(tmp_path / "b", per_host=1)
    sim = setup.sim("run")
    doomed = sim.hosts[1]
    dying = _Dies(doomed.host, doomed.index, nth=3)  # at checkpoint 8
    doomed.host = dying
    await sim.begin()
    await sim.run(12)
    await sim.finish()
    assert dying.died and sim.stats.recoveries == 1
    assert sim.hosts[1] is not doomed  # a new host took its place
    state = final_state(tmp_path / "b" / "run")
    for mem in state["memories"].values():
        ids = [r["id"] for r in mem["records"]]
        assert len(ids) == len(set(ids))
    assert state == final_state(tmp_path / "a" / "run")
    rows = {
        run: sorted(
            pq.read_table(tmp_path / run / "run" / "retrievals.parquet").to_pylist(), key=repr
        )
        for run in ("a", "b")
    }
    assert rows["b"] == rows["a"]  # the replayed retrievals got the ids they had the first time


async def test_an_imported_generative_agents_scenario_runs(tmp_path: Path) -> None:
    from scenarios.import_ga import import_ga_to_file
    from scenarios.loader import load_scenario

    ville = Path(__file__).parents[3] / "shared" / "data" / "the_ville_n25"
    import_ga_to_file(ville, tmp_path / "ville.yaml", hours=1)
    scenario = load_scenario(tmp_path / "ville.yaml")
    factory = scripted_host_factory(scenario, answers_seed=1, dim=DIM)
    sim = Simulation(
        scenario, mind_settings(scenario), tmp_path / "run", factory, 13, checkpoint_every=2
    )
    sim.place_hosts()
    await sim.begin()
    await sim.run(3)
    await sim.finish()
    events = pq.read_table(tmp_path / "run" / "events.parquet").to_pylist()
    planned = {e["agent"] for e in events if e["kind"] == "plan"}
    assert planned == {a.name for a in scenario.agents} and len(planned) == 25
