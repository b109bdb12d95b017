"""The scenario loader: every malformed file is refused with the field's path and what was
expected; several problems are reported at once; nothing is silently ignored."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.mind.settings import MindSettings
from scenarios.loader import (
    ScenarioError,
    load_scenario,
    mind_settings,
    parse_scenario,
    write_scenario,
)

BASE: dict[str, Any] = {
    "name": "tiny town",
    "start": "2024-03-04T07:00:00",
    "step_seconds": 10,
    "duration_hours": 2,
    "preset": "paper",
    "settings": {"retrieval": {"top_k": 20}, "perception": {"vision_radius": 8}},
    "world": {
        "name": "Tiny",
        "sectors": [
            {
                "name": "Home",
                "position": [0, 0],
                "arenas": [
                    {"name": "kitchen", "objects": [{"name": "stove"}, {"name": "table"}]},
                    {"name": "bedroom", "objects": [{"name": "bed"}]},
                ],
            },
            {
                "name": "Cafe",
                "position": [40, 10],
                "arenas": [{"name": "counter", "objects": [{"name": "espresso machine"}]}],
            },
        ],
    },
    "agents": [
        {
            "name": "Ann Lee",
            "age": 30,
            "traits": "kind",
            "lifestyle": "sleeps at 11pm",
            "home": "Home:bedroom",
            "known_places": ["Cafe:counter", "Home:kitchen"],
            "relationships": {"Bo Lee": "her brother"},
            "memories": ["Ann likes tea", {"text": "Ann opened the cafe", "importance": 5}],
        },
        {
            "name": "Bo Lee",
            "age": 28,
            "traits": "quiet",
            "lifestyle": "wakes at 6am",
            "home": "Home:kitchen",
            "relationships": {"Ann Lee": "his sister"},
        },
    ],
    "events": [{"at": "2024-03-04T08:00:00", "text": "rain starts", "to": ["Ann Lee"]}],
}

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Set ``a.b.0.c`` (list indices as numbers) in the scenario dict."""

    def mutate(data: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node: Any = data
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node: Any = data
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]

    return mutate


def _duplicate_agent(data: dict[str, Any]) -> None:
    data["agents"].append(copy.deepcopy(data["agents"][1]))


def _duplicate_sector(data: dict[str, Any]) -> None:
    data["world"]["sectors"].append(copy.deepcopy(data["world"]["sectors"][1]))


def _rename_typo(data: dict[str, Any]) -> None:
    data["duraton_hours"] = data.pop("duration_hours")


