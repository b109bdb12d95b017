"""Perception (spec section 6): radius, bandwidth, nearest first, retention, scheduled events."""

from actors.mind.events import Observation
from actors.mind.perception import perceive
from actors.mind.settings import PerceptionSettings

SETTINGS = PerceptionSettings(vision_radius=4, attention_bandwidth=3, retention=5)


def agent(name: str, distance: float, doing: str = "reading") -> Observation:
    return Observation("agent", name, f"{name} is {doing}", "cafe", distance)


def test_keeps_the_nearest_within_the_radius_up_to_the_bandwidth() -> None:
    seen = [agent("E", 4.5), agent("D", 4), agent("A", 1), agent("C", 3), agent("B", 2)]
    assert [o.subject for o in perceive(seen, [], SETTINGS)] == ["A", "B", "C"]
    wide = PerceptionSettings(vision_radius=4, attention_bandwidth=8, retention=5)
    # the radius is inclusive (D at 4 is seen), E beyond it is not
    assert [o.subject for o in perceive(seen, [], wide)] == ["A", "B", "C", "D"]


def test_ties_in_distance_are_broken_by_subject() -> None:
    seen = [agent("Zed", 1), agent("Amy", 1), agent("Max", 1), agent("Bob", 1)]
    assert [o.subject for o in perceive(seen, [], SETTINGS)] == ["Amy", "Bob", "Max"]


def test_drops_what_is_among_the_retained_latest_observations() -> None:
    a, b, c = agent("A", 1), agent("B", 2), agent("C", 3)
    recent = [c.event_key, ("X", "X is idle"), ("Y", "Y is idle"), ("Z", "Z is idle"), a.event_key]
    assert perceive([a, b, c], recent, SETTINGS) == [b]
    # only the latest `retention` count: with a sixth, newer key, C's is no longer retained
    older = [c.event_key, *recent[1:], ("W", "W is idle")]
    assert perceive([a, b, c], older, SETTINGS) == [b, c]
    # the same subject doing something else is a new event
    assert perceive([agent("A", 1, "cooking")], recent, SETTINGS) == [agent("A", 1, "cooking")]


def test_scheduled_events_are_always_perceived() -> None:
    party = Observation("event", "party", "There is a Valentine's party at Hobbs Cafe", "", 0)
    far = Observation("event", "fire", "The stove is on fire", "kitchen", 40.0)
    near = [agent("A", 1), agent("B", 2), agent("C", 3)]
    out = perceive([*near, far, party], [], SETTINGS)
    assert out[:2] == [far, party]  # beyond the radius, and on top of the full bandwidth
    assert [o.subject for o in out[2:]] == ["A", "B", "C"]
    assert perceive([party], [party.event_key], SETTINGS) == []  # but not stored twice


def test_nothing_seen_twice_in_one_step() -> None:
    a = agent("A", 1)
    assert perceive([a, a], [], SETTINGS) == [a]
