"""Memory records (spec section 1) and game time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from serving.seeds import derive

Kind = Literal["observation", "reflection", "plan", "chat"]
KINDS: tuple[Kind, ...] = ("observation", "reflection", "plan", "chat")


class IdSequence:
    """Deterministic ids: a prefix and a counter, formatted by ``form``. The counter is part of
    its owner's state, so a resumed run hands out the same ids as an uninterrupted one."""

    form = "{prefix}{n}"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counter = 0

    def next(self) -> str:
        """The next id."""
        self.counter += 1
        return self.form.format(prefix=self.prefix, n=self.counter)

    def get_state(self) -> dict[str, Any]:
        return {"counter": self.counter}

    def set_state(self, state: dict[str, Any]) -> None:
        self.counter = int(state["counter"])


class RecordIds(IdSequence):
    """The record ids of one agent of one run (its memory owns them).

    Ids are 32 hex characters (a valid uuid hex, as the Qdrant store needs): the first 16 hex of
    ``sha256(f"{seed}:{agent}")`` then a 16-hex counter.
    """

    form = "{prefix}{n:016x}"

    def __init__(self, seed: int, agent: str) -> None:
        super().__init__(f"{derive(seed, agent, bits=64):016x}")


@dataclass(frozen=True)
class MemoryRecord:
    """One entry of an agent's memory stream.

    ``depth`` is 0 for observations, plans and chats, and 1 + the deepest evidence for a
    reflection. ``evidence`` holds the ids a record rests on (cited memories for a reflection,
    the chat record for a post-chat reflection). ``transcript`` is set for chats only.
    """

    agent_id: str
    kind: Kind
    description: str
    created: datetime
    importance: int
    last_accessed: datetime | None = None
    id: str = field(kw_only=True)  # from the agent's id source: see Memory.record
    evidence: tuple[str, ...] = ()
    depth: int = 0
    expires: datetime | None = None
    transcript: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if self.last_accessed is None:
            object.__setattr__(self, "last_accessed", self.created)
        if self.kind not in KINDS:
            raise ValueError(f"record {self.id}: kind {self.kind!r} is not one of {KINDS}")
        if not 1 <= self.importance <= 10:
            raise ValueError(f"record {self.id}: importance {self.importance} is not in 1..10")
        if self.depth < 0:
            raise ValueError(f"record {self.id}: depth must be >= 0")
        if (self.transcript is not None) != (self.kind == "chat"):
            raise ValueError(f"record {self.id}: a transcript is required for chats only")

    @property
    def accessed(self) -> datetime:
        assert self.last_accessed is not None
        return self.last_accessed

    def touched(self, when: datetime) -> MemoryRecord:
        return replace(self, last_accessed=when)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: datetimes as ISO strings, tuples as lists (msgpack-, JSON-, Arrow-safe)."""
        d = asdict(self)
        for key in ("created", "last_accessed", "expires"):
            d[key] = None if d[key] is None else d[key].isoformat()
        d["evidence"] = list(self.evidence)
        d["transcript"] = None if self.transcript is None else [list(t) for t in self.transcript]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemoryRecord:
        d = dict(d)
        for key in ("created", "last_accessed", "expires"):
            if d.get(key) is not None:
                d[key] = datetime.fromisoformat(d[key])
        d["evidence"] = tuple(d.get("evidence") or ())
        if d.get("transcript") is not None:
            d["transcript"] = tuple((s, u) for s, u in d["transcript"])
        d.pop("embedding", None)  # written by versions before 0.2 (always None); vectors live apart
        return cls(**d)


def expiry(kind: Kind, created: datetime, days: float | None) -> datetime | None:
    """When a record expires: reflections and plans after ``days`` game days, else never."""
    if kind in ("reflection", "plan") and days is not None:
        return created + timedelta(days=days)
    return None


IDLE_MARKERS = (" is idle", "is idle.")


def is_idle(description: str) -> bool:
    """Whether a description is of an idle state (scored 1 with no model call; not retrieved)."""
    text = description.strip().lower()
    return text.endswith("idle") or any(m in text for m in IDLE_MARKERS)