# (case id, the one defect, the field path reported, a fragment of what was expected)
CASES: list[tuple[str, Mutation, str, str]] = [
    ("top-level typo", _rename_typo, "duraton_hours", "unknown key (a typo?)"),
    ("missing duration", _delete("duration_hours"), "duration_hours", "required field"),
    ("agent unknown key", _set("agents.1.hobby", "chess"), "agents[1].hobby", "expected one of"),
    (
        "retrieval unknown key",
        _set("settings.retrieval.topk", 3),
        "settings.retrieval.topk",
        "expected one of: recency_decay",
    ),
    (
        "object unknown key",
        _set("world.sectors.0.arenas.1.objects.0.colour", "red"),
        "world.sectors[0].arenas[1].objects[0].colour",
        "expected one of: name, state, at",
    ),
    ("age wrong type", _set("agents.0.age", "thirty"), "agents[0].age", "valid integer"),
    ("age negative", _set("agents.0.age", -1), "agents[0].age", "greater than or equal to 0"),
    ("negative step", _set("step_seconds", -10), "step_seconds", "greater than or equal to 1"),
    ("zero duration", _set("duration_hours", 0), "duration_hours", "greater than 0"),
    ("home not in world", _set("agents.1.home", "Pub:bar"), "agents[1].home", "no place 'Pub:bar'"),
    (
        "known place unknown",
        _set("agents.0.known_places.1", "Home:attic"),
        "agents[0].known_places[1]",
        "expected 'Sector:Arena'",
    ),
    (
        "start place unknown",
        _set("agents.0.start", "Cafe"),
        "agents[0].start",
        "no place 'Cafe'",
    ),
    (
        "relationship to nobody",
        _set("agents.0.relationships", {"Cy Lee": "cousin"}),
        "agents[0].relationships.Cy Lee",
        "no agent named 'Cy Lee'",
    ),
    (
        "relationship to self",
        _set("agents.0.relationships", {"Ann Lee": "herself"}),
        "agents[0].relationships.Ann Lee",
        "cannot relate to itself",
    ),
    ("event to unknown agent", _set("events.0.to.0", "Zed"), "events[0].to[0]", "no agent named"),
    (
        "event outside the run",
        _set("events.0.at", "2024-03-05T08:00:00"),
        "events[0].at",
        "outside the run",
    ),
    (
        "event at unknown place",
        _set("events.0.location", "Moon:crater"),
        "events[0].location",
        "no place 'Moon:crater'",
    ),
    ("duplicate agent names", _duplicate_agent, "agents[2].name", "defined twice"),
    ("duplicate sector names", _duplicate_sector, "world.sectors", "sector names must be unique"),
    (
        "duplicate object names",
        _set("world.sectors.0.arenas.0.objects.1.name", "stove"),
        "world.sectors[0].arenas[0].objects",
        "object names must be unique",
    ),
    ("colon in a name", _set("agents.1.name", "Bo:Lee"), "agents[1].name", "should match pattern"),
    (
        "colon in an arena",
        _set("world.sectors.1.arenas.0.name", "a:b"),
        "world.sectors[1].arenas[0].name",
        "should match pattern",
    ),
    ("empty agents", _set("agents", []), "agents", "at least 1 item"),
    ("empty sectors", _set("world.sectors", []), "world.sectors", "at least 1 item"),
    ("missing traits", _delete("agents.0.traits"), "agents[0].traits", "required field"),
    ("bad preset", _set("preset", "papr"), "preset", "'paper' or 'reference'"),
    ("bad adapter", _set("agents.0.adapter", "../x"), "agents[0].adapter", "invalid adapter name"),
    (
        "base adapter",
        _set("agents.0.adapter", "base"),
        "agents[0].adapter",
        "reserved for the base",
    ),
    ("long adapter", _set("agents.0.adapter", "a" * 129), "agents[0].adapter", "invalid adapter"),
    (
        "broad strokes min > max",
        _set("settings.planning", {"broad_strokes_min": 9, "broad_strokes_max": 6}),
        "settings.planning",
        "broad_strokes_min must be <= broad_strokes_max",
    ),
    (
        "settings value out of range",
        _set("settings.retrieval.top_k", 0),
        "settings.retrieval.top_k",
        "greater than or equal to 1",
    ),
    ("unknown settings section", _set("settings.memory", {}), "settings.memory", "expected one of"),
    ("settings not a mapping", _set("settings", [1]), "settings", "valid dictionary"),
    (
        "preset inside settings",
        _set("settings.preset", "reference"),
        "settings.preset",
        "top level",
    ),
    (
        "settings step differs",
        _set("settings.step_seconds", 60),
        "settings.step_seconds",
        "differs from the scenario's step_seconds",
    ),
    (
        "memory importance too high",
        _set("agents.0.memories.1.importance", 11),
        "agents[0].memories[1].importance",
        "less than or equal to 10",
    ),
    (
        "memory unknown key",
        _set("agents.0.memories.1.weight", 3),
        "agents[0].memories[1].weight",
        "expected one of: text, importance",
    ),
    ("invalid start", _set("start", "next monday"), "start", "valid datetime"),
    (
        "position wrong shape",
        _set("world.sectors.0.position", [1]),
        "world.sectors[0].position",
        "too few",
    ),
    (
        "tiles per minute zero",
        _set("world.travel", {"tiles_per_minute": 0}),
        "world.travel.tiles_per_minute",
        "greater than 0",
    ),
    (
        "daily requirements not a list",
        _set("agents.0.daily_requirements", 7),
        "agents[0].daily_requirements",
        "valid list",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_malformed_file_is_refused_with_its_path(
    tmp_path: Path, mutate: Mutation, path: str, expected: str
) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    file = tmp_path / "scenario.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(file)
    err = caught.value
    assert err.source == str(file)
    matching = [
        msg for p, msg in err.problems if p == path or p.startswith((path + ".", path + "["))
    ]
    assert matching, f"no problem at {path!r} in:\n{err}"
    assert any(expected in msg for msg in matching), str(err)
    assert f"{file}: {path}" in str(err)


def test_the_base_scenario_is_valid(tmp_path: Path) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text(yaml.safe_dump(BASE, sort_keys=False))
    before = sorted(tmp_path.iterdir())
    scenario = load_scenario(file)
    assert sorted(tmp_path.iterdir()) == before  # loading writes nothing
    assert [a.name for a in scenario.agents] == ["Ann Lee", "Bo Lee"]
    settings = mind_settings(scenario)
    assert settings.retrieval.top_k == 20
    assert settings.perception.vision_radius == 8
    assert settings.step_seconds == 10


def test_the_tuple_position_error_names_the_position() -> None:
    data = copy.deepcopy(BASE)
    data["world"]["sectors"][0]["position"] = [1]
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    assert caught.value.problems[0][0].startswith("world.sectors[0].position")


def test_unknown_keys_list_the_valid_ones() -> None:
    data = copy.deepcopy(BASE)
    data["agents"][0]["hom"] = "Home:bedroom"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, source="x.yaml")
    msg = dict(caught.value.problems)["agents[0].hom"]
    assert "home" in msg and "known_places" in msg and "relationships" in msg


def test_several_problems_are_reported_at_once() -> None:
    data = copy.deepcopy(BASE)
    data["duraton"] = 1
    data["agents"][0]["age"] = "old"
    data["agents"][1]["extra"] = True
    data["settings"]["retrieval"]["topk"] = 3
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, source="town.yaml")
    paths = [p for p, _ in caught.value.problems]
    assert {"duraton", "agents[0].age", "agents[1].extra", "settings.retrieval.topk"} <= set(paths)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.problems) >= 4
    assert all(line.startswith("town.yaml: ") for line in lines)


