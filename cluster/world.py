"""The world of a simulation (spec section 8): places, objects, where agents are, what they see.

The world is a tree, world : sector : arena : object. Places (arenas) are written
``"Sector:Arena"`` and objects ``"Sector:Arena:Object"``. Each arena is a small plane of tiles:
an object stands on its ``at`` tile (or, when unset, object ``i`` of the arena on ``(2 * i, 0)``),
an agent on the tile of the object it uses, or on :data:`ENTRANCE` when it uses none.

Per step the driver asks :meth:`World.observations` for what every agent perceives, steps the
agents that :meth:`World.needs_step` names (recording it with :meth:`World.mark_stepped`), and
hands their actions to :meth:`World.apply`, which returns rows for the run's events table.
Everything the world holds is plain data through :meth:`World.get_state` /
:meth:`World.set_state`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, get_args

from actors.mind.events import Action, ActionKind, Observation
from actors.mind.planning import SLEEP
from scenarios.schema import Scenario

ENTRANCE: tuple[float, float] = (-1.0, 0.0)
"""Where an agent stands in its arena when it uses no object."""

ACTION_KINDS: tuple[str, ...] = get_args(ActionKind)
EventRow = tuple[str, str, str]
"""A row for the run's events table: (kind, location, text)."""

_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class AgentStatus:
    """What the world knows of one agent."""

    place: str  # arena where it is (the destination while travelling)
    activity: str  # what it is doing ("sleeping", "having breakfast", ...); "" when idle
    kind: str  # the current action's kind: "activity", "talk", "wait", "chat_done", "idle"
    until: datetime | None  # when the current action ends (None: open)
    arrives: datetime | None  # while travelling: when it arrives (None: not travelling)
    partner: str | None  # the other agent in a conversation (chat_done) or waited for
    obj: str | None  # the object it uses ("Sector:Arena:Object") or None
    tile: tuple[float, float]  # position in its arena

    @property
    def travelling(self) -> bool:
        return self.arrives is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["until"] = _iso(self.until)
        d["arrives"] = _iso(self.arrives)
        d["tile"] = list(self.tile)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentStatus:
        x, y = d["tile"]
        return cls(
            place=d["place"],
            activity=d["activity"],
            kind=d["kind"],
            until=_from_iso(d["until"]),
            arrives=_from_iso(d["arrives"]),
            partner=d["partner"],
            obj=d["obj"],
            tile=(float(x), float(y)),
        )


@dataclass(frozen=True)
class _Object:
    """An object as the scenario defines it."""

    path: str  # "Sector:Arena:Object"
    name: str
    place: str
    initial: str
    tile: tuple[float, float]


