"""Coordination (Park et al. 2023, section 7.1): who came to a scheduled gathering, from the
events table (where each agent was during the window), against who was told and who became
aware of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pyarrow as pa

from scenarios.measures import GatheringSpec

PLACE_KINDS = ("move", "activity", "conversation", "utterance", "talk", "wait")
"""Event kinds whose location is where the agent itself is (a move's is where it goes)."""

Track = list[tuple[datetime, str]]
"""An agent's places over game time: (from when, place), in time order."""


def tracks(events: pa.Table, starts: Mapping[str, str], t0: datetime) -> dict[str, Track]:
    """Every agent's places over time: its start place at ``t0``, then each event row of a
    :data:`PLACE_KINDS` kind."""
    out: dict[str, Track] = {name: [(t0, place)] for name, place in starts.items()}
    rows = events.select(["time", "agent", "kind", "location"]).to_pylist()
    for row in rows:
        agent, location = row["agent"], row["location"]
        if row["kind"] in PLACE_KINDS and agent in out and location:
            track = out[agent]
            if track[-1][1] != location:
                track.append((row["time"], location))
    for track in out.values():
        track.sort(key=lambda entry: entry[0])
    return out


def at_place(place: str, gathering_place: str) -> bool:
    """An arena ``Sector:Arena`` is at the gathering's place (that arena, or its sector)."""
    return place == gathering_place or place.split(":", 1)[0] == gathering_place


def attendees(
    gathering: GatheringSpec, agent_tracks: Mapping[str, Track], run_end: datetime
) -> list[str]:
    """Agents at the gathering's place at some time in [start, end) before ``run_end`` (where
    the run's events stop), in name order."""
    end = min(gathering.end, run_end)
    came = []
    for agent, track in sorted(agent_tracks.items()):
        for i, (since, place) in enumerate(track):
            until = track[i + 1][0] if i + 1 < len(track) else run_end
            overlaps = since < end and until > gathering.start
            if overlaps and at_place(place, gathering.place):
                came.append(agent)
                break
    return came


def attendance_summary(
    gathering: GatheringSpec, came: Sequence[str], aware: Sequence[str] | None, reached: bool
) -> dict[str, object]:
    """The gathering's numbers: who came, of those told and of those aware."""
    told = set(gathering.told)
    summary: dict[str, object] = {
        "reached": reached,
        "attended": len(came),
        "attendees": list(came),
        "told": len(told),
        "told_attended": len(told & set(came)),
    }
    if aware is not None:
        summary["aware"] = len(aware)
        summary["aware_attended"] = len(set(aware) & set(came))
    return summary
