"""What a scenario asks to be measured (Park et al. 2023, section 7): the scenario file's
``measures`` block, typed and cross-checked like every other field.

- ``information``: pieces of information seeded in named agents, each with the interview
  question that probes it (information diffusion: who knows it, and since when);
- ``gatherings``: scheduled gatherings (a place, a time window, who was told) whose attendance
  is counted from the events table (coordination);
- ``relationships``: the probe asked of every pair of agents (relationship formation: an edge
  where both answer yes).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

MEASURE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InformationSpec(_Strict):
    """A piece of information that starts in ``seeded_in`` and may spread.

    ``text`` says it (its embedding finds the memory records that carry it); ``question`` is
    the interview question that probes it; a record supports it when its cosine similarity to
    ``text`` is at least ``support_threshold`` and, when ``keywords`` are given, it names one of
    them (case-insensitive: a record about the same person but not the news does not count).
    """

    name: str = Field(pattern=MEASURE_NAME_PATTERN)
    text: str = Field(min_length=1)
    question: str = Field(min_length=1)
    seeded_in: list[str] = Field(min_length=1)
    keywords: list[str] = []
    support_threshold: float = Field(0.4, gt=0, le=1)


class GatheringSpec(_Strict):
    """A gathering at ``place`` between ``start`` and ``end``, announced to ``told``; whoever
    is at the place (or one of its arenas, for a sector) in the window attended. ``information``
    names the piece of information that announces it (awareness of the gathering)."""

    name: str = Field(pattern=MEASURE_NAME_PATTERN)
    place: str = Field(min_length=1)  # "Sector:Arena", or "Sector" for any of its arenas
    start: datetime
    end: datetime
    told: list[str] = []
    information: str | None = None

    @model_validator(mode="after")
    def _window(self) -> GatheringSpec:
        if self.end <= self.start:
            raise ValueError(
                f"end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )
        return self


class RelationshipProbe(_Strict):
    """The question asked of every agent about every other (``{name}``: the other's name)."""

    question: str = Field("Do you know of {name}?", pattern=r"\{name\}")


class MeasuresSpec(_Strict):
    information: list[InformationSpec] = []
    gatherings: list[GatheringSpec] = []
    relationships: RelationshipProbe = RelationshipProbe()


def measure_problems(
    measures: MeasuresSpec,
    agents: set[str],
    places: set[str],
    sectors: set[str],
    start: datetime,
) -> list[tuple[str, str]]:
    """Every reference of ``measures`` that points at nothing (paths start ``measures.``). A
    gathering after the run's end is allowed (a shorter run reports it as not reached)."""
    problems: list[tuple[str, str]] = []
    info_names = [i.name for i in measures.information]
    for i, info in enumerate(measures.information):
        at = f"measures.information[{i}]"
        if info_names.count(info.name) > 1:
            problems.append((f"{at}.name", f"information {info.name!r} is defined twice"))
        for j, who in enumerate(info.seeded_in):
            if who not in agents:
                problems.append((f"{at}.seeded_in[{j}]", f"no agent named {who!r}"))
    names = [g.name for g in measures.gatherings]
    for i, gathering in enumerate(measures.gatherings):
        at = f"measures.gatherings[{i}]"
        if names.count(gathering.name) > 1:
            problems.append((f"{at}.name", f"gathering {gathering.name!r} is defined twice"))
        if gathering.place not in places and gathering.place not in sectors:
            problems.append(
                (
                    f"{at}.place",
                    f"no place {gathering.place!r} in the world (a sector or 'Sector:Arena')",
                )
            )
        for j, who in enumerate(gathering.told):
            if who not in agents:
                problems.append((f"{at}.told[{j}]", f"no agent named {who!r}"))
        if gathering.information is not None and gathering.information not in info_names:
            problems.append(
                (
                    f"{at}.information",
                    f"no information {gathering.information!r} in "
                    f"measures.information (names: {', '.join(info_names) or 'none'})",
                )
            )
        for field, when in (("start", gathering.start), ("end", gathering.end)):
            if (when.tzinfo is None) != (start.tzinfo is None):
                problems.append((f"{at}.{field}", "mixes a time zone and none with the start"))
            elif when < start:
                problems.append(
                    (
                        f"{at}.{field}",
                        f"{when.isoformat()} is before the run's start ({start.isoformat()})",
                    )
                )
    return problems