class World:
    """Where every agent is and what it does, the objects' states, and who knows which places."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        spec = scenario.world
        self.travel = spec.travel
        self.places: list[str] = spec.places()
        self.agents: list[str] = [a.name for a in scenario.agents]
        self._positions = {s.name: s.position for s in spec.sectors}
        self._sector_places = {
            s.name: [f"{s.name}:{a.name}" for a in s.arenas] for s in spec.sectors
        }
        self._objects: dict[str, _Object] = {}
        self._arena_objects: dict[str, list[_Object]] = {place: [] for place in self.places}
        for sector in spec.sectors:
            for arena in sector.arenas:
                place = f"{sector.name}:{arena.name}"
                for i, o in enumerate(arena.objects):
                    tile = (float(o.at[0]), float(o.at[1])) if o.at else (2.0 * i, 0.0)
                    obj = _Object(f"{place}:{o.name}", o.name, place, o.state, tile)
                    self._objects[obj.path] = obj
                    self._arena_objects[place].append(obj)
        self._states: dict[str, str] = {p: o.initial for p, o in self._objects.items()}
        self._status: dict[str, AgentStatus] = {}
        self._known: dict[str, list[str]] = {}
        self._new: dict[str, list[str]] = {}
        for a in scenario.agents:
            start = a.start or a.home
            self._status[a.name] = AgentStatus(start, "", "idle", None, None, None, None, ENTRANCE)
            bootstrap = list(dict.fromkeys([a.home, *a.known_places]))
            self._known[a.name] = list(dict.fromkeys([*bootstrap, start]))
            self._new[a.name] = [p for p in self._known[a.name] if p not in bootstrap]
        self._delivered: list[int] = []
        self._seen: dict[str, str] = {}  # fingerprint of the latest observations per agent
        self._due: dict[str, bool] = {}  # whether the latest observations held an event
        self._given: dict[str, str] = {}  # fingerprint of the observations at the last step
        self._stepped: dict[str, str] = {}  # ISO date of the last step

    # -- places ------------------------------------------------------------------------------

    def travel_minutes(self, origin: str, dest: str) -> int:
        """Game minutes from one arena to another (see :class:`scenarios.schema.TravelSpec`)."""
        for place in (origin, dest):
            if place not in self._arena_objects:
                raise KeyError(f"no place {place!r} in the world")
        if origin == dest:
            return 0
        a, b = origin.split(":")[0], dest.split(":")[0]
        if a == b:
            return self.travel.same_sector_minutes
        pa, pb = self._positions[a], self._positions[b]
        if pa is None or pb is None:
            return self.travel.default_minutes
        tiles = abs(pa[0] - pb[0]) + abs(pa[1] - pb[1])
        return max(self.travel.same_sector_minutes, math.ceil(tiles / self.travel.tiles_per_minute))

    def known_places(self, agent: str) -> list[str]:
        """The arenas ``agent`` knows: its bootstrap knowledge and every sector it has been to."""
        self._check(agent)
        return list(self._known[agent])

    def newly_known(self) -> dict[str, list[str]]:
        """Places learned since the last call, per agent that learned any (drained)."""
        new = {a: places for a, places in self._new.items() if places}
        self._new = {a: [] for a in self.agents}
        return new

    def object_state(self, obj: str) -> str:
        """The current state of an object ``"Sector:Arena:Object"``."""
        return self._states[obj]

    # -- agents ------------------------------------------------------------------------------

    def status(self, agent: str) -> AgentStatus:
        """A copy of what the world knows of ``agent``."""
        self._check(agent)
        return replace(self._status[agent])

    def describe(self, agent: str) -> str:
        """How others see ``agent``: "<name> is <activity>", "... is chatting with ...", "idle"."""
        s = self._status[agent]
        if s.kind == "chat_done":
            return f"{agent} is chatting with {s.partner}" if s.partner else f"{agent} is chatting"
        if s.kind == "idle" or not s.activity:
            return f"{agent} is idle"
        return f"{agent} is {s.activity}"

    def observations(self, now: datetime) -> dict[str, list[Observation]]:
        """What every agent perceives at ``now``.

        First lands the travellers due by ``now`` and frees the objects of finished actions.
        A travelling agent perceives only scheduled events; the others also perceive every
        other non-travelling agent and every object of their own arena. Each scheduled event
        is delivered once, at the first call with ``now >= at``. Sorted by distance, subject.
        """
        for name in self.agents:
            s = self._status[name]
            if s.arrives is not None and s.arrives <= now:
                self._arrive(name)
            if s.arrives is None and s.obj is not None and s.until is not None and now >= s.until:
                self._release(name)
        seen: dict[str, list[Observation]] = {name: [] for name in self.agents}
        for name in self.agents:
            s = self._status[name]
            if s.travelling:
                continue
            for other in self.agents:
                o = self._status[other]
                if other == name or o.travelling or o.place != s.place:
                    continue
                talking = o.kind in ("chat_done", "talk") and (o.until is None or o.until > now)
                seen[name].append(
                    Observation(
                        "agent",
                        other,
                        self.describe(other),
                        o.place,
                        _distance(s.tile, o.tile),
                        asleep=o.activity == SLEEP,
                        talking=talking,
                    )
                )
            for obj in self._arena_objects[s.place]:
                description = f"{obj.name} is {self._states[obj.path]}"
                distance = _distance(s.tile, obj.tile)
                seen[name].append(Observation("object", obj.path, description, obj.place, distance))
        due = {name: False for name in self.agents}
        for i, event in enumerate(self.scenario.events):
            if i in self._delivered or event.at > now:
                continue
            self._delivered.append(i)
            for name in event.to or self.agents:
                seen[name].append(Observation("event", f"event:{i}", event.text, event.location))
                due[name] = True
        for name in self.agents:
            seen[name].sort(key=lambda o: (o.distance, o.subject))
            self._seen[name] = _fingerprint(seen[name])
            self._due[name] = due[name]
        return seen

    def apply(self, agent: str, action: Action, now: datetime) -> list[EventRow]:
        """Carries out an action of ``agent`` at ``now``; returns rows for the events table.

        Raises:
            KeyError: no such agent (or no such target agent for talk / wait).
            ValueError: an unknown action kind, or talk / wait without a target.
        """
        self._check(agent)
        kind = action.kind
        if kind not in ACTION_KINDS:
            expected = ", ".join(ACTION_KINDS)
            raise ValueError(f"unknown action kind {kind!r} (expected one of {expected})")
        s = self._status[agent]
        description = action.description
        target = action.target
        if kind in ("talk", "wait"):
            if not target:
                raise ValueError(f"a {kind} action needs a target agent")
            self._check(target)
            if kind == "talk":
                return [("talk", s.place, f"{agent} starts talking to {target}")]
            s.kind, s.activity, s.partner = "wait", f"waiting for {target}", target
            return [("wait", s.place, f"{agent} is waiting for {target}")]

        rows: list[EventRow] = []
        self._release(agent)
        location = action.location
        minutes = max(0, action.duration_minutes)
        if location in self._arena_objects and location != s.place:
            travel = self.travel_minutes(s.place, location)
            rows.append(("move", location, f"{agent} goes from {s.place} to {location}"))
            s.place, s.arrives = location, now + timedelta(minutes=travel)
            if kind == "move":
                minutes = max(minutes, travel)
        if kind == "move" and not description:
            description = f"going to {s.place}"
        s.activity = description
        s.kind = "chat_done" if kind == "chat_done" else "activity"
        s.until = now + timedelta(minutes=minutes)
        s.partner = target if kind == "chat_done" else None
        s.obj = self._choose_object(agent, s.place, description)
        s.tile = self._objects[s.obj].tile if s.obj else ENTRANCE
        if s.arrives is not None and s.arrives <= now:
            self._arrive(agent)
        elif s.arrives is None and s.obj is not None:
            self._use(agent)
        if kind == "chat_done":
            who = f"{agent} and {s.partner}" if s.partner else agent
            rows.append(("conversation", s.place, f"{who}: {description}"))
        else:
            rows.append(("activity", s.place, f"{agent} is {description}"))
        return rows

    def needs_step(self, agent: str, now: datetime) -> bool:
        """Whether ``agent``'s mind must be stepped now, rather than just carry on.

        True when it has no action yet, its action has ended, the day changed since its last
        step, its latest observations differ from those it was last stepped with, or they
        hold a scheduled event.
        """
        self._check(agent)
        s = self._status[agent]
        return (
            s.kind == "idle"
            or s.until is None
            or now >= s.until
            or self._stepped.get(agent) != now.date().isoformat()
            or self._given.get(agent) != self._seen.get(agent)
            or self._due.get(agent, False)
        )

    def mark_stepped(
        self, agent: str, now: datetime, observations: list[Observation] | None = None
    ) -> None:
        """Records that ``agent`` was stepped at ``now`` with ``observations``.

        ``None`` stands for the observations of the latest :meth:`observations` call. Clears
        the due-event flag: the agent has been given them.
        """
        self._check(agent)
        self._stepped[agent] = now.date().isoformat()
        given = self._seen.get(agent) if observations is None else _fingerprint(observations)
        if given is not None:
            self._given[agent] = given
        self._due[agent] = False

    # -- state -------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything that changes, as plain data (datetimes as ISO strings)."""
        return {
            "status": {name: s.to_dict() for name, s in self._status.items()},
            "objects": dict(self._states),
            "known": {name: list(p) for name, p in self._known.items()},
            "new": {name: list(p) for name, p in self._new.items()},
            "delivered": list(self._delivered),
            "seen": dict(self._seen),
            "due": dict(self._due),
            "given": dict(self._given),
            "stepped": dict(self._stepped),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`get_state` returned (on a world built from the same scenario)."""
        self._status = {n: AgentStatus.from_dict(d) for n, d in state["status"].items()}
        self._states = dict(state["objects"])
        self._known = {n: list(p) for n, p in state["known"].items()}
        self._new = {n: list(p) for n, p in state["new"].items()}
        self._delivered = [int(i) for i in state["delivered"]]
        self._seen = dict(state["seen"])
        self._due = {n: bool(v) for n, v in state["due"].items()}
        self._given = dict(state["given"])
        self._stepped = dict(state["stepped"])

    # -- helpers -----------------------------------------------------------------------------

    def _check(self, agent: str) -> None:
        if agent not in self._status:
            raise KeyError(f"no agent named {agent!r} in the world")

    def _arrive(self, agent: str) -> None:
        """Lands a traveller: it starts using its object and learns its sector's arenas."""
        s = self._status[agent]
        s.arrives = None
        if s.obj is not None:
            self._use(agent)
        for place in self._sector_places[s.place.split(":")[0]]:
            if place not in self._known[agent]:
                self._known[agent].append(place)
                self._new[agent].append(place)

    def _use(self, agent: str) -> None:
        s = self._status[agent]
        assert s.obj is not None
        self._states[s.obj] = f"used by {agent} for {s.activity}"

    def _release(self, agent: str) -> None:
        """The object ``agent`` uses (if any) goes back to its initial state."""
        s = self._status[agent]
        if s.obj is not None:
            self._states[s.obj] = self._objects[s.obj].initial
            s.obj = None

    def _choose_object(self, agent: str, place: str, activity: str) -> str | None:
        """The free object of ``place`` that best fits ``activity``, or None.

        Sleep takes a bed when there is one; otherwise the object whose name shares the most
        words (longer than 2 letters; a word matches another that it begins, like "book" and
        "bookshelf", when the shorter has 4 letters or more) with the activity, the first on a
        tie; none when no word matches.
        """
        taken = {s.obj for name, s in self._status.items() if name != agent and s.obj}
        free = [o for o in self._arena_objects[place] if o.path not in taken]
        if activity == SLEEP:
            beds = [o for o in free if "bed" in _words(o.name)]
            if beds:
                return beds[0].path
        wanted = _words(activity)
        best, best_score = None, 0
        for o in free:
            score = sum(1 for w in _words(o.name) if any(_match(w, a) for a in wanted))
            if score > best_score:
                best, best_score = o.path, score
        return best


def _fingerprint(observations: list[Observation]) -> str:
    """What identifies a list of observations for :meth:`World.needs_step`.

    Leaves out distances, and events: those are delivered once and counted as due instead.
    """
    key = sorted((o.kind, o.subject, o.description) for o in observations if o.kind != "event")
    return hashlib.sha1(json.dumps(key).encode()).hexdigest()


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2}


def _match(a: str, b: str) -> bool:
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return short == long or (len(short) >= 4 and long.startswith(short))


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _from_iso(t: str | None) -> datetime | None:
    return None if t is None else datetime.fromisoformat(t)
