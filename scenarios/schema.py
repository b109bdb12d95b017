"""The scenario file's schema: typed, strict (an unknown key is an error), cross-checked.

A scenario is everything a run starts from: when it starts, how long a step is and how long it
lasts, the world tree (world : sector : arena : object), the agents with their seeded memories,
scheduled events, and the mind's settings (a preset plus any spec number overridden).

Places are written ``"Sector:Arena"``; objects ``"Sector:Arena:Object"``. Names may not
contain ``":"``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from actors.mind.settings import MindSettings, Preset, preset_data
from scenarios.measures import MeasuresSpec, measure_problems
from serving.adapters import check_adapter_name
from serving.types import InvalidAdapterNameError

NAME_PATTERN = r"^[^:\n]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectSpec(_Strict):
    """A thing in an arena; its ``state`` changes when an agent uses it."""

    name: str = Field(pattern=NAME_PATTERN)
    state: str = "idle"
    at: tuple[int, int] | None = None  # tile in the arena; laid out in a row when unset


class ArenaSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    objects: list[ObjectSpec] = []

    @field_validator("objects")
    @classmethod
    def _unique_objects(cls, objects: list[ObjectSpec]) -> list[ObjectSpec]:
        _unique([o.name for o in objects], "object")
        return objects


class SectorSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    position: tuple[float, float] | None = None  # in tiles, for travel times between sectors
    arenas: list[ArenaSpec] = Field(min_length=1)

    @field_validator("arenas")
    @classmethod
    def _unique_arenas(cls, arenas: list[ArenaSpec]) -> list[ArenaSpec]:
        _unique([a.name for a in arenas], "arena")
        return arenas


class TravelSpec(_Strict):
    """Travel times between arenas, in game minutes.

    Within a sector: ``same_sector_minutes``. Between two sectors that both have a position:
    ceil(Manhattan distance / ``tiles_per_minute``), at least ``same_sector_minutes``;
    otherwise ``default_minutes``.
    """

    same_sector_minutes: int = Field(1, ge=0)
    default_minutes: int = Field(10, ge=0)
    tiles_per_minute: float = Field(20.0, gt=0)


class WorldSpec(_Strict):
    name: str = Field("the world", pattern=NAME_PATTERN)
    travel: TravelSpec = TravelSpec()
    sectors: list[SectorSpec] = Field(min_length=1)

    @field_validator("sectors")
    @classmethod
    def _unique_sectors(cls, sectors: list[SectorSpec]) -> list[SectorSpec]:
        _unique([s.name for s in sectors], "sector")
        return sectors

    def places(self) -> list[str]:
        """Every arena, as ``"Sector:Arena"``."""
        return [f"{s.name}:{a.name}" for s in self.sectors for a in s.arenas]


class MemorySpec(_Strict):
    """A memory an agent starts with (an observation at the scenario's start)."""

    text: str = Field(min_length=1)
    importance: int | None = Field(None, ge=1, le=10)  # None: the model scores it


class AgentSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    age: int = Field(ge=0, le=150)
    traits: str
    lifestyle: str
    current_situation: str = ""
    daily_requirements: list[str] = []
    home: str
    start: str | None = None  # where the agent is at the start; its home when unset
    known_places: list[str] = []
    relationships: dict[str, str] = {}
    adapter: str | None = None
    memories: list[MemorySpec | str] = []

    @field_validator("adapter")
    @classmethod
    def _adapter_name(cls, adapter: str | None) -> str | None:
        if adapter is not None:
            try:
                check_adapter_name(adapter)  # the one rule, shared with the LLM service
            except InvalidAdapterNameError as exc:
                raise ValueError(str(exc)) from None
        return adapter

    def seeded_memories(self) -> list[MemorySpec]:
        return [m if isinstance(m, MemorySpec) else MemorySpec(text=m) for m in self.memories]

    def persona(self) -> dict[str, Any]:
        """The agent's identity as :class:`actors.mind.persona.Persona` data."""
        places = list(dict.fromkeys([self.home, *self.known_places]))
        return {
            "name": self.name,
            "age": self.age,
            "traits": self.traits,
            "lifestyle": self.lifestyle,
            "current_situation": self.current_situation,
            "daily_requirements": list(self.daily_requirements),
            "home": self.home,
            "known_places": places,
            "relationships": dict(self.relationships),
            "adapter": self.adapter,
        }


class EventSpec(_Strict):
    """At ``at``, every agent in ``to`` (all agents when empty) observes ``text``."""

    at: datetime
    text: str = Field(min_length=1)
    to: list[str] = []
    location: str = ""


MAX_DURATION_HOURS = 24 * 366 * 10
"""The longest run a scenario may ask for: ten game years."""


class Scenario(_Strict):
    """A whole scenario file."""

    name: str = Field(min_length=1)
    description: str = ""
    start: datetime
    step_seconds: int = Field(10, ge=1, le=3600)
    duration_hours: float = Field(gt=0, le=MAX_DURATION_HOURS, allow_inf_nan=False)
    checkpoint_every: int = Field(360, ge=1)  # steps
    preset: Preset = "paper"
    settings: MindSettings = MindSettings()  # the file holds the overrides of the preset

    @field_validator("settings", mode="before")
    @classmethod
    def _over_the_preset(cls, value: Any, info: ValidationInfo) -> Any:
        """The file's overrides merged over the preset, with the scenario's step length (both
        set at the top level), validated once as the mind's settings."""
        if not isinstance(value, dict):
            return value  # a MindSettings already, or an error of its own
        preset = info.data.get("preset", "paper")
        data = preset_data(preset, value)
        data["preset"] = preset
        data["step_seconds"] = info.data.get("step_seconds", 10)
        return data

    @field_serializer("settings")
    def _as_overrides(self, settings: MindSettings) -> dict[str, Any]:
        return settings.overrides()

    world: WorldSpec
    agents: list[AgentSpec] = Field(min_length=1)
    events: list[EventSpec] = []
    measures: MeasuresSpec = MeasuresSpec()

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.duration_hours)

    @property
    def steps(self) -> int:
        """Steps in the whole duration (rounded up)."""
        seconds = self.duration_hours * 3600
        return max(1, int(-(-seconds // self.step_seconds)))

    @field_validator("duration_hours")
    @classmethod
    def _ends_in_the_calendar(cls, hours: float, info: ValidationInfo) -> float:
        start = info.data.get("start")
        if start is not None:
            try:
                start + timedelta(hours=hours)
            except OverflowError:
                raise ValueError(
                    f"the run would end after the year 9999 (starts {start.isoformat()})"
                ) from None
        return hours

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Scenario:
        if (info.context or {}).get("defer_references"):
            return self  # the loader reports them itself, each with its own path
        problems = reference_problems(self)
        if problems:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in problems))
        return self


Problem = tuple[str, str]
"""A problem found in a scenario: (field path like ``agents[3].home``, what was expected)."""


def reference_problems(scenario: Scenario) -> list[Problem]:
    """Every reference that points at nothing: places, agents, duplicate names."""
    places = set(scenario.world.places())
    names = [a.name for a in scenario.agents]
    known = set(names)
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, agent in enumerate(scenario.agents):
        at = f"agents[{i}]"
        if agent.name in seen:
            problems.append((f"{at}.name", f"agent {agent.name!r} is defined twice"))
        seen.add(agent.name)
        for field, value in (("home", agent.home), ("start", agent.start)):
            if value is not None and value not in places:
                problems.append((f"{at}.{field}", _no_place(value)))
        for j, place in enumerate(agent.known_places):
            if place not in places:
                problems.append((f"{at}.known_places[{j}]", _no_place(place)))
        for other in agent.relationships:
            if other not in known:
                problems.append((f"{at}.relationships.{other}", f"no agent named {other!r}"))
            elif other == agent.name:
                problems.append((f"{at}.relationships.{other}", "an agent cannot relate to itself"))
    for i, event in enumerate(scenario.events):
        for j, who in enumerate(event.to):
            if who not in known:
                problems.append((f"events[{i}].to[{j}]", f"no agent named {who!r}"))
        if event.location and event.location not in places:
            problems.append((f"events[{i}].location", _no_place(event.location)))
        if (event.at.tzinfo is None) != (scenario.start.tzinfo is None):
            problems.append(
                (
                    f"events[{i}].at",
                    "mixes a time zone and none: give both this and the scenario's start "
                    "a time zone, or neither",
                )
            )
        elif not scenario.start <= event.at <= scenario.end:
            problems.append(
                (
                    f"events[{i}].at",
                    f"{event.at.isoformat()} is outside the run "
                    f"({scenario.start.isoformat()} to {scenario.end.isoformat()})",
                )
            )
    sectors = {s.name for s in scenario.world.sectors}
    problems += measure_problems(scenario.measures, known, places, sectors, scenario.start)
    return problems


def _no_place(value: str) -> str:
    return f"no place {value!r} in the world (expected 'Sector:Arena')"


def _unique(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")
