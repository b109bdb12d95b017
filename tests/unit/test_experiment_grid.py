"""Experiment files and their grids: scenario x grid points x seeds -> run specs, each bad input
refused with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments.grid import RunSpec, expand, load_base
from experiments.spec import ExperimentError, ExperimentSpec, load_experiment
from scenarios.loader import load_scenario, write_scenario
from scenarios.schema import Scenario
from scenarios.synthetic import synthetic_town

TOWN = Path(__file__).parents[2] / "scenarios" / "town.yaml"
PARTY_NEWS = {"name": "news", "text": "The ferry is late.", "question": "Is the ferry late?"}


@pytest.fixture(scope="module")
def town() -> Scenario:
    return load_scenario(TOWN)


def _spec(**fields: Any) -> ExperimentSpec:
    data = {"name": "exp", "scenario": "town.yaml", "seeds": [1], "steps": 10, **fields}
    return ExperimentSpec.model_validate(data)


def _refused(spec: ExperimentSpec, base: Scenario | None) -> list[tuple[str, str]]:
    with pytest.raises(ExperimentError) as caught:
        expand(spec, base)
    return caught.value.problems


def _point(runs: list[RunSpec], point: int) -> Scenario:
    return next(run.scenario for run in runs if run.point == point)


def test_a_two_by_two_grid_times_three_seeds(town: Scenario) -> None:
    grid = {"settings.retrieval.w_relevance": [1, 3], "agents[0].age": [30, 40]}
    runs = expand(_spec(grid=grid, seeds=[7, 8, 9]), town)
    assert [r.run_id for r in runs[:4]] == ["p00-s7", "p00-s8", "p00-s9", "p01-s7"]
    assert len({r.run_id for r in runs}) == len(runs) == 12
    assert [r.point for r in runs] == [p for p in range(4) for _ in range(3)]
    assert [r.seed for r in runs] == [7, 8, 9] * 4
    assert runs[3].params == (("settings.retrieval.w_relevance", 1), ("agents[0].age", 40))
    assert runs[-1].params == (("settings.retrieval.w_relevance", 3), ("agents[0].age", 40))
    assert all(r.steps == 10 for r in runs)


@pytest.mark.parametrize(
    ("path", "values", "check"),
    [
        ("settings.retrieval.w_relevance", [1, 3], lambda s: s.settings.retrieval.w_relevance),
        ("agents[Owen Castell].adapter", ["bob", "alice"], lambda s: s.agents[10].adapter),
        ("agents[0].age", [20, 61], lambda s: s.agents[0].age),
        ("world.travel.tiles_per_minute", [5, 12.5], lambda s: s.world.travel.tiles_per_minute),
    ],
    ids=["settings", "agent by name", "agent by index", "world"],
)
def test_an_override_lands_at_its_field_path(
    town: Scenario, path: str, values: list[Any], check: Any
) -> None:
    runs = expand(_spec(grid={path: values}), town)
    assert check(_point(runs, 1)) == values[1]
    assert _point(runs, 1).settings.perception == town.settings.perception  # the file's own


def test_a_name_resolves_to_its_agent_and_no_other(town: Scenario) -> None:
    owen = _point(expand(_spec(grid={"agents[Owen Castell].adapter": ["alice"]}), town), 0)
    assert [a.name for a in owen.agents if a.adapter == "alice"] == ["Owen Castell"]


def test_the_model_and_engine_go_to_the_run_options(town: Scenario) -> None:
    runs = expand(_spec(grid={"model": ["tiny", "smollm2"], "engine": ["vllm"]}), town)
    assert [dict(r.options) for r in runs] == [
        {"model": "tiny", "engine": "vllm"},
        {"model": "smollm2", "engine": "vllm"},
    ]
    assert all(r.scenario is town for r in runs)
    (plain,) = expand(_spec(model="tiny"), town)
    assert dict(plain.options) == {"model": "tiny", "engine": "hf"}
    assert plain.params == ()


def test_a_scaling_study_builds_a_town_of_each_size() -> None:
    spec = _spec(
        kind="scaling", scenario=None, synthetic={"town_seed": 5},
        sizes=[3, 5], seeds=[0, 1], steps=None, hours=0.5,
    )  # fmt: skip
    runs = expand(spec, None)
    assert [len(r.scenario.agents) for r in runs] == [3, 3, 5, 5]
    assert [r.params for r in runs[::2]] == [(("synthetic.agents", 3),), (("synthetic.agents", 5),)]
    assert runs[0].scenario == runs[1].scenario == synthetic_town(3, seed=5)
    assert all(r.steps == 180 for r in runs)  # half an hour of 10 s steps


def test_a_synthetic_town_without_a_town_seed_is_built_with_each_runs_seed() -> None:
    spec = _spec(scenario=None, synthetic={"agents": 4}, seeds=[0, 1],
                 grid={"synthetic.hours": [2.0]})  # fmt: skip
    runs = expand(spec, None)
    assert [r.scenario for r in runs] == [synthetic_town(4, seed=s, hours=2.0) for s in (0, 1)]


def test_declared_measures_are_added_to_the_scenarios_own(town: Scenario) -> None:
    news = {**PARTY_NEWS, "seeded_in": ["Owen Castell"]}
    (run,) = expand(_spec(declare={"information": [news]}), town)
    assert [i.name for i in run.scenario.measures.information] == ["party", "candidacy", "news"]
    assert run.scenario.measures.gatherings == town.measures.gatherings


GATHERING = {"name": "meet", "start": "2024-03-04T08:00:00", "end": "2024-03-04T09:00:00"}


@pytest.mark.parametrize(
    ("fields", "path", "expected"),
    [
        (
            {"grid": {"settings.retrieval.w_relevanc": [1]}},
            "grid.settings.retrieval.w_relevanc",
            "no field 'w_relevanc' in retrieval; expected one of: recency_decay, w_recency",
        ),
        ({"grid": {"duration": [1]}}, "grid.duration", "no field 'duration' in the scenario"),
        (
            {"grid": {"agents[Owen Castel].adapter": ["alice"]}},
            "grid.agents[Owen Castel].adapter",
            "no item named 'Owen Castel' in agents; expected one of: Tobias Marrow",
        ),
        ({"grid": {"agents[25].age": [30]}}, "grid.agents[25].age", "no item 25 in agents"),
        ({"grid": {"agents.age": [30]}}, "grid.agents.age", "agents is a list"),
        (
            {"grid": {"settings.retrieval.w_relevance": [1, ["x"]]}},
            "grid.settings.retrieval.w_relevance[1]",
            "Input should be a valid number (got ['x'])",
        ),
        ({"grid": {"engine": ["hf", "gpt"]}}, "grid.engine[1]", "expected one of: hf, vllm"),
        ({"grid": {"model": [3]}}, "grid.model[0]", "expected a model name"),
        (
            {"declare": {"information": [{**PARTY_NEWS, "seeded_in": ["Nobody"]}]}},
            "declare.information[0].seeded_in[0]",
            "no agent named 'Nobody'",
        ),
        (
            {"declare": {"gatherings": [{**GATHERING, "place": "Nowhere"}]}},
            "declare.gatherings[0].place",
            "no place 'Nowhere'",
        ),
        ({"measure_at": [0, 10, 11]}, "measure_at[2]", "step 11 is after the end of run p00-s1"),
    ],
    ids=[
        "unknown field", "unknown top field", "unknown agent", "index too big", "list field",
        "wrong type", "unknown engine", "model not a string", "declare agent", "declare place",
        "measure_at beyond the end",
    ],
)  # fmt: skip
def test_each_bad_grid_input_is_refused_with_its_path(
    town: Scenario, fields: dict[str, Any], path: str, expected: str
) -> None:
    problems = _refused(_spec(seeds=[1, 2, 3], **fields), town)
    assert len(problems) == 1, problems  # once, not once per seed
    assert problems[0][0] == path
    assert expected in problems[0][1]


def test_a_synthetic_parameter_is_checked_as_the_towns() -> None:
    spec = _spec(scenario=None, synthetic={"agents": 4}, grid={"synthetic.agents": [4, 0]})
    assert _refused(spec, None) == [
        ("grid.synthetic.agents[1]", "Input should be greater than or equal to 1 (got 0)")
    ]
    spec = _spec(scenario=None, synthetic={"agents": 4}, grid={"synthetic.size": [4]})
    assert "no field 'size' in synthetic" in _refused(spec, None)[0][1]


def test_every_problem_of_every_point_is_reported_at_once(town: Scenario) -> None:
    grid = {"agents[0].age": [30, -1], "agents[1].age": ["old", 40], "nope": [1]}
    paths = [path for path, _ in _refused(_spec(grid=grid), town)]
    assert sorted(paths) == ["grid.agents[0].age[1]", "grid.agents[1].age[0]", "grid.nope"]


# --- the experiment file ------------------------------------------------------------------


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    file = tmp_path / "exp.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


BASE = {"name": "exp", "scenario": "town.yaml", "seeds": [1], "steps": 10}
SYNTHETIC = {"agents": 4}


@pytest.mark.parametrize(
    ("changes", "path", "expected"),
    [
        ({"grid": {}}, "grid", "an empty grid"),
        ({"grid": {"model": []}}, "grid.model", "an empty list of values"),
        ({"seeds": [1, 2, 1]}, "seeds[2]", "1 is given twice"),
        ({"seeds": []}, "seeds", "at least 1 item"),
        ({"grid": {"seed": [1, 2]}}, "grid.seed", "set by `seeds`"),
        ({"synthetic": SYNTHETIC}, "scenario", "exactly one of scenario"),
        ({"scenario": None}, "scenario", "exactly one of scenario"),
        ({"sizes": [3, 5]}, "sizes", "only for kind: scaling"),
        ({"kind": "scaling", "scenario": None, "synthetic": SYNTHETIC}, "sizes", "required"),
        ({"hours": 1.0}, "steps", "exactly one of steps and hours"),
        ({"measures": ["cost", "cost"]}, "measures[1]", "'cost' is given twice"),
        ({"measures": ["costs"]}, "measures[0]", "Input should be 'awareness'"),
        ({"concurency": 3}, "concurency", "unknown key (a typo?); expected one of: name"),
        ({"synthetic": {"agents": 0}, "scenario": None}, "synthetic.agents", "greater than"),
        ({"synthetic": {"hours": 1}, "scenario": None}, "synthetic.agents", "required"),
        ({"engine": "gpt"}, "engine", "Input should be 'hf', 'vllm' or 'openai'"),
        ({"name": "my run"}, "name", "should match pattern"),
    ],
    ids=[
        "empty grid", "empty list", "duplicate seeds", "no seeds", "seed in grid", "both",
        "neither", "sizes without scaling", "scaling without sizes", "steps and hours",
        "duplicate measure", "unknown measure", "typo", "no agents", "agents missing",
        "unknown engine", "name",
    ],
)  # fmt: skip
def test_each_bad_experiment_file_is_refused_with_its_path(
    tmp_path: Path, changes: dict[str, Any], path: str, expected: str
) -> None:
    data = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    file = _write(tmp_path, data)
    with pytest.raises(ExperimentError) as caught:
        load_experiment(file)
    assert caught.value.source == str(file)
    assert [p for p, _ in caught.value.problems] == [path], caught.value.problems
    assert expected in caught.value.problems[0][1]
    assert str(caught.value).startswith(f"{file}: {path}: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [exp\n", "line 2, column 1: not valid YAML"),
        ("name: a\nname: b\n", "found the key 'name' twice"),
        ("", "the file is empty (expected an experiment mapping)"),
        ("- a\n", "the top level is a list (expected a mapping of experiment keys)"),
    ],
    ids=["bad yaml", "duplicate key", "empty", "list"],
)
def test_a_file_that_is_not_an_experiment(tmp_path: Path, text: str, expected: str) -> None:
    file = tmp_path / "exp.yaml"
    file.write_text(text)
    with pytest.raises(ExperimentError) as caught:
        load_experiment(file)
    assert expected in str(caught.value)


def test_a_valid_file_loads_and_its_scenario_is_relative_to_it(tmp_path: Path) -> None:
    write_scenario(synthetic_town(4), tmp_path / "town.yaml")
    data = {**BASE, "grid": {"agents[0].age": [30, 40]}, "measure_at": [0, 5]}
    spec = load_experiment(_write(tmp_path, data))
    assert spec.measures == ["awareness", "network", "attendance", "cost"]
    assert spec.concurrency == 2
    base = load_base(spec, tmp_path / "exp.yaml")
    assert base == synthetic_town(4)
    assert [r.scenario.agents[0].age for r in expand(spec, base)] == [30, 40]


def test_a_missing_scenario_file_is_an_experiment_error(tmp_path: Path) -> None:
    spec = load_experiment(_write(tmp_path, BASE))
    with pytest.raises(ExperimentError) as caught:
        load_base(spec, tmp_path / "exp.yaml")
    assert caught.value.problems[0][0] == "scenario"
    assert "no such file" in caught.value.problems[0][1]
    assert load_base(_spec(scenario=None, synthetic=SYNTHETIC), tmp_path / "exp.yaml") is None
