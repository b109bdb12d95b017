"""What a run cost: model calls, tokens, calls per agent-hour, wall time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def run_cost(
    llm_calls: pa.Table, stats: Sequence[Mapping[str, Any]], n_agents: int, game_hours: float
) -> dict[str, float]:
    """From ``llm_calls.parquet`` and the manifest's ``stats`` (one entry per start or resume)."""
    calls = llm_calls.num_rows
    prompt = int(pc.sum(llm_calls["prompt_tokens"]).as_py() or 0) if calls else 0
    completion = int(pc.sum(llm_calls["completion_tokens"]).as_py() or 0) if calls else 0
    failed = int(pc.sum(pc.invert(llm_calls["ok"])).as_py() or 0) if calls else 0
    wall = sum(float(s.get("wall_s", 0.0)) for s in stats)
    agent_hours = n_agents * game_hours
    return {
        "model_calls": calls,
        "failed_calls": failed,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "game_hours": round(game_hours, 4),
        "calls_per_agent_hour": round(calls / agent_hours, 3) if agent_hours else 0.0,
        "wall_s": round(wall, 3),
        "tokens_per_s": round((prompt + completion) / wall, 2) if wall else 0.0,
    }
