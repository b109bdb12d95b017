"""Measures of a run whose truth is known (``measures/``): a scripted model where Ada tells Ben
about her party in a conversation and Cleo, never told, claims to know. The run goes through the
real driver with local hosts and the real MiniLM embedder; the measures read its folder."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from actors.mind.memory_store import InMemoryStore
from cluster.hosts import local_host_factory
from cluster.run import RunOptions, start_run
from measures.measure_run import measure_run, scalar_measures
from measures.run_data import MeasureError
from measures.table import MEASURES
from scenarios.loader import mind_settings, parse_scenario
from serving.embedding import MiniLMEmbedder
from serving.scripted import ScriptedLLM
from serving.types import LLMRequest
from tests.fakes import content_seeded_answers

ADA, BEN, CLEO = "Ada Byrne", "Ben Ortiz", "Cleo Park"
PARTY_LINE = "Ben, I am throwing a party at the Corner Cafe on Friday at 8pm, please come."
KNOWS_OF = {  # (who, of whom): says yes. Mutual: Ada-Ben, Ada-Cleo; Ben knows Cleo, not back.
    (ADA, BEN): True,
    (BEN, ADA): True,
    (ADA, CLEO): True,
    (CLEO, ADA): True,
    (BEN, CLEO): True,
    (CLEO, BEN): False,
}


def scenario() -> Any:
    def agent(name: str, home: str, known: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "age": 30,
            "traits": "kind",
            "lifestyle": "wakes at 7, sleeps at 23",
            "home": home,
            "known_places": known,
            **extra,
        }

    cafe = ["Corner Cafe:cafe"]
    data = {
        "name": "party-test",
        "start": "2024-03-04T12:00:00",
        "step_seconds": 600,
        "duration_hours": 1,
        "checkpoint_every": 3,
        "settings": {"dialogue": {"max_utterances": 4}},
        "world": {
            "sectors": [
                {
                    "name": "Corner Cafe",
                    "position": [0, 0],
                    "arenas": [
                        {"name": "cafe", "objects": [{"name": "table"}, {"name": "counter"}]},
                    ],
                },
                {
                    "name": "Cleo's house",
                    "position": [400, 400],
                    "arenas": [{"name": "bedroom", "objects": [{"name": "bed"}]}],
                },
            ]
        },
        "agents": [
            agent(
                ADA,
                "Corner Cafe:cafe",
                cafe,
                memories=[{"text": "Ada Byrne is throwing a party at the cafe.", "importance": 6}],
            ),
            agent(BEN, "Corner Cafe:cafe", cafe),
            agent(CLEO, "Cleo's house:bedroom", ["Cleo's house:bedroom"]),
        ],
        "measures": {
            "information": [
                {
                    "name": "party",
                    "text": "Ada Byrne is throwing a party at the Corner Cafe on Friday at 8pm.",
                    "question": "Do you know about a party?",
                    "seeded_in": [ADA],
                    "keywords": ["party"],
                }
            ],
            "gatherings": [
                {
                    "name": "party",
                    "place": "Corner Cafe",
                    "start": "2024-03-04T12:00:00",
                    "end": "2024-03-04T12:20:00",
                    "told": [ADA],
                    "information": "party",
                }
            ],
        },
    }
    return parse_scenario(data)


def speaker(request: LLMRequest) -> str:
    system = request.messages[0].content if request.messages else ""
    return next(n for n in (ADA, BEN, CLEO) if system.startswith(f"You are {n}."))


def rules(request: LLMRequest) -> Any:
    if request.purpose == "reaction":  # they meet at 12:00 but talk only later
        return {"reaction": "continue" if ", 12:00" in request.text() else "talk"}
    if request.purpose == "dialogue":
        if speaker(request) == ADA:
            return {"utterance": PARTY_LINE, "end": False}
        return {"utterance": "Thank you, I will be there.", "end": True}
    if request.purpose == "probe":
        who, text = speaker(request), request.text()
        if "party" in text.split("Question:")[-1]:
            return {"knows": True, "what": "There is a party."}  # Cleo's is a hallucination
        other = next(n for n in (ADA, BEN, CLEO) if f"Do you know of {n}?" in text)
        return {"knows": KNOWS_OF[(who, other)]}  # the relationship probe: yes or no only
    return content_seeded_answers(5)(request)


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    e = MiniLMEmbedder()
    e.start()
    return e


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory, embedder: MiniLMEmbedder) -> Any:
    run_dir = tmp_path_factory.mktemp("measures") / "run"
    town = scenario()
    llm = ScriptedLLM(rules)
    stores: dict[int, InMemoryStore] = {}
    factory = local_host_factory(
        mind_settings(town), 0, llm, embedder, lambda i: stores.setdefault(i, InMemoryStore(384))
    )
    options = RunOptions(steps=6, checkpoint_every=3, agents_per_host=3, progress=False)
    start_run(town, options, out=run_dir, factory=factory)
    measured = measure_run_sync(run_dir, llm, embedder)
    return run_dir, measured, llm


def measure_run_sync(run_dir: Path, llm: ScriptedLLM, embedder: MiniLMEmbedder, **kw: Any) -> Any:
    import asyncio

    return asyncio.run(measure_run(run_dir, llm=llm, embedder=embedder, **kw))


def test_awareness_is_exactly_the_told_and_the_hallucination_is_counted(measured_run) -> None:
    run_dir, measured, _ = measured_run
    party = measured.summary["information"]["party"]["by_step"]
    assert party["0"]["aware_agents"] == [ADA]  # the seeded memory; Ben has not heard yet
    assert sorted(party["0"]["hallucinating_agents"]) == [BEN, CLEO]
    assert party["6"]["aware_agents"] == [ADA, BEN]  # Ben heard it in the conversation
    assert party["6"]["hallucinating_agents"] == [CLEO]
    assert party["6"]["share"] == pytest.approx(2 / 3, abs=1e-3)
    table = pq.read_table(run_dir / "measures.parquet")
    assert table.schema.names == MEASURES.names
    rows = [r for r in table.to_pylist() if r["measure"] == "aware" and r["step"] == 6]
    evidence = {r["subject"]: r["evidence"] for r in rows}
    assert evidence[f"party/{CLEO}"] == []
    ben_records = {
        r["record_id"]: r for r in pq.read_table(run_dir / "memories.parquet").to_pylist()
    }
    (ben_evidence,) = evidence[f"party/{BEN}"]
    record = ben_records[ben_evidence]
    assert record["agent"] == BEN and any(PARTY_LINE in line for _, line in record["transcript"])


def test_awareness_over_time_counts_from_the_first_supporting_record(measured_run) -> None:
    _, measured, _ = measured_run
    curve = measured.summary["awareness_over_time"]["party"]
    assert curve[0] == ["2024-03-04T12:00:00", pytest.approx(1 / 3, abs=1e-3)]  # Ada's seed
    assert curve[1][1] == curve[-1][1] == pytest.approx(2 / 3, abs=1e-3)
    heard = datetime.fromisoformat(curve[1][0])  # Ben, from the conversation's record
    assert datetime(2024, 3, 4, 12, 0) < heard <= datetime(2024, 3, 4, 13, 0)


def test_density_and_attendance_equal_hand_computed_values(measured_run) -> None:
    _, measured, _ = measured_run
    network = measured.summary["network"]["by_step"]["6"]
    assert network["edges_interview"] == 2  # Ada-Ben, Ada-Cleo (Ben-Cleo is one-sided)
    assert network["density_interview"] == pytest.approx(2 * 2 / (3 * 2), abs=1e-4)
    assert measured.summary["network"]["edges"]["6"]["interview"] == [[ADA, BEN], [ADA, CLEO]]
    memory = measured.summary["network"]["edges"]["6"]["memory"]
    assert [ADA, BEN] in memory and [BEN, CLEO] not in memory  # they talked; Cleo met no one
    party = measured.summary["gatherings"]["party"]
    assert party["attendees"] == [ADA, BEN] and party["reached"]
    assert (party["told_attended"], party["aware_attended"]) == (1, 2)


def test_cost_and_the_outputs(measured_run) -> None:
    run_dir, measured, llm = measured_run
    cost = measured.summary["cost"]
    calls = pq.read_table(run_dir / "llm_calls.parquet").num_rows
    assert cost["model_calls"] == calls > 0
    assert cost["calls_per_agent_hour"] == pytest.approx(calls / (3 * 1.0), abs=1e-3)
    probes = [r for r in llm.calls if r.purpose == "probe"]
    assert measured.summary["measurement"]["model_calls"] == len(probes) == 2 * (3 + 6)
    saved = json.loads((run_dir / "measures.json").read_text())
    assert saved["network"] == measured.summary["network"]
    for figure in ("awareness.png", "network.png"):
        assert (run_dir / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scalars = scalar_measures(saved)
    assert scalars["aware_share.party.end"] == pytest.approx(2 / 3, abs=1e-3)
    assert scalars["attendance.party"] == 2


def test_a_missing_checkpoint_and_another_format_are_named(measured_run, tmp_path) -> None:
    run_dir, _, llm = measured_run
    with pytest.raises(MeasureError, match="no checkpoint at step 2"):
        measure_run_sync(run_dir, llm, None, at=[2])
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(MeasureError, match=r"manifest.json: run folder format version 2"):
        measure_run_sync(other, llm, None)
