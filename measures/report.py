"""The measures of a run as the terminal shows them (``simulacra measure``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_report(summary: Mapping[str, Any]) -> str:
    n = summary["agents"]
    steps = summary["measured_steps"]
    times = [t[5:16].replace("T", " ") for t in summary["times"]]
    lines = [
        f"{summary['run']}: {n} agents, measured at step {', '.join(map(str, steps))} "
        f"({', '.join(times)})"
    ]
    info = summary.get("information", {})
    if info:
        lines.append("")
        lines.append(
            f"{'information':<14}"
            + "".join(f"{'step ' + str(s):>16}" for s in steps)
            + f"{'hallucinations':>18}"
        )
        for name, entry in info.items():
            cells = []
            wrong = 0
            for s in steps:
                e = entry["by_step"].get(str(s))
                cells.append(f"{e['aware']}/{n} ({e['share']:.0%})" if e else "-")
                wrong += e["hallucinations"] if e else 0
            lines.append(f"{name:<14}" + "".join(f"{c:>16}" for c in cells) + f"{wrong:>18}")
        rate = summary.get("hallucination_rate")
        if rate:
            lines.append(
                f"hallucinated yeses: {rate['hallucinations']} of {rate['answers']} "
                f"answers ({rate['share']:.1%})"
            )
    network = summary.get("network", {}).get("by_step", {})
    if network:
        lines.append("")
        for key, label in (("density_interview", "interview"), ("density_memory", "memory")):
            values = " -> ".join(f"{network[str(s)][key]:.3f}" for s in steps if str(s) in network)
            lines.append(f"network density ({label}): {values}")
    for name, g in summary.get("gatherings", {}).items():
        lines.append("")
        if "attended" not in g:
            lines.append(f"gathering {name} at {g['place']} {g['start']}: not reached by the run")
            continue
        aware = f", {g['aware_attended']} of {g['aware']} aware" if "aware" in g else ""
        lines.append(
            f"gathering {name} at {g['place']}: {g['attended']} came "
            f"({g['told_attended']} of {g['told']} told{aware})"
        )
    cost = summary.get("cost")
    if cost:
        lines.append("")
        lines.append(
            f"cost: {cost['model_calls']:,} model calls ({cost['failed_calls']} failed), "
            f"{cost['prompt_tokens'] + cost['completion_tokens']:,} tokens, "
            f"{cost['calls_per_agent_hour']:.1f} calls per agent-hour over "
            f"{cost['game_hours']:.2f} game hours, {cost['wall_s']:.0f} s wall"
        )
    probes = summary.get("measurement", {}).get("model_calls")
    if probes:
        lines.append(f"this measurement asked {probes:,} probes")
    return "\n".join(lines)
