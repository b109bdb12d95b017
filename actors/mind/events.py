"""What the world tells an agent (observations) and what an agent tells the world (actions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

ObservationKind = Literal["agent", "object", "event"]
ActionKind = Literal["move", "activity", "talk", "wait", "chat_done"]


@dataclass(frozen=True)
class Observation:
    """Something an agent can perceive this step.

    ``subject`` is who or what (an agent's name, an object's path ``sector:arena:object``);
    ``description`` what it is doing or its state ("Klaus Mueller is reading a book");
    ``distance`` in tiles from the observer (0 for a scheduled scenario event, which is always
    perceived); ``location`` the arena where it is. For another agent, ``asleep`` and
    ``talking`` say (as the world knows) whether it is asleep or in a conversation.
    """

    kind: ObservationKind
    subject: str
    description: str
    location: str = ""
    distance: float = 0.0
    asleep: bool = False
    talking: bool = False

    @property
    def event_key(self) -> tuple[str, str]:
        """What makes two observations "the same event" for the retention rule."""
        return (self.subject, self.description)


@dataclass(frozen=True)
class Action:
    """What an agent does from now: an activity at a place for some minutes, a move, a talk."""

    kind: ActionKind
    agent: str
    description: str
    location: str = ""
    duration_minutes: int = 0
    target: str | None = None  # the other agent, for talk / wait

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Action:
        return cls(**d)
