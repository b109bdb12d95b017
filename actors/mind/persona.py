"""Who an agent is: the identity the prompts describe (from the scenario file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Persona:
    """An agent's fixed identity. ``adapter`` names its LoRA adapter (None: the base model)."""

    name: str
    age: int
    traits: str
    lifestyle: str
    current_situation: str = ""
    daily_requirements: tuple[str, ...] = ()
    home: str = ""
    known_places: tuple[str, ...] = ()
    relationships: dict[str, str] = field(default_factory=dict)
    adapter: str | None = None

    def summary(self) -> str:
        """The identity paragraph every prompt starts from (the paper's summary description)."""
        lines = [
            f"Name: {self.name} (age: {self.age})",
            f"Innate traits: {self.traits}",
            f"Lifestyle: {self.lifestyle}",
        ]
        if self.current_situation:
            lines.append(f"Currently: {self.current_situation}")
        if self.daily_requirements:
            lines.append("Daily requirements: " + "; ".join(self.daily_requirements))
        if self.home:
            lines.append(f"Lives at: {self.home}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["daily_requirements"] = list(self.daily_requirements)
        d["known_places"] = list(self.known_places)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Persona:
        d = dict(d)
        d["daily_requirements"] = tuple(d.get("daily_requirements") or ())
        d["known_places"] = tuple(d.get("known_places") or ())
        return cls(**d)
