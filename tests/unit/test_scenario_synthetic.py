"""Synthetic towns: valid, unique names, deterministic per seed, and they round-trip a file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from scenarios.loader import load_scenario
from scenarios.synthetic import synthetic_town, write_scenario


def test_a_town_of_250_validates_with_unique_names() -> None:
    town = synthetic_town(250, seed=3, hours=2.0)
    names = [a.name for a in town.agents]
    assert len(names) == 250 == len(set(names))
    assert town.duration_hours == 2.0
    places = set(town.world.places())
    assert all(a.home in places and set(a.known_places) <= places for a in town.agents)
    sizes = Counter(a.home.split(":")[0] for a in town.agents)
    assert set(sizes.values()) <= {1, 2, 3, 4}
    assert len(town.world.sectors) >= 25 + len(sizes)  # a workplace per ten people, at least


def test_the_same_seed_gives_the_same_town_and_another_seed_another() -> None:
    assert synthetic_town(60, seed=7) == synthetic_town(60, seed=7)
    assert synthetic_town(60, seed=7) != synthetic_town(60, seed=8)


def test_ten_thousand_names_are_unique() -> None:
    town = synthetic_town(10_000, seed=1)
    assert len({a.name for a in town.agents}) == 10_000


def test_a_single_agent_town() -> None:
    town = synthetic_town(1)
    assert len(town.agents) == 1


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    town = synthetic_town(40, seed=2, hours=0.5)
    out = tmp_path / "town.yaml"
    write_scenario(town, out)
    back = load_scenario(out)
    assert back == town
    assert back.model_dump(mode="json") == town.model_dump(mode="json")
    assert [p.name for p in tmp_path.iterdir()] == ["town.yaml"]
