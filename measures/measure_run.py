"""``simulacra measure``: the measures of a run, from its folder and checkpoints (nothing is
re-simulated). At each measured checkpoint the agents are restored in this process and probed
(a yes-or-no interview under a JSON schema); the events and model-call tables give attendance
and cost. Writes ``measures.parquet``, ``measures.json`` and ``figures/*.png`` into the run
folder (or ``out``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np

from actors.host import AgentHost
from actors.messages import ProbeAnswer
from cluster.checkpoint_minds import local_embedder, local_llm, restored_host, run_engine
from cluster.outputs import write_table
from measures.attendance import attendance_summary, attendees, tracks
from measures.awareness import (
    Awareness,
    Candidate,
    awareness_curve,
    memory_candidates,
    supporting_records,
)
from measures.cost import run_cost
from measures.network import Edge, density, memory_edges, mutual_edges
from measures.run_data import MeasureError, RunData, measured_steps, read_run
from measures.table import MEASURE_KINDS, MeasureKind, MeasureRow, measures_table
from serving.embedding import Embedder
from serving.files import write_text_atomic
from serving.llm import LLM

MAX_CONCURRENT_PROBES = 256


@dataclass
class Measured:
    """What one measurement found: the rows, the summary, the files written."""

    rows: list[MeasureRow] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class _Checkpoint:
    state: dict[str, Any]
    step: int
    time: datetime
    records: dict[str, list[dict[str, Any]]]
    vectors: dict[str, np.ndarray]


def check_measure_kinds(names: Iterable[str]) -> list[MeasureKind]:
    """``names`` as measure kinds; else :class:`MeasureError` naming the unknown ones."""
    names = list(names)
    unknown = sorted(set(names) - set(MEASURE_KINDS))
    if unknown or not names:
        raise MeasureError(
            f"unknown measures {unknown or '(none given)'}; known: {', '.join(MEASURE_KINDS)}"
        )
    return [cast(MeasureKind, n) for n in names]


async def measure_run(
    run_dir: str | Path,
    at: Sequence[int] | None = None,
    take: Iterable[MeasureKind] = MEASURE_KINDS,
    llm: LLM | None = None,
    embedder: Embedder | None = None,
    out: str | Path | None = None,
    figures: bool = True,
) -> Measured:
    """Measures the run in ``run_dir`` at checkpoints ``at`` (default: its first and last).

    ``llm`` and ``embedder`` replace the run's own model and the MiniLM embedder (tests).
    """
    run = read_run(run_dir)
    steps = measured_steps(run, at)
    kinds = set(check_measure_kinds(take))
    probing = bool(kinds & {"awareness", "network"})
    if probing:
        llm, embedder = _models(run, llm, embedder)
    measured = Measured()
    summary = measured.summary
    summary.update(run=str(run.run_dir), agents=len(run.names), measured_steps=steps)
    last_awareness: dict[str, list[Awareness]] = {}
    probe_calls = 0
    for step in steps:
        checkpoint = _read(run, step)
        summary.setdefault("times", []).append(checkpoint.time.isoformat())
        if not probing:
            continue
        assert llm is not None and embedder is not None
        host, now = await restored_host(run.manifest, checkpoint.state, run.names, llm, embedder)
        try:
            if "awareness" in kinds:
                found = await _awareness(run, host, embedder, checkpoint, now, measured)
                last_awareness = found
            if "network" in kinds:
                await _network(run, host, checkpoint, now, measured)
            probe_calls += len((await host.drain_rows()).llm_calls)
        finally:
            await host.close()
    if "awareness" in kinds and last_awareness:
        _curves(run, last_awareness, measured)
    if "attendance" in kinds:
        _attendance(run, last_awareness, measured)
    if "cost" in kinds:
        _cost(run, measured)
    summary["measurement"] = {"model_calls": probe_calls}
    measured.rows.append(MeasureRow("measurement.model_calls", "measure", None, None, probe_calls))
    _write(run, measured, Path(out) if out is not None else run.run_dir, figures)
    return measured


def _models(run: RunData, llm: LLM | None, embedder: Embedder | None) -> tuple[LLM, Embedder]:
    from cluster.run import RunError

    if llm is None:
        try:
            llm = local_llm(run_engine(run.manifest))
        except RunError as exc:
            raise MeasureError(f"{run.run_dir}: the run's model: {exc}") from None
    return llm, embedder or local_embedder()


def _read(run: RunData, step: int) -> _Checkpoint:
    state = run.checkpoint(step)
    records: dict[str, list[dict[str, Any]]] = {}
    vectors: dict[str, np.ndarray] = {}
    for name in run.names:
        memory = state["memories"].get(name)
        if memory is None:
            raise MeasureError(f"{run.run_dir}: checkpoint {step} has no memory of {name!r}")
        records[name] = list(memory["records"])
        flat = np.frombuffer(bytes(memory["vectors"]), dtype=np.float32)
        rows = len(records[name])
        vectors[name] = flat.reshape(rows, -1) if rows else np.zeros((0, 0), dtype=np.float32)
    return _Checkpoint(state, step, datetime.fromisoformat(state["clock"]["now"]), records, vectors)


async def _probe(
    host: AgentHost, questions: Sequence[tuple[str, str]], now: datetime, say_what: bool = True
) -> list[ProbeAnswer]:
    """Every (agent, question), in order per agent (an agent's request seeds follow its own
    counter, so its answers must not depend on which retrieval finished first: a replay asks
    the same requests), the agents concurrently (the model batches them). Without
    ``say_what`` the answers are only yes or no (a few tokens each)."""
    limit = asyncio.Semaphore(MAX_CONCURRENT_PROBES)
    by_agent: dict[str, list[int]] = {}
    for i, (agent, _) in enumerate(questions):
        by_agent.setdefault(agent, []).append(i)
    answers: list[ProbeAnswer | None] = [None] * len(questions)

    async def agent_probes(indices: list[int]) -> None:
        for i in indices:
            agent, question = questions[i]
            async with limit:
                answers[i] = await host.probe(agent, question, now, say_what)

    await asyncio.gather(*(agent_probes(ix) for ix in by_agent.values()))
    return [a for a in answers if a is not None]


async def _awareness(
    run: RunData,
    host: AgentHost,
    embedder: Embedder,
    checkpoint: _Checkpoint,
    now: datetime,
    measured: Measured,
) -> dict[str, list[Awareness]]:
    infos = run.scenario.measures.information
    if not infos:
        return {}
    vectors = await embedder.embed([i.text for i in infos])
    candidates, candidate_vectors = await _candidates(run, embedder, checkpoint)
    questions = [(name, info.question) for info in infos for name in run.names]
    answers = iter(await _probe(host, questions, now))
    found: dict[str, list[Awareness]] = {}
    step, t = checkpoint.step, checkpoint.time
    by_step = measured.summary.setdefault("information", {})
    totals = measured.summary.setdefault("hallucination_rate", {"answers": 0, "hallucinations": 0})
    for info, vector in zip(infos, vectors, strict=True):
        rows = found[info.name] = []
        for name in run.names:
            answer = next(answers)
            support = supporting_records(info, vector, candidates[name], candidate_vectors[name])
            a = Awareness(name, info.name, answer.knows, answer.what, support)
            rows.append(a)
            evidence = tuple(s.record_id for s in support)
            subject = f"{info.name}/{name}"
            for measure, value in (
                ("aware", a.aware),
                ("claims_to_know", a.knows),
                ("hallucination", a.hallucination),
            ):
                measured.rows.append(MeasureRow(measure, subject, step, t, float(value), evidence))
        aware = [a.agent for a in rows if a.aware]
        hallucinated = [a.agent for a in rows if a.hallucination]
        share = len(aware) / len(run.names)
        measured.rows.append(MeasureRow("aware_share", info.name, step, t, share))
        measured.rows.append(MeasureRow("hallucinations", info.name, step, t, len(hallucinated)))
        entry = by_step.setdefault(info.name, {"seeded_in": list(info.seeded_in), "by_step": {}})
        entry["by_step"][str(step)] = {
            "time": t.isoformat(),
            "aware": len(aware),
            "share": round(share, 4),
            "claims_to_know": sum(a.knows for a in rows),
            "hallucinations": len(hallucinated),
            "aware_agents": aware,
            "hallucinating_agents": hallucinated,
        }
        totals["answers"] += len(rows)
        totals["hallucinations"] += len(hallucinated)
    totals["share"] = round(totals["hallucinations"] / max(1, totals["answers"]), 4)
    return found


async def _candidates(
    run: RunData, embedder: Embedder, checkpoint: _Checkpoint
) -> tuple[dict[str, list[Candidate]], dict[str, np.ndarray]]:
    """Every agent's memory candidates and their embeddings: the stored vectors of the
    records' descriptions, and the transcript lines embedded here."""
    candidates = {n: memory_candidates(checkpoint.records[n]) for n in run.names}
    lines = [c.text for n in run.names for c in candidates[n][len(checkpoint.records[n]) :]]
    embedded = iter(await embedder.embed(lines) if lines else [])
    vectors = {}
    for name in run.names:
        stored = checkpoint.vectors[name]
        extra = [next(embedded) for _ in candidates[name][len(checkpoint.records[name]) :]]
        parts = [p for p in (stored, np.asarray(extra, dtype=np.float32)) if len(p)]
        vectors[name] = np.concatenate(parts) if parts else stored
    return candidates, vectors


