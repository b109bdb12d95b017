"""Figures of an experiment: each measure over the grid points, and a scaling study."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullFormatter

from experiments.stats import SummaryRow
from measures.figures import new_figure, save_png

_PANEL_COLUMNS = 3


def point_label(row: SummaryRow) -> str:
    """A grid point's tick label: ``name=value`` per param (last path component), else ``p0``."""
    if not row.params:
        return f"p{row.point}"
    parts = []
    for path, value in row.params:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{path.rsplit('.', 1)[-1]}={shown}")
    return "\n".join(parts)


def experiment_figure(summary: Sequence[SummaryRow], path: Path) -> Path:
    """One panel per measure: each grid point's mean with its confidence interval as error bars.

    Raises:
        ValueError: the summary is empty.
    """
    if not summary:
        raise ValueError("experiment_figure needs a summary with at least one row")
    points = sorted({row.point for row in summary})
    labels = {row.point: point_label(row) for row in summary}
    measures: dict[str, list[SummaryRow]] = {}
    for row in summary:
        measures.setdefault(row.measure, []).append(row)
    columns = min(_PANEL_COLUMNS, len(measures))
    rows = math.ceil(len(measures) / columns)
    width = max(4.5, 0.6 * len(points) + 2.0)
    figure = new_figure(width * columns, 3.8 * rows)
    for index, (measure, group) in enumerate(measures.items(), start=1):
        axes = figure.add_subplot(rows, columns, index)
        shown = [row for row in group if row.interval.n > 0]
        xs = [points.index(row.point) for row in shown]
        means = [row.interval.mean for row in shown]
        below = [row.interval.mean - row.interval.low for row in shown]
        above = [row.interval.high - row.interval.mean for row in shown]
        axes.errorbar(xs, means, yerr=[below, above], fmt="o", capsize=4, markersize=5)
        axes.set_xticks(range(len(points)), [labels[p] for p in points], fontsize="small")
        if len(points) > 6:
            axes.tick_params(axis="x", labelrotation=45)
        axes.set_xlim(-0.5, len(points) - 0.5)
        axes.set_title(measure)
        confidence = group[0].interval.confidence
        axes.set_ylabel(f"mean ({confidence:.0%} interval)")
        axes.grid(axis="y", alpha=0.3)
    return save_png(figure, path)


def _series(rows: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(agents, value) of the rows that have both, not NaN (and agents > 0), sorted by agents."""
    pairs = []
    for row in rows:
        agents, value = row.get("agents"), row.get(key)
        if agents is None or value is None or math.isnan(value) or not agents > 0:
            continue
        pairs.append((float(agents), float(value)))
    pairs.sort()
    return [a for a, _ in pairs], [v for _, v in pairs]


def _short(value: float) -> str:
    """A value in 3-4 significant digits, ``k`` from 10^4 and ``M`` from 10^6."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


def _minor_label(axes: Axes, value: float) -> str:
    """Labels minor log ticks at 2, 3 and 5 times a power of ten when the axis spans few decades."""
    low, high = axes.get_ylim()
    if value <= 0 or low <= 0 or high / low > 100:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return _short(value) if any(math.isclose(mantissa, m) for m in (2, 3, 5)) else ""


def _panel(
    axes: Axes, rows: Sequence[Mapping[str, float]], series: Mapping[str, str], ylabel: str
) -> None:
    """Plots each ``key: legend`` series against agents on log axes, points labelled."""
    plotted: list[float] = []
    for key, legend in series.items():
        xs, ys = _series(rows, key)
        if not xs:
            continue
        axes.plot(xs, ys, marker="o", label=legend)
        for x, y in zip(xs, ys, strict=True):
            axes.annotate(
                _short(y), (x, y), xytext=(0, 6), textcoords="offset points", ha="center", size=7
            )
        plotted.extend(ys)
    axes.set_xlabel("agents")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, which="both")
    if not plotted:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    axes.set_xscale("log")
    agents = sorted({x for key in series for x in _series(rows, key)[0]})
    axes.set_xticks(agents, [f"{a:g}" for a in agents])
    axes.xaxis.set_minor_formatter(NullFormatter())
    if min(plotted) > 0:
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
        axes.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _minor_label(axes, v)))
    if len(series) > 1:
        axes.legend(fontsize="small")


def scaling_figure(rows: Sequence[Mapping[str, float]], path: Path) -> Path:
    """A scaling study against the number of agents: wall time, throughput and memory.

    Rows have ``agents`` and any of ``wall_s_per_step``, ``agent_steps_per_s``,
    ``calls_per_s``, ``tokens_per_s``, ``host_mb_per_agent`` and ``service_mb``; missing keys
    and NaN values are skipped.
    """
    figure = new_figure(15, 4.5)
    wall, throughput, memory = (figure.add_subplot(1, 3, i) for i in (1, 2, 3))
    _panel(wall, rows, {"wall_s_per_step": "wall time per step"}, "wall time per step (s)")
    wall.set_title("Wall time per step")
    throughput_series = {
        "agent_steps_per_s": "agent-steps/s",
        "calls_per_s": "LLM calls/s",
        "tokens_per_s": "tokens/s",
    }
    _panel(throughput, rows, throughput_series, "per second")
    throughput.set_title("Throughput")
    memory_series = {
        "host_mb_per_agent": "host MB per agent",
        "service_mb": "services MB (LLM + embedder, peak)",
    }
    _panel(memory, rows, memory_series, "MB")
    memory.set_title("Memory")
    return save_png(figure, path)
