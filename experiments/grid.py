"""An experiment's runs: the scenario x the grid's points x the seeds, each a :class:`RunSpec`.

:func:`expand` is pure: it sets each grid value at its field path in the scenario (checked
against the schema first), adds the experiment's ``declare`` measures and validates the result,
reporting every problem of every point at once (:class:`~experiments.spec.ExperimentError`).
Grid paths: ``model`` and ``engine`` (how a run is served), ``synthetic.agents`` (``.hours``,
``.town_seed``: the synthetic town), or a scenario field such as ``settings.retrieval.top_k``,
``agents[3].age``, ``agents[Owen Castell].adapter`` (an item by index or by name).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from experiments.spec import RUN_OPTIONS, ExperimentError, ExperimentSpec, SyntheticSpec
from scenarios.loader import ScenarioError, load_scenario, parse_scenario, validation_problems
from scenarios.measures import MeasuresSpec
from scenarios.schema import Problem, Scenario
from scenarios.synthetic import synthetic_town
from serving.config import ENGINE_NAMES


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: a grid point with one seed.

    ``params`` are the grid's (path, value) of the point, in the grid's order; ``options`` the
    run's ``model`` and ``engine``; ``steps`` how many steps the run lasts.
    """

    run_id: str  # "p{point:02d}-s{seed}": unique in the experiment, a folder name
    point: int  # the grid point's index, in product order
    params: tuple[tuple[str, Any], ...]
    seed: int
    scenario: Scenario
    options: tuple[tuple[str, Any], ...]
    steps: int


def load_base(spec: ExperimentSpec, experiment_path: str | os.PathLike[str]) -> Scenario | None:
    """The experiment's scenario file (relative to the experiment file's folder), or None for a
    synthetic town. A scenario file with problems raises its own :class:`ScenarioError`."""
    if spec.scenario is None:
        return None
    path = Path(experiment_path).parent / spec.scenario
    if not path.is_file():
        raise ExperimentError(str(experiment_path), [("scenario", f"no such file: {path}")])
    return load_scenario(path)


def expand(spec: ExperimentSpec, base: Scenario | None, source: str | None = None) -> list[RunSpec]:
    """Every run of ``spec`` on ``base`` (None for a synthetic town), grid points in product
    order and seeds fastest; raises :class:`ExperimentError` from ``source`` (default: the
    experiment's name) with every problem of every point."""
    if (base is None) != (spec.synthetic is not None):
        raise ValueError("pass the experiment's scenario file (load_base), or None for synthetic")
    grid = spec.grid_values()
    problems: list[Problem] = []
    refused: set[tuple[str, int | None]] = set()  # (key, value index); None: every value
    paths: dict[str, list[_Part]] = {}
    for key, values in grid.items():
        for index, problem in _key_problems(spec, key, values, paths):
            problems.append((f"grid.{key}" + ("" if index is None else f"[{index}]"), problem))
            refused.add((key, index))
    late: dict[int, Problem] = {}  # measure_at entries past a run's end: the first run each
    runs: list[RunSpec] = []
    choices = [list(enumerate(values)) for values in grid.values()]
    for point, combo in enumerate(itertools.product(*choices)):
        params = tuple((key, value) for key, (_, value) in zip(grid, combo, strict=True))
        chosen = [  # less what is refused, so that the rest of the point is still checked
            (key, i, value)
            for key, (i, value) in zip(grid, combo, strict=True)
            if (key, None) not in refused and (key, i) not in refused
        ]
        options = {"model": spec.model, "engine": spec.engine}
        options.update({k: v for k, _, v in chosen if k in RUN_OPTIONS})
        overrides = [(k, i, v) for k, i, v in chosen if k in paths]
        town = _town(spec, {k: v for k, _, v in chosen if k.startswith("synthetic.")})
        built: dict[int | None, Scenario | None] = {}  # by the town's seed (None: the file)
        for seed in spec.seeds:
            town_seed = _town_seed(town, seed)
            if town_seed not in built:
                start = base
                if town is not None and town_seed is not None:
                    assert town.agents is not None  # spec_problems: given, or from sizes
                    start = synthetic_town(town.agents, town_seed, town.hours)
                assert start is not None
                built[town_seed] = _scenario(start, overrides, paths, spec.declare, problems)
            scenario = built[town_seed]
            if scenario is None:
                continue
            run_id = f"p{point:02d}-s{seed}"
            steps = spec.steps or _steps(spec.hours or 0.0, scenario.step_seconds)
            for i, at in enumerate(spec.measure_at or []):
                if at > steps and i not in late:
                    end = f"after the end of run {run_id} ({steps} steps)"
                    late[i] = (f"measure_at[{i}]", f"step {at} is {end}")
            runs.append(
                RunSpec(
                    run_id=run_id,
                    point=point,
                    params=params,
                    seed=seed,
                    scenario=scenario,
                    options=tuple(options.items()),
                    steps=steps,
                )
            )
    problems += [late[i] for i in sorted(late)]
    if problems:
        raise ExperimentError(source or spec.name, list(dict.fromkeys(problems)))
    return runs