def test_several_reference_problems_are_reported_at_once() -> None:
    data = copy.deepcopy(BASE)
    data["agents"][0]["home"] = "X:y"
    data["agents"][1]["known_places"] = ["Cafe:counter", "Nowhere:at all"]
    data["events"][0]["to"] = ["Nobody"]
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, source="town.yaml")
    assert [p for p, _ in caught.value.problems] == [
        "agents[0].home",
        "agents[1].known_places[1]",
        "events[0].to[0]",
    ]
    assert "town.yaml: agents[0].home: no place 'X:y' in the world (expected 'Sector:Arena')" in (
        str(caught.value)
    )


def test_timezone_mixed_with_naive_times_is_a_problem_not_a_crash() -> None:
    data = copy.deepcopy(BASE)
    data["events"][0]["at"] = "2024-03-04T08:00:00+00:00"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    assert caught.value.problems[0][0] == "events[0].at"
    assert "time zone" in caught.value.problems[0][1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("- a\n- b\n", "top level is a list (expected a mapping"),
        ("just a string\n", "top level is a str"),
        ("name: x\nagents: [1, 2\n", "line 3, column 1: not valid YAML"),
        ("name: x\n  bad: indent\n", "line 2, column 6: not valid YAML"),
        ("name: a\nname: b\n", "found the key 'name' twice"),
    ],
    ids=["empty", "comment only", "list", "string", "unclosed", "indent", "duplicate key"],
)
def test_files_that_are_not_scenarios(tmp_path: Path, text: str, expected: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(file)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(f"{file}: ")


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file") as caught:
        load_scenario(tmp_path / "nope.yaml")
    assert caught.value.source == str(tmp_path / "nope.yaml")


def test_parse_refuses_a_non_mapping() -> None:
    with pytest.raises(ScenarioError, match="<data>: the top level is a list"):
        parse_scenario([1, 2])


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    scenario = parse_scenario(copy.deepcopy(BASE))
    out = tmp_path / "sub" / "again.yaml"
    write_scenario(scenario, out)
    assert load_scenario(out) == scenario
    assert [p.name for p in out.parent.iterdir()] == ["again.yaml"]  # no temporary left


def test_the_settings_are_the_minds_typed_and_the_file_keeps_only_the_overrides(
    tmp_path: Path,
) -> None:
    data = {**copy.deepcopy(BASE), "preset": "reference", "step_seconds": 30}
    scenario = parse_scenario(data)
    assert isinstance(scenario.settings, MindSettings)
    assert scenario.settings.preset == "reference" and scenario.settings.step_seconds == 30
    assert scenario.settings.retrieval.w_relevance == 3.0  # the preset's
    assert scenario.settings.retrieval.top_k == 20  # the file's
    assert scenario.model_dump(mode="json")["settings"] == BASE["settings"]
    out = tmp_path / "again.yaml"
    write_scenario(scenario, out)
    assert yaml.safe_load(out.read_text())["settings"] == BASE["settings"]
    assert load_scenario(out) == scenario


@pytest.mark.parametrize("hours", [".inf", "1e12", "1e308", ".nan"])
def test_an_endless_duration_is_a_field_error_not_a_traceback(tmp_path: Path, hours: str) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        f"duration_hours: {BASE['duration_hours']}", f"duration_hours: {hours}"
    )
    assert f"duration_hours: {hours}" in text
    file = tmp_path / "endless.yaml"
    file.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(file)
    assert [p for p, _ in caught.value.problems] == ["duration_hours"]


def test_a_run_ending_after_the_calendar_is_refused() -> None:
    data = {**copy.deepcopy(BASE), "start": "9999-12-31T20:00:00", "duration_hours": 48}
    data["events"] = []
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    (problem,) = [msg for path, msg in caught.value.problems if path == "duration_hours"]
    assert "9999" in problem


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    file = tmp_path / "bomb.yaml"
    file.write_text("\n".join(lines) + "\n")
    assert file.stat().st_size < 600
    with pytest.raises(ScenarioError, match="expands to more than"):
        load_scenario(file)


def test_yaml_nested_too_deeply_is_a_scenario_error(tmp_path: Path) -> None:
    file = tmp_path / "deep.yaml"
    file.write_text("name: x\ndescription: " + "[" * 5000 + "\n")
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario(file)


def test_an_integer_of_too_many_digits_is_a_scenario_error(tmp_path: Path) -> None:
    file = tmp_path / "big.yaml"
    file.write_text("name: x\nagents:\n  - age: " + "9" * 5001 + "\n")
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(file)
