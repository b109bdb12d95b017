"""Where the map draws each sector: at its scenario ``position`` (in tiles), and the sectors
without one on a grid below them, so every world (a synthetic town has no positions) has a map."""

from __future__ import annotations

import math
from typing import Any

from scenarios.schema import Scenario

SPACING = 20.0  # tiles between grid cells
MARGIN = 10.0


def world_layout(scenario: Scenario) -> dict[str, Any]:
    """The map: the world's name, its extent, and every sector's ``x``, ``y`` and arenas."""
    sectors = scenario.world.sectors
    placed = [s.position for s in sectors if s.position is not None]
    x0 = min((p[0] for p in placed), default=0.0)
    y0 = min((p[1] for p in placed), default=0.0)
    below = max((p[1] for p in placed), default=-SPACING) - y0 + SPACING
    unplaced = [s for s in sectors if s.position is None]
    columns = max(1, math.ceil(math.sqrt(len(unplaced))))
    out: list[dict[str, Any]] = []
    grid = 0
    for s in sectors:
        if s.position is not None:
            x, y = s.position[0] - x0, s.position[1] - y0
        else:
            x, y = (grid % columns) * SPACING, below + (grid // columns) * SPACING
            grid += 1
        arenas = [a.name for a in s.arenas]
        out.append({"name": s.name, "x": x + MARGIN, "y": y + MARGIN, "arenas": arenas})
    width = max((float(s["x"]) for s in out), default=0.0) + MARGIN
    height = max((float(s["y"]) for s in out), default=0.0) + MARGIN
    return {"name": scenario.world.name, "width": width, "height": height, "sectors": out}