async def _network(
    run: RunData, host: AgentHost, checkpoint: _Checkpoint, now: datetime, measured: Measured
) -> None:
    template = run.scenario.measures.relationships.question
    pairs = [(a, b) for a in run.names for b in run.names if a != b]
    # N(N-1) probes (600 for 25 agents): yes or no only, as the paper's
    questions = [(a, template.format(name=b)) for a, b in pairs]
    answers = await _probe(host, questions, now, say_what=False)
    step, t = checkpoint.step, checkpoint.time
    says_yes = {}
    for (a, b), answer in zip(pairs, answers, strict=True):
        says_yes[(a, b)] = answer.knows
        measured.rows.append(
            MeasureRow("knows_of", f"{a}->{b}", step, t, float(answer.knows), answer.record_ids)
        )
    networks = measured.summary.setdefault("network", {"by_step": {}, "edges": {}})
    by_interview = mutual_edges(says_yes)
    by_memory = memory_edges(run.names, checkpoint.records)
    n = len(run.names)
    numbers = {
        "density_interview": density(n, by_interview),
        "edges_interview": len(by_interview),
        "density_memory": density(n, by_memory),
        "edges_memory": len(by_memory),
    }
    for measure, value in numbers.items():
        measured.rows.append(MeasureRow(measure, "network", step, t, value))
    networks["by_step"][str(step)] = {"time": t.isoformat(), **_rounded(numbers)}
    networks["edges"][str(step)] = {
        "interview": sorted(list(e) for e in by_interview),
        "memory": sorted(list(e) for e in by_memory),
    }