def _town_seed(town: SyntheticSpec | None, seed: int) -> int | None:
    """The seed the run's town is built with (None: the scenario file, no town)."""
    if town is None:
        return None
    return seed if town.town_seed is None else town.town_seed


def _steps(hours: float, step_seconds: int) -> int:
    return max(1, math.ceil(hours * 3600 / step_seconds))


def _town(spec: ExperimentSpec, params: dict[str, Any]) -> SyntheticSpec | None:
    if spec.synthetic is None:
        return None
    fields = {key.split(".", 1)[1]: value for key, value in params.items()}
    return SyntheticSpec.model_validate({**spec.synthetic.model_dump(), **fields})


# --- checking the grid's keys and values ------------------------------------------------------


def _key_problems(
    spec: ExperimentSpec, key: str, values: list[Any], paths: dict[str, list[_Part]]
) -> list[tuple[int | None, str]]:
    """(value index or None for the key itself, problem) of one grid key; a scenario field's
    parsed path goes into ``paths``."""
    if key == "model":
        return [
            (i, f"expected a model name (got {v!r})")
            for i, v in enumerate(values)
            if not isinstance(v, str) or not v
        ]
    if key == "engine":
        names = ", ".join(ENGINE_NAMES)
        return [
            (i, f"expected one of: {names} (got {v!r})")
            for i, v in enumerate(values)
            if v not in ENGINE_NAMES
        ]
    if key.startswith("synthetic."):
        return _synthetic_problems(spec, key.split(".", 1)[1], values)
    parts = _parse_path(key)
    if parts is None:
        return [(None, "not a field path (names joined by '.', items as [3] or [name])")]
    problem = _schema_problem(parts)
    if problem is not None:
        return [(None, problem)]
    paths[key] = parts
    return []


def _synthetic_problems(
    spec: ExperimentSpec, field: str, values: list[Any]
) -> list[tuple[int | None, str]]:
    if field not in SyntheticSpec.model_fields:
        expected = ", ".join(SyntheticSpec.model_fields)
        return [(None, f"no field {field!r} in synthetic; expected one of: {expected}")]
    assert spec.synthetic is not None
    problems: list[tuple[int | None, str]] = []
    for i, value in enumerate(values):
        try:
            SyntheticSpec.model_validate({**spec.synthetic.model_dump(), field: value})
        except ValidationError as exc:
            problems += [(i, msg) for _, msg in validation_problems(exc, SyntheticSpec)]
    return problems


@dataclass(frozen=True)
class _Item:
    """``[3]`` or ``[Owen Castell]`` in a field path: a list's item by index or by name."""

    key: int | str


_Part = str | _Item
_TOKEN = re.compile(r"(?:^|\.)([^.\[\]]+)|\[([^\[\]]+)\]")


def _parse_path(path: str) -> list[_Part] | None:
    """``agents[Owen Castell].adapter`` as ``["agents", _Item("Owen Castell"), "adapter"]``."""
    parts: list[_Part] = []
    end = 0
    for match in _TOKEN.finditer(path):
        if match.start() != end:
            return None
        name, item = match.groups()
        if name is not None:
            parts.append(name)
        else:
            parts.append(_Item(int(item) if item.isdigit() else item))
        end = match.end()
    if end != len(path) or not parts or isinstance(parts[0], _Item):
        return None
    return parts


def _schema_problem(parts: list[_Part]) -> str | None:
    """What in ``parts`` names no field of the scenario's schema (None: every part does)."""
    tp: Any = Scenario
    where = "the scenario"
    for part in parts:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(part, _Item):
            if origin in (list, tuple) or origin is dict:
                tp = get_args(tp)[-1] if origin is dict else get_args(tp)[0]
            elif tp is not Any:
                return f"{where} is not a list (no item [{part.key}])"
            where = f"{where}[{part.key}]"
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                expected = ", ".join(tp.model_fields)
                return f"no field {part!r} in {where}; expected one of: {expected}"
            tp = tp.model_fields[part].annotation
        elif origin is dict:
            tp = get_args(tp)[1]  # any key
        elif origin in (list, tuple):
            return f"{where} is a list: name an item, as {where}[0] or {where}[<name>]"
        elif tp is not Any:
            return f"{where} has no fields (no {part!r})"
        where = part
    return None


