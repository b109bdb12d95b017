"""The world: travel times, observations, objects, travel, events, stepping, state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from actors.mind.events import Action, Observation
from cluster.world import ENTRANCE, World
from scenarios.schema import Scenario

T0 = datetime(2023, 2, 13, 6, 0)
HOME_BED = "Lin Home:bedroom"
KITCHEN = "Lin Home:kitchen"
COUNTER = "Cafe:counter"
SEATING = "Cafe:seating"
LAWN = "Park:lawn"


def scenario() -> Scenario:
    """Two positioned sectors (100 tiles apart) and one without a position; 3 agents, 2 events."""
    person = {"age": 30, "traits": "kind", "lifestyle": "early riser"}
    return Scenario.model_validate(
        {
            "name": "test town",
            "start": T0,
            "duration_hours": 48,
            "world": {
                "travel": {"same_sector_minutes": 2, "default_minutes": 15, "tiles_per_minute": 20},
                "sectors": [
                    {
                        "name": "Lin Home",
                        "position": (0, 0),
                        "arenas": [
                            {"name": "bedroom", "objects": [{"name": "bed"}, {"name": "desk"}]},
                            {
                                "name": "kitchen",
                                "objects": [
                                    {"name": "stove", "state": "off"},
                                    {"name": "kitchen table", "at": (5, 5)},
                                ],
                            },
                        ],
                    },
                    {
                        "name": "Cafe",
                        "position": (100, 10),
                        "arenas": [
                            {"name": "counter", "objects": [{"name": "coffee machine"}]},
                            {"name": "seating", "objects": [{"name": "table"}]},
                        ],
                    },
                    {"name": "Park", "arenas": [{"name": "lawn"}]},
                ],
            },
            "agents": [
                {"name": "Ann", "home": HOME_BED, "known_places": [COUNTER], **person},
                {"name": "Bob", "home": KITCHEN, "start": HOME_BED, **person},
                {"name": "Cat", "home": COUNTER, **person},
            ],
            "events": [
                {
                    "at": T0 + timedelta(minutes=30),
                    "text": "The fire alarm rings",
                    "location": KITCHEN,
                },
                {"at": T0 + timedelta(hours=1), "text": "A letter arrives", "to": ["Bob"]},
            ],
        }
    )


def act(
    kind: str,
    agent: str,
    description: str = "",
    location: str = "",
    minutes: int = 0,
    target: str | None = None,
) -> Action:
    return Action(kind, agent, description, location, minutes, target)


def by_subject(observations: list[Observation]) -> dict[str, Observation]:
    return {o.subject: o for o in observations}


def test_travel_minutes() -> None:
    world = World(scenario())
    assert world.travel_minutes(HOME_BED, HOME_BED) == 0
    assert world.travel_minutes(HOME_BED, KITCHEN) == 2  # same sector
    assert world.travel_minutes(HOME_BED, SEATING) == 6  # ceil((100 + 10) / 20)
    assert world.travel_minutes(COUNTER, LAWN) == 15  # the park has no position: default
    with pytest.raises(KeyError, match="Nowhere"):
        world.travel_minutes(HOME_BED, "Nowhere:at all")


def test_travel_between_close_sectors_takes_at_least_the_same_sector_time() -> None:
    data = scenario().model_dump()
    data["world"]["sectors"][1]["position"] = (1, 0)
    world = World(Scenario.model_validate(data))
    assert world.travel_minutes(HOME_BED, COUNTER) == 2


def test_initial_statuses_and_known_places() -> None:
    world = World(scenario())
    assert world.places == [HOME_BED, KITCHEN, COUNTER, SEATING, LAWN]
    ann = world.status("Ann")
    assert (ann.place, ann.activity, ann.kind, ann.until, ann.arrives) == (
        HOME_BED,
        "",
        "idle",
        None,
        None,
    )
    assert ann.obj is None and ann.tile == ENTRANCE
    assert world.status("Bob").place == HOME_BED  # start, not home
    assert world.known_places("Ann") == [HOME_BED, COUNTER]
    assert world.known_places("Bob") == [KITCHEN, HOME_BED]
    # only the start place is news: home and known places are the persona's own knowledge
    assert world.newly_known() == {"Bob": [HOME_BED]}
    assert world.newly_known() == {}
    with pytest.raises(KeyError, match="Zed"):
        world.status("Zed")


def test_observations_see_only_the_own_arena_with_distances() -> None:
    world = World(scenario())
    seen = world.observations(T0)
    assert set(seen) == {"Ann", "Bob", "Cat"}
    ann = seen["Ann"]
    assert [o.subject for o in ann] == ["Bob", "Lin Home:bedroom:bed", "Lin Home:bedroom:desk"]
    assert ann[0] == Observation("agent", "Bob", "Bob is idle", HOME_BED, 0.0)
    assert ann[1].description == "bed is idle" and ann[1].distance == 1.0
    assert ann[2].distance == 3.0  # desk at (2, 0), Ann at the entrance (-1, 0)
    assert [o.subject for o in seen["Cat"]] == ["Cafe:counter:coffee machine"]
    for obs in seen.values():
        assert all(isinstance(o, Observation) for o in obs)


def test_objects_change_state_on_use_and_revert() -> None:
    world = World(scenario())
    rows = world.apply("Ann", act("activity", "Ann", "sleeping", HOME_BED, 60), T0)
    assert rows == [("activity", HOME_BED, "Ann is sleeping")]
    ann = world.status("Ann")
    assert ann.obj == "Lin Home:bedroom:bed" and ann.tile == (0.0, 0.0)
    assert ann.until == T0 + timedelta(minutes=60)
    seen = by_subject(world.observations(T0)["Bob"])
    assert seen["Ann"].description == "Ann is sleeping"
    assert seen["Ann"].asleep is True and seen["Ann"].distance == 1.0
    assert seen["Lin Home:bedroom:bed"].description == "bed is used by Ann for sleeping"
    assert by_subject(world.observations(T0)["Ann"])["Lin Home:bedroom:bed"].distance == 0.0

    seen = by_subject(world.observations(T0 + timedelta(minutes=60))["Bob"])
    assert seen["Lin Home:bedroom:bed"].description == "bed is idle"
    assert world.status("Ann").obj is None


def test_a_new_action_frees_the_previous_object_at_once() -> None:
    world = World(scenario())
    world.apply("Ann", act("activity", "Ann", "writing at the desk", HOME_BED, 60), T0)
    assert world.object_state("Lin Home:bedroom:desk") == "used by Ann for writing at the desk"
    world.apply("Ann", act("activity", "Ann", "stretching", "", 10), T0 + timedelta(minutes=5))
    assert world.object_state("Lin Home:bedroom:desk") == "idle"
    assert world.status("Ann").obj is None and world.status("Ann").tile == ENTRANCE


def test_object_choice_by_shared_words_and_free_objects_only() -> None:
    world = World(scenario())
    world.apply("Bob", act("activity", "Bob", "lunch at the kitchen table", KITCHEN, 30), T0)
    world.observations(T0 + timedelta(minutes=2))  # Bob arrives
    assert world.status("Bob").obj == "Lin Home:kitchen:kitchen table"
    assert world.status("Bob").tile == (5.0, 5.0)
    assert world.object_state("Lin Home:kitchen:kitchen table") == (
        "used by Bob for lunch at the kitchen table"
    )
    # the table is taken: Ann gets no object, and the stove is untouched ("off")
    world.apply("Ann", act("activity", "Ann", "lunch at the kitchen table", KITCHEN, 30), T0)
    assert world.status("Ann").obj is None
    assert world.object_state("Lin Home:kitchen:stove") == "off"
    world.apply("Cat", act("activity", "Cat", "reading a novel", "", 30), T0)
    assert world.status("Cat").obj is None


def test_travellers_are_invisible_and_arrive_on_time() -> None:
    world = World(scenario())
    rows = world.apply("Ann", act("activity", "Ann", "buying coffee", COUNTER, 30), T0)
    assert rows == [
        ("move", COUNTER, f"Ann goes from {HOME_BED} to {COUNTER}"),
        ("activity", COUNTER, "Ann is buying coffee"),
    ]
    ann = world.status("Ann")
    assert ann.place == COUNTER and ann.arrives == T0 + timedelta(minutes=6)
    seen = world.observations(T0 + timedelta(minutes=5))
    assert seen["Ann"] == []
    assert "Ann" not in by_subject(seen["Bob"]) and "Ann" not in by_subject(seen["Cat"])
    assert by_subject(seen["Cat"])["Cafe:counter:coffee machine"].description == (
        "coffee machine is idle"
    )  # the object is used from the arrival on
    seen = world.observations(T0 + timedelta(minutes=6))
    assert world.status("Ann").arrives is None
    assert by_subject(seen["Cat"])["Ann"].description == "Ann is buying coffee"
    assert by_subject(seen["Ann"])["Cafe:counter:coffee machine"].description == (
        "coffee machine is used by Ann for buying coffee"
    )
    assert world.known_places("Ann") == [HOME_BED, COUNTER, SEATING]


def test_arrival_reveals_the_sector_and_newly_known_is_drained() -> None:
    world = World(scenario())
    world.newly_known()
    world.apply("Cat", act("activity", "Cat", "walking", LAWN, 30), T0)
    world.observations(T0 + timedelta(minutes=14))
    assert world.newly_known() == {}
    world.observations(T0 + timedelta(minutes=15))
    assert world.newly_known() == {"Cat": [LAWN]}
    assert world.newly_known() == {}
    world.apply("Cat", act("activity", "Cat", "coffee", COUNTER, 30), T0 + timedelta(minutes=20))
    world.observations(T0 + timedelta(minutes=40))
    assert world.newly_known() == {"Cat": [SEATING]}


def test_unknown_or_empty_location_stays_and_move_lasts_the_trip() -> None:
    world = World(scenario())
    rows = world.apply("Ann", act("activity", "Ann", "reading", "Mars:base", 20), T0)
    assert rows == [("activity", HOME_BED, "Ann is reading")]
    assert world.status("Ann").place == HOME_BED and world.status("Ann").arrives is None
    rows = world.apply("Ann", act("move", "Ann", "", KITCHEN), T0)
    assert rows[0] == ("move", KITCHEN, f"Ann goes from {HOME_BED} to {KITCHEN}")
    ann = world.status("Ann")
    assert ann.activity == f"going to {KITCHEN}"
    assert ann.until == ann.arrives == T0 + timedelta(minutes=2)


def test_events_are_delivered_once_to_their_agents() -> None:
    world = World(scenario())
    world.apply(
        "Ann", act("activity", "Ann", "buying coffee", COUNTER, 30), T0 + timedelta(minutes=28)
    )
    assert all(o.kind != "event" for obs in world.observations(T0).values() for o in obs)
    seen = world.observations(T0 + timedelta(minutes=31))
    alarm = Observation("event", "event:0", "The fire alarm rings", KITCHEN, 0.0)
    assert seen["Ann"] == [alarm]  # travelling: only events
    assert alarm in seen["Bob"] and alarm in seen["Cat"]
    seen = world.observations(T0 + timedelta(minutes=32))
    assert all(o.kind != "event" for obs in seen.values() for o in obs)
    seen = world.observations(T0 + timedelta(hours=2))
    events = {name: [o.subject for o in obs if o.kind == "event"] for name, obs in seen.items()}
    assert events == {"Ann": [], "Bob": ["event:1"], "Cat": []}


def test_needs_step() -> None:
    world = World(scenario())
    seen = world.observations(T0)
    assert world.needs_step("Ann", T0)  # no action yet
    world.apply("Ann", act("activity", "Ann", "writing at the desk", HOME_BED, 60), T0)
    world.apply("Bob", act("activity", "Bob", "stretching", HOME_BED, 60), T0)
    seen = world.observations(T0)
    world.mark_stepped("Ann", T0, seen["Ann"])
    world.mark_stepped("Bob", T0)  # the latest observations
    t = T0 + timedelta(minutes=10)
    world.observations(t)
    assert not world.needs_step("Ann", t)  # continues its action
    assert not world.needs_step("Bob", t)
    world.apply("Bob", act("activity", "Bob", "dancing", HOME_BED, 60), t)
    world.observations(t)
    assert world.needs_step("Ann", t)  # Bob does something else now
    world.mark_stepped("Ann", t)
    assert not world.needs_step("Ann", t)
    world.observations(T0 + timedelta(minutes=60))
    assert world.needs_step("Ann", T0 + timedelta(minutes=60))  # its action ended


def test_needs_step_on_events_and_on_a_new_day() -> None:
    world = World(scenario())
    world.apply("Cat", act("activity", "Cat", "sleeping", COUNTER, 2000), T0)
    world.observations(T0)
    world.mark_stepped("Cat", T0)
    world.observations(T0 + timedelta(minutes=5))
    assert not world.needs_step("Cat", T0 + timedelta(minutes=5))
    world.observations(T0 + timedelta(minutes=31))  # the fire alarm
    assert world.needs_step("Cat", T0 + timedelta(minutes=31))
    world.mark_stepped("Cat", T0 + timedelta(minutes=31))
    world.observations(T0 + timedelta(minutes=32))  # the event is gone: nothing new
    assert not world.needs_step("Cat", T0 + timedelta(minutes=32))
    midnight = datetime(2023, 2, 14, 0, 0)
    world.observations(midnight)
    assert world.needs_step("Cat", midnight)  # a new day
    world.mark_stepped("Cat", midnight)
    assert not world.needs_step("Cat", midnight)


def test_talk_wait_and_conversation() -> None:
    world = World(scenario())
    before = world.status("Ann")
    rows = world.apply("Ann", act("talk", "Ann", "talk with Bob", HOME_BED, target="Bob"), T0)
    assert rows == [("talk", HOME_BED, "Ann starts talking to Bob")]
    assert world.status("Ann") == before
    rows = world.apply("Bob", act("wait", "Bob", "wait for Ann", HOME_BED, target="Ann"), T0)
    assert rows == [("wait", HOME_BED, "Bob is waiting for Ann")]
    bob = world.status("Bob")
    assert (bob.kind, bob.activity, bob.partner, bob.until) == (
        "wait",
        "waiting for Ann",
        "Ann",
        None,
    )
    rows = world.apply("Ann", act("chat_done", "Ann", "plans for the party", "", 4, "Bob"), T0)
    assert rows == [("conversation", HOME_BED, "Ann and Bob: plans for the party")]
    ann = by_subject(world.observations(T0 + timedelta(minutes=1))["Bob"])["Ann"]
    assert ann.description == "Ann is chatting with Bob" and ann.talking is True
    ann = by_subject(world.observations(T0 + timedelta(minutes=4))["Bob"])["Ann"]
    assert ann.talking is False


def test_apply_errors() -> None:
    world = World(scenario())
    with pytest.raises(KeyError, match="Zed"):
        world.apply("Zed", act("activity", "Zed", "x"), T0)
    with pytest.raises(ValueError, match="fly"):
        world.apply("Ann", act("fly", "Ann", "x"), T0)
    with pytest.raises(ValueError, match="target"):
        world.apply("Ann", act("talk", "Ann", "x"), T0)
    with pytest.raises(KeyError, match="Zed"):
        world.apply("Ann", act("wait", "Ann", "x", target="Zed"), T0)


def test_state_round_trip() -> None:
    world = World(scenario())
    world.apply("Ann", act("activity", "Ann", "sleeping", HOME_BED, 90), T0)
    world.apply("Cat", act("activity", "Cat", "buying coffee", SEATING, 60), T0)
    world.apply("Bob", act("chat_done", "Bob", "the weather", "", 40, "Ann"), T0)
    world.observations(T0 + timedelta(minutes=31))
    world.mark_stepped("Ann", T0 + timedelta(minutes=31))
    world.apply("Cat", act("activity", "Cat", "walking", LAWN, 60), T0 + timedelta(minutes=32))
    state = json.loads(json.dumps(world.get_state()))  # plain data only
    assert state == world.get_state()

    restored = World(scenario())
    restored.set_state(state)
    for name in world.agents:
        assert restored.status(name) == world.status(name)
        assert restored.known_places(name) == world.known_places(name)
        assert restored.needs_step(name, T0 + timedelta(minutes=33)) == world.needs_step(
            name, T0 + timedelta(minutes=33)
        )
    assert restored.newly_known() == world.newly_known()
    for minutes in (33, 50, 61, 95):
        now = T0 + timedelta(minutes=minutes)
        assert restored.observations(now) == world.observations(now)
        for name in world.agents:
            assert restored.status(name) == world.status(name)
            assert restored.needs_step(name, now) == world.needs_step(name, now)
    assert restored.get_state() == world.get_state()