def _curves(run: RunData, found: Mapping[str, list[Awareness]], measured: Measured) -> None:
    end = datetime.fromisoformat(measured.summary["times"][-1])
    curves = measured.summary.setdefault("awareness_over_time", {})
    for info, answers in found.items():
        points = awareness_curve(answers, run.scenario.start, end, len(run.names))
        curves[info] = [[t.isoformat(), round(share, 4)] for t, share in points]
        measured.rows.extend(
            MeasureRow("aware_share_over_time", info, None, t, share) for t, share in points
        )


def _attendance(run: RunData, found: Mapping[str, list[Awareness]], measured: Measured) -> None:
    gatherings = run.scenario.measures.gatherings
    if not gatherings:
        return
    scenario = run.scenario
    starts = {a.name: a.start or a.home for a in scenario.agents}
    agent_tracks = tracks(run.table("events"), starts, scenario.start)
    run_end = scenario.start + timedelta(seconds=run.steps[-1] * scenario.step_seconds)
    out = measured.summary.setdefault("gatherings", {})
    for g in gatherings:
        where = {"place": g.place, "start": g.start.isoformat()}
        if run_end <= g.start:  # the run ended before it: nothing to count
            out[g.name] = {**where, "reached": False}
            continue
        came = attendees(g, agent_tracks, run_end)
        answers = found.get(g.information or "")
        aware = [a.agent for a in answers if a.aware] if answers else None
        numbers = attendance_summary(g, came, aware, reached=run_end >= g.end)
        out[g.name] = {**where, **numbers}
        for name in came:
            measured.rows.append(MeasureRow("attended", f"{g.name}/{name}", None, g.start, 1.0))
        for measure in ("attendance", "told_attended", "aware_attended"):
            key = "attended" if measure == "attendance" else measure
            if key in numbers:
                value = float(numbers[key])  # type: ignore[arg-type]
                measured.rows.append(MeasureRow(measure, g.name, None, g.start, value))


