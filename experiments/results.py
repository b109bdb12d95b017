"""``results.parquet``: one row per run and measure, with every grid parameter and the seed as
columns; and the summary of means with 95% intervals per grid point."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from cluster.outputs import write_table
from experiments.grid import RunSpec
from experiments.spec import ExperimentSpec
from experiments.stats import SummaryRow, summarize

RESULTS = "results.parquet"
FIXED_COLUMNS = ("run_id", "point", "seed", "measure", "value")
"""The columns every results table has; the grid's parameters (named by their field path)
come between ``seed`` and ``measure``."""


def param_names(spec: ExperimentSpec) -> list[str]:
    return list(spec.grid_values())


def result_rows(
    folder: Path, spec: ExperimentSpec, runs: Sequence[RunSpec]
) -> list[dict[str, Any]]:
    """The measured runs' numbers (``measures.json``'s scalars, and ``scaling.json``'s)."""
    from measures.measure_run import scalar_measures

    rows: list[dict[str, Any]] = []
    for run in runs:
        run_dir = folder / "runs" / run.run_id
        path = run_dir / "measures.json"
        if not path.is_file():
            continue
        numbers = scalar_measures(json.loads(path.read_text(encoding="utf-8")))
        scaling = run_dir / "scaling.json"
        if scaling.is_file():
            found = json.loads(scaling.read_text(encoding="utf-8"))
            numbers.update({f"scaling.{k}": v for k, v in found.items() if _number(v)})
        params = dict(run.params)
        for measure, value in numbers.items():
            row: dict[str, Any] = {"run_id": run.run_id, "point": run.point, "seed": run.seed}
            row.update({name: params.get(name) for name in param_names(spec)})
            row.update(measure=measure, value=float(value))
            rows.append(row)
    return rows


def results_table(rows: Sequence[dict[str, Any]], params: Sequence[str]) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    names = ["run_id", "point", "seed", *params, "measure", "value"]
    types = {
        "run_id": pa.string(),
        "point": pa.int64(),
        "seed": pa.int64(),
        "measure": pa.string(),
        "value": pa.float64(),
    }
    for name in names:
        values = [r.get(name) for r in rows]
        if name in types:
            columns[name] = pa.array(values, type=types[name])
            continue
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: as text
            columns[name] = pa.array([None if v is None else json.dumps(v) for v in values])
    return pa.table(columns)


def write_results(
    folder: Path, spec: ExperimentSpec, runs: Sequence[RunSpec]
) -> tuple[Path, list[SummaryRow]]:
    """Writes ``results.parquet``, ``summary.json`` and ``figures/experiment.png``; returns the
    table's path and the summary (means with 95% intervals per grid point and measure)."""
    params = param_names(spec)
    rows = result_rows(folder, spec, runs)
    path = write_table(results_table(rows, params), folder / RESULTS)
    summary = summarize(rows, params) if rows else []
    if summary:
        from experiments.figures import experiment_figure

        experiment_figure(_figure_rows(summary), folder / "figures" / "experiment.png")
    return path, summary


FIGURE_MEASURES = (
    "aware_share.",
    "density_interview.end",
    "density_memory.end",
    "attendance.",
    "hallucination_rate",
    "cost.calls_per_agent_hour",
)
"""The measures the experiment's figure shows (the table has them all)."""


def _figure_rows(summary: Sequence[SummaryRow]) -> list[SummaryRow]:
    chosen = [r for r in summary if r.measure.startswith(FIGURE_MEASURES)]
    return chosen or list(summary)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