def _unwrap(tp: Any) -> Any:
    """An annotation without ``Annotated``, ``None`` or, in a union, all but its one model."""
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (types.UnionType, typing.Union):
        members = [m for m in get_args(tp) if m is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(members) == 1:
            return _unwrap(members[0])
        return models[0] if len(models) == 1 else Any
    return tp


# --- building one point's scenario ---------------------------------------------------------


def _scenario(
    start: Scenario,
    overrides: list[tuple[str, int, Any]],
    paths: dict[str, list[_Part]],
    declare: MeasuresSpec | None,
    problems: list[Problem],
) -> Scenario | None:
    """``start`` with each (key, value index, value) set at its path and ``declare`` added;
    None (and ``problems`` extended) when the result is not a valid scenario."""
    if not overrides and declare is None:
        return start
    data = start.model_dump(mode="json")
    where: dict[str, tuple[str, int]] = {}  # resolved scenario path -> (grid key, value index)
    for key, index, value in overrides:
        target = _locate(data, paths[key])
        if isinstance(target, str):
            problems.append((f"grid.{key}", target))
            return None
        container, last, resolved = target
        if resolved in where:
            problems.append((f"grid.{key}", f"sets the same field as grid.{where[resolved][0]}"))
            return None
        container[last] = copy.deepcopy(value)  # later paths may set inside it
        where[resolved] = (key, index)
    counts = _add_declared(data, declare)
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        for path, msg in exc.problems:
            problems.append(_attribute(path, msg, where, counts, declare))
        return None


def _locate(data: dict[str, Any], parts: list[_Part]) -> tuple[Any, Any, str] | str:
    """(the container, the key or index in it, the scenario path) ``parts`` name in ``data``,
    creating missing mappings on the way; or why they name nothing."""
    node: Any = data
    resolved = ""
    for n, part in enumerate(parts):
        step: Any
        if isinstance(part, _Item) and isinstance(node, list):
            step = _find_item(node, part.key, _prefix(parts[:n]))
            if isinstance(step, str):
                return step
            resolved += f"[{step}]"
        elif isinstance(node, dict):
            step = str(part.key) if isinstance(part, _Item) else part
            resolved += f".{step}" if resolved else step
        else:
            what = f"item [{part.key}]" if isinstance(part, _Item) else f"field {part!r}"
            return f"{_prefix(parts[:n])} has no {what}"
        if n == len(parts) - 1:
            return node, step, resolved
        if isinstance(node, dict) and node.get(step) is None:
            node[step] = {}  # e.g. a settings section the file does not override
        node = node[step]
    raise AssertionError("a path has at least one part")


def _prefix(parts: list[_Part]) -> str:
    text = ""
    for part in parts:
        text += f"[{part.key}]" if isinstance(part, _Item) else (f".{part}" if text else part)
    return text


def _find_item(items: list[Any], key: int | str, where: str) -> int | str:
    """The index of the item of ``where`` that ``key`` names (an index, or the item's
    ``name``), or why none."""
    if isinstance(key, int):
        return key if key < len(items) else f"no item {key} in {where} (it has {len(items)})"
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if key in names:
        return names.index(key)
    known = [str(n) for n in names if n is not None]
    if not known:
        return f"no item named {key!r} in {where} (its items have no names; give an index)"
    shown = ", ".join(known[:8]) + (f", ... ({len(known)} in all)" if len(known) > 8 else "")
    return f"no item named {key!r} in {where}; expected one of: {shown}"


def _add_declared(data: dict[str, Any], declare: MeasuresSpec | None) -> dict[str, int]:
    """Appends ``declare``'s information and gatherings to the scenario's measures (and
    replaces its relationship probe, if given); the counts of the scenario's own."""
    measures = data.get("measures")
    if declare is None or not isinstance(measures, dict):
        return {}
    added = declare.model_dump(mode="json")
    counts = {}
    for field in ("information", "gatherings"):
        own = measures.get(field)
        own = own if isinstance(own, list) else []
        counts[field] = len(own)
        measures[field] = [*own, *added[field]]
    if "relationships" in declare.model_fields_set:
        measures["relationships"] = added["relationships"]
    return counts


_DECLARED = re.compile(r"^measures\.(information|gatherings)\[(\d+)\](.*)$")


def _attribute(
    path: str,
    msg: str,
    where: dict[str, tuple[str, int]],
    counts: dict[str, int],
    declare: MeasuresSpec | None,
) -> Problem:
    """A problem of a point's scenario at the experiment's path it comes from: the grid value
    set there (``grid.key[i]``), a declared measure (``declare.…``), else the point's grid."""
    owners = [p for p in where if path == p or path.startswith((f"{p}.", f"{p}["))]
    if owners:
        key, index = where[max(owners, key=len)]
        return f"grid.{key}[{index}]", msg
    match = _DECLARED.match(path)
    if match and match[1] in counts and int(match[2]) >= counts[match[1]]:
        return f"declare.{match[1]}[{int(match[2]) - counts[match[1]]}]{match[3]}", msg
    if declare is not None and path.startswith("measures"):
        if (
            path.startswith("measures.relationships")
            and "relationships" in declare.model_fields_set
        ):
            return "declare" + path[len("measures") :], msg
        return "declare", f"{path}: {msg}"
    if len(where) == 1:
        key, index = next(iter(where.values()))
        return f"grid.{key}[{index}]", f"{path}: {msg}"
    values = ", ".join(f"{key}[{index}]" for key, index in where.values())
    return "grid", f"with {values}: {path}: {msg}"
