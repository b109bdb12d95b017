"""Figures of a run's measures, as PNG files: information diffusion and relationship networks.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
state) and written atomically: to a temporary file in the target folder, then renamed.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from measures.network import density, edge

DPI = 100
FULL_LABELS_UP_TO = 30
INITIALS_UP_TO = 100


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas, constrained layout."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    """Writes ``figure`` to ``path`` as PNG atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            figure.savefig(file, format="png", dpi=DPI)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    finally:
        figure.clear()
    return path


def awareness_figure(
    curves: Mapping[str, Sequence[tuple[datetime, float]]],
    path: Path,
    title: str = "Information diffusion",
) -> Path:
    """One step line per piece of information: the share of agents aware of it over game time."""
    figure = new_figure(8, 4.5)
    axes = figure.add_subplot()
    for name, curve in curves.items():
        points = sorted(curve)
        if points:
            times, shares = zip(*points, strict=True)
            axes.step(times, shares, where="post", label=name, linewidth=1.8)
    if axes.lines:
        axes.legend(loc="best", fontsize="small")
        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    else:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    axes.set_ylim(-0.02, 1.02)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel("game time")
    axes.set_ylabel("agents aware")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return save_png(figure, path)


def short_label(name: str, agents: int) -> str:
    """An agent's label on a network panel: first name, initials over 30 agents, none over 100."""
    if agents > INITIALS_UP_TO:
        return ""
    words = name.split() or [name]
    if agents > FULL_LABELS_UP_TO:
        return "".join(word[0] for word in words if word)
    return words[0]


def panel_title(label: str, agents: int, edges: Collection[tuple[str, str]]) -> str:
    """A network panel's title: its label, |E| and the density to 3 decimals (n/a under 2)."""
    shown = f"{density(agents, edges):.3f}" if agents >= 2 else "n/a"
    return f"{label}\n|E| = {len(edges)}, density = {shown}"


def network_figure(
    agents: Sequence[str], networks: Mapping[str, Collection[tuple[str, str]]], path: Path
) -> Path:
    """One panel per labelled undirected network, agents on a circle, edges as lines.

    Edges are undirected: ``(a, b)`` and ``(b, a)`` are one edge; self-loops are dropped.

    Raises:
        ValueError: no networks, or an edge names someone not in ``agents``.
    """
    if not networks:
        raise ValueError("network_figure needs at least one network")
    n = len(agents)
    angles = [math.pi / 2 - 2 * math.pi * i / max(n, 1) for i in range(n)]
    position = {
        agent: (math.cos(angle), math.sin(angle))
        for agent, angle in zip(agents, angles, strict=True)
    }
    figure = new_figure(5.0 * len(networks), 5.4)
    for index, (label, edges) in enumerate(networks.items(), start=1):
        unique = {edge(a, b) for a, b in edges if a != b}
        unknown = {agent for pair in unique for agent in pair} - position.keys()
        if unknown:
            raise ValueError(f"network {label!r} has edges of unknown agents: {sorted(unknown)}")
        axes = figure.add_subplot(1, len(networks), index)
        segments = [(position[a], position[b]) for a, b in unique]
        axes.add_collection(LineCollection(segments, colors="0.45", linewidths=0.8, alpha=0.7))
        if n:
            xs, ys = zip(*position.values(), strict=True)
            axes.scatter(xs, ys, s=max(6.0, 60.0 - 0.4 * n), color="tab:blue", zorder=3)
        for agent, angle in zip(agents, angles, strict=True):
            text = short_label(agent, n)
            if text:
                cos, sin = math.cos(angle), math.sin(angle)
                axes.text(
                    1.12 * cos,
                    1.12 * sin,
                    text,
                    ha="left" if cos > 0.1 else "right" if cos < -0.1 else "center",
                    va="center",
                    fontsize=8 if n <= FULL_LABELS_UP_TO else 6,
                )
        axes.set_title(panel_title(label, n, unique))
        axes.set_xlim(-1.45, 1.45)
        axes.set_ylim(-1.3, 1.3)
        axes.set_aspect("equal")
        axes.set_axis_off()
    return save_png(figure, path)
