"""The experiment file's schema: a scenario (a file or a synthetic town), a grid, seeds.

``load_experiment(path)`` reads and checks the YAML file, reporting every problem at once as
``source: field.path[3]: what is wrong`` (:class:`ExperimentError`). What the grid's paths name
is checked against the scenario when the runs are expanded (:func:`experiments.grid.expand`).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from measures.table import MEASURE_KINDS, MeasureKind
from scenarios.loader import ScenarioError, read_yaml, validation_problems
from scenarios.measures import MeasuresSpec
from scenarios.schema import MAX_DURATION_HOURS, Problem
from serving.config import EngineName

MAX_AGENTS = 100_000
RUN_OPTIONS = ("model", "engine")
"""Grid paths that choose how a run is served rather than what it simulates."""


class ExperimentError(Exception):
    """An experiment that cannot be run: ``problems`` lists each (field path, what is wrong)."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(
            f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}"
            for path, msg in self.problems
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticSpec(_Strict):
    """A synthetic town (:func:`scenarios.synthetic.synthetic_town`); ``town_seed`` None: each
    run's town is built with the run's seed."""

    agents: int | None = Field(None, ge=1, le=MAX_AGENTS)  # a scaling study's come from sizes
    hours: float = Field(1.0, gt=0, le=MAX_DURATION_HOURS, allow_inf_nan=False)
    town_seed: int | None = None


class ExperimentSpec(_Strict):
    """A whole experiment file: every grid point runs once per seed."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    kind: Literal["runs", "scaling"] = "runs"
    scenario: str | None = None  # a scenario file, relative to the experiment file's folder
    synthetic: SyntheticSpec | None = None
    grid: dict[str, list[Any]] | None = None  # field path -> values; None: one grid point
    sizes: list[Annotated[int, Field(ge=1, le=MAX_AGENTS)]] | None = None  # kind scaling
    seeds: list[int] = Field(min_length=1)
    steps: int | None = Field(None, ge=1)
    hours: float | None = Field(None, gt=0, le=MAX_DURATION_HOURS, allow_inf_nan=False)
    checkpoint_every: int | None = Field(None, ge=1)
    engine: EngineName = "hf"
    model: str = "smollm2"
    measures: list[MeasureKind] = list(MEASURE_KINDS)
    measure_at: list[Annotated[int, Field(ge=0)]] | None = None  # None: the start and the end
    declare: MeasuresSpec | None = None  # added to every run's scenario `measures`
    concurrency: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ExperimentSpec:
        if (info.context or {}).get("defer_checks"):
            return self  # load_experiment reports them itself, each with its own path
        problems = spec_problems(self)
        if problems:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in problems))
        return self

    def grid_values(self) -> dict[str, list[Any]]:
        """The grid with a scaling study's ``sizes`` as ``synthetic.agents``, in file order."""
        grid = dict(self.grid or {})
        if self.kind == "scaling" and self.sizes is not None:
            grid = {"synthetic.agents": list(self.sizes), **grid}
        return grid


def load_experiment(path: str | os.PathLike[str]) -> ExperimentSpec:
    """Read and check the YAML experiment file at ``path``."""
    source = str(path)
    try:
        data = read_yaml(path, source, what="experiment")
    except ScenarioError as exc:
        raise ExperimentError(source, exc.problems) from None
    try:
        spec = ExperimentSpec.model_validate(data, context={"defer_checks": True})
    except ValidationError as exc:
        raise ExperimentError(source, validation_problems(exc, ExperimentSpec)) from None
    problems = spec_problems(spec)
    if problems:
        raise ExperimentError(source, problems)
    return spec


def spec_problems(spec: ExperimentSpec) -> list[Problem]:
    """What the fields of ``spec`` say together that cannot be (each with its path)."""
    problems: list[Problem] = []
    if (spec.scenario is None) == (spec.synthetic is None):
        given = "both" if spec.scenario is not None else "neither"
        problems.append(
            ("scenario", f"give exactly one of scenario (a file) and synthetic (a town); {given}")
        )
    if (spec.steps is None) == (spec.hours is None):
        given = "both" if spec.steps is not None else "neither"
        problems.append(("steps", f"give exactly one of steps and hours (a run's length); {given}"))
    problems += _grid_problems(spec)
    if spec.kind == "scaling":
        if spec.sizes is None:
            problems.append(("sizes", "required for kind: scaling (the synthetic towns' sizes)"))
        if spec.synthetic is None:
            problems.append(("synthetic", "required for kind: scaling (the town to scale)"))
    elif spec.sizes is not None:
        problems.append(("sizes", "only for kind: scaling (use grid: synthetic.agents)"))
    if (
        spec.synthetic is not None
        and spec.synthetic.agents is None
        and spec.kind != "scaling"
        and "synthetic.agents" not in (spec.grid or {})
    ):
        problems.append(("synthetic.agents", "required: the synthetic town's number of agents"))
    for field in ("sizes", "seeds", "measures", "measure_at"):
        problems += _repeats(field, getattr(spec, field) or [])
    return problems


def _grid_problems(spec: ExperimentSpec) -> list[Problem]:
    if spec.grid is None:
        return []
    if not spec.grid:
        return [("grid", "an empty grid (omit grid for a single grid point)")]
    problems: list[Problem] = []
    for key, values in spec.grid.items():
        at = f"grid.{key}"
        if not values:
            problems.append((at, "an empty list of values (give at least one)"))
        if key == "seed":
            problems.append((at, "the seeds are set by `seeds`, not by the grid"))
        elif key.startswith("synthetic.") and spec.synthetic is None:
            problems.append((at, "a synthetic town's parameter, but there is no `synthetic`"))
        elif key == "synthetic.agents" and spec.kind == "scaling":
            problems.append((at, "a scaling study's sizes are set by `sizes`"))
    return problems


def _repeats(field: str, values: list[Any]) -> list[Problem]:
    seen: set[Any] = set()
    problems: list[Problem] = []
    for i, value in enumerate(values):
        if value in seen:
            problems.append((f"{field}[{i}]", f"{value!r} is given twice"))
        seen.add(value)
    return problems