def _cost(run: RunData, measured: Measured) -> None:
    scenario = run.scenario
    stats = [s for s in run.manifest.get("stats", []) if isinstance(s, dict)]
    hours = run.steps[-1] * scenario.step_seconds / 3600
    cost = run_cost(run.table("llm_calls"), stats, len(run.names), hours)
    measured.summary["cost"] = cost
    end = scenario.start + timedelta(hours=hours)
    for name, value in cost.items():
        measured.rows.append(MeasureRow(f"cost.{name}", "run", run.steps[-1], end, value))


def scalar_measures(summary: Mapping[str, Any]) -> dict[str, float]:
    """One number per measure of a run (what an experiment's ``results.parquet`` holds): the
    share aware of each piece of information at the first and last measured checkpoint, the
    hallucination rate, the densities, attendance, cost."""
    out: dict[str, float] = {}
    steps = [str(s) for s in summary.get("measured_steps", [])]
    ends = {"start": steps[0], "end": steps[-1]} if steps else {}
    for info, entry in summary.get("information", {}).items():
        for label, step in ends.items():
            if step in entry["by_step"]:
                out[f"aware_share.{info}.{label}"] = entry["by_step"][step]["share"]
    if "hallucination_rate" in summary:
        out["hallucination_rate"] = summary["hallucination_rate"]["share"]
    by_step = summary.get("network", {}).get("by_step", {})
    for label, step in ends.items():
        for key in ("density_interview", "density_memory"):
            if step in by_step:
                out[f"{key}.{label}"] = by_step[step][key]
    for name, g in summary.get("gatherings", {}).items():
        if "attended" in g:  # not when the run ended before the gathering
            out[f"attendance.{name}"] = g["attended"]
    for name, value in summary.get("cost", {}).items():
        out[f"cost.{name}"] = float(value)
    return out


def _rounded(numbers: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in numbers.items()}


def _write(run: RunData, measured: Measured, out: Path, figures: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    measured.files["measures.parquet"] = write_table(
        measures_table(measured.rows), out / "measures.parquet"
    )
    if figures:
        measured.files.update(_figures(run, measured.summary, out / "figures"))
        measured.summary["figures"] = {
            k: str(v.relative_to(out)) for k, v in measured.files.items() if k.endswith(".png")
        }
    path = out / "measures.json"
    write_text_atomic(path, json.dumps(measured.summary, indent=2, default=str))
    measured.files["measures.json"] = path


def _figures(run: RunData, summary: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    from measures.figures import awareness_figure, network_figure

    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    curves = summary.get("awareness_over_time")
    if curves:
        data = {
            info: [(datetime.fromisoformat(t), share) for t, share in points]
            for info, points in curves.items()
        }
        files["awareness.png"] = awareness_figure(
            data, folder / "awareness.png", title=f"{run.scenario.name}: share of agents aware"
        )
    edges = summary.get("network", {}).get("edges", {})
    if edges:
        steps = list(edges)
        chosen = sorted({steps[0], steps[-1]}, key=int)
        networks: dict[str, list[Edge]] = {
            f"step {s} (interview)": [(a, b) for a, b in edges[s]["interview"]] for s in chosen
        }
        files["network.png"] = network_figure(run.names, networks, folder / "network.png")
    return files
