"""The built-in town (``scenarios/town.yaml``): valid, complete, and with each piece of seeded
news in exactly one agent."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from scenarios.loader import load_scenario, mind_settings
from scenarios.schema import AgentSpec, Scenario

TOWN = Path(__file__).parents[2] / "scenarios" / "town.yaml"


@pytest.fixture(scope="module")
def town() -> Scenario:
    return load_scenario(TOWN)


def _text(agent: AgentSpec) -> str:
    """Everything an agent knows at the start, lowercased."""
    parts = [
        agent.traits,
        agent.lifestyle,
        agent.current_situation,
        *agent.daily_requirements,
        *agent.relationships.values(),
        *(m.text for m in agent.seeded_memories()),
    ]
    return " ".join(parts).lower()


def test_the_town_loads_with_its_settings(town: Scenario) -> None:
    assert town.start == datetime(2024, 3, 4, 7, 0)
    assert town.start.weekday() == 0  # a Monday
    assert (town.step_seconds, town.duration_hours, town.checkpoint_every) == (10, 48, 360)
    assert town.preset == "paper"
    settings = mind_settings(town)
    assert settings.perception.vision_radius == 8
    assert settings.perception.attention_bandwidth == 8
    assert settings.perception.retention == 8
    assert settings.reflection.threshold == 150
    assert town.world.travel.tiles_per_minute == 20


def test_twenty_five_agents_with_unique_names(town: Scenario) -> None:
    names = [a.name for a in town.agents]
    assert len(names) == 25 == len(set(names))
    assert all(":" not in n for n in names)


def test_every_agent_has_a_home_and_known_places_in_the_world(town: Scenario) -> None:
    places = set(town.world.places())
    for agent in town.agents:
        assert agent.home in places
        assert len(agent.known_places) >= 3, agent.name
        assert set(agent.known_places) <= places
        assert 1 <= len(agent.memories) <= 3, agent.name
        assert agent.current_situation and agent.daily_requirements


def test_homes_are_households_not_workplaces(town: Scenario) -> None:
    homes = {a.home.split(":")[0] for a in town.agents}
    work = {a.known_places[0].split(":")[0] for a in town.agents}
    assert len(homes) >= 10
    assert not homes & work - {"Varga House"}  # the painter works in her studio at home


def test_relationship_targets_exist_and_mostly_go_both_ways(town: Scenario) -> None:
    names = {a.name for a in town.agents}
    pairs = {(a.name, b) for a in town.agents for b in a.relationships}
    assert all(b in names and a != b for a, b in pairs)
    one_way = {(a, b) for a, b in pairs if (b, a) not in pairs}
    assert len(one_way) <= len(pairs) // 4
    assert all(len(a.relationships) >= 2 for a in town.agents)


@pytest.mark.parametrize(
    ("keywords", "who"),
    [(("party",), "Owen Castell"), (("mayor", "election"), "Rosalind Pryce")],
    ids=["party", "candidacy"],
)
def test_each_piece_of_news_is_seeded_in_exactly_one_agent(
    town: Scenario, keywords: tuple[str, ...], who: str
) -> None:
    holders = [a for a in town.agents if any(k in _text(a) for k in keywords)]
    assert [a.name for a in holders] == [who]
    (agent,) = holders
    assert any(k in agent.current_situation.lower() for k in keywords)
    assert any(k in m.text.lower() for m in agent.seeded_memories() for k in keywords)


def test_the_party_happens_during_the_run(town: Scenario) -> None:
    party = datetime(2024, 3, 5, 19, 0)
    assert town.start <= party <= town.end
    owen = next(a for a in town.agents if a.name == "Owen Castell")
    assert "The Anchor Pub:back room" in town.world.places()
    assert "7pm" in owen.current_situation and "Anchor Pub" in owen.current_situation


def test_events_include_a_storm_warning_to_everyone_and_a_delivery(town: Scenario) -> None:
    storm = [e for e in town.events if "storm warning" in e.text]
    assert storm and storm[0].to == [] and storm[0].at == datetime(2024, 3, 4, 12, 0)
    assert any("deliver" in e.text and e.to for e in town.events)


def test_sectors_have_positions_so_travel_times_vary(town: Scenario) -> None:
    positions = [s.position for s in town.world.sectors]
    assert all(p is not None for p in positions)
    assert all(0 <= p[0] <= 150 and 0 <= p[1] <= 100 for p in positions if p is not None)
    assert len(set(positions)) == len(positions)
