"""A run folder read for the viewer: slices by step range, where every agent is at a step, and
one agent's panel, as plain JSON-ready data (the shapes of ``viewer/API.md``).

The events table is read once (``events.parquet``, or the parts of a running or interrupted run,
plus a live run's steps since its last checkpoint from :class:`viewer.live.LiveFeed`) and read
again only when the folder or the feed changed. Where each agent is comes from its own timeline
of action events, found by bisection; plans come from the checkpoints, memories from the
checkpoint's (or the end's) ``memories.parquet``, retrievals from ``retrievals.parquet``.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cluster.checkpoints import CheckpointError, checkpoint_dir, checkpoint_steps, read_checkpoint
from cluster.outputs import EVENT_KINDS, MEMORIES, TableReadError, read_run_table, table_files
from cluster.run_folder import RunFolderError, read_run_head
from cluster.world import World
from viewer.layout import world_layout
from viewer.live import LiveFeed

ACTION_KINDS = ("move", "activity", "talk", "wait", "conversation")
"""The event kinds that say where an agent is and what it does."""
MAX_EVENTS = 5000
MEMORIES_SHOWN, REFLECTIONS_SHOWN, RETRIEVALS_SHOWN = 40, 20, 5


class ViewError(Exception):
    """A folder the viewer cannot show, or a request it cannot answer (names what is wrong)."""


@dataclass
class _Mark:
    """One step of one agent's timeline: what its action events of that step left it doing."""

    step: int
    kind: str
    place: str | None
    activity: str
    partner: str | None
    left: str | None = None  # the place a move left (travelling)
    arrives: datetime | None = None


@dataclass(frozen=True)
class _Snapshot:
    """The events as last read, and what is built from them."""

    events: list[dict[str, Any]]  # by step, a step's in their order
    event_steps: list[int]  # the step of each event (for bisection)
    timelines: dict[str, list[_Mark]]  # per agent, one mark per step with action events
    mark_steps: dict[str, list[int]]
    last: int  # the newest step with data


class RunView:
    """The run folder at ``run_dir`` (refused, naming why, when it is not one); ``live``: the
    feed of the run in progress in this process."""

    def __init__(self, run_dir: str | Path, live: LiveFeed | None = None) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ViewError(f"{run_dir}: no such folder")
        try:
            self.manifest, self.scenario = read_run_head(self.run_dir)
        except RunFolderError as exc:
            raise ViewError(str(exc)) from None
        self.live = live
        self.names = [a.name for a in self.scenario.agents]
        self.agents = {a.name: a for a in self.scenario.agents}
        self._world = World(self.scenario)
        self._layout = world_layout(self.scenario)
        self._lock = threading.Lock()
        self._folder_key: tuple[Any, ...] | None = None
        self._folder_events: list[dict[str, Any]] = []
        self._live_version = -1
        self._snap = _Snapshot([], [], {}, {}, 0)
        self.refresh()

    # ---- reading -------------------------------------------------------------------------------

    def time_at(self, step: int) -> datetime:
        return self.scenario.start + timedelta(seconds=step * self.scenario.step_seconds)

    def refresh(self) -> bool:
        """Reads the events again if the folder or the live feed changed; whether they did."""
        with self._lock:
            key = _folder_key(self.run_dir, "events")
            version, live_last, _, buffered = (
                self.live.snapshot() if self.live is not None else (0, -1, True, ())
            )
            if key == self._folder_key and version == self._live_version:
                return False
            if key != self._folder_key:
                self._folder_events = _read_rows(self.run_dir, "events")
                self._folder_key = key
            flushed = self._folder_events[-1]["step"] if self._folder_events else -1
            rows = self._folder_events + [r for r in buffered if r["step"] > flushed]
            rows.sort(key=lambda r: r["step"])  # stable: a step's events keep their order
            timelines = self._build_timelines(rows)
            ended_at = int(self.manifest_now().get("step") or 0) - 1
            newest = rows[-1]["step"] if rows else 0
            self._snap = _Snapshot(  # one assignment: a request reads one whole snapshot
                rows,
                [r["step"] for r in rows],
                timelines,
                {n: [m.step for m in t] for n, t in timelines.items()},
                max(newest, ended_at, live_last, 0),
            )
            self._live_version = version
            return True

    def manifest_now(self) -> dict[str, Any]:
        """The manifest as it is on disk now (a running run's follows its checkpoints)."""
        try:
            data = json.loads((self.run_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return self.manifest
        return data if isinstance(data, dict) else self.manifest

    @property
    def last_step(self) -> int:
        return self._snap.last

    @property
    def event_count(self) -> int:
        return len(self._snap.events)

    @property
    def is_live(self) -> bool:
        if self.live is not None:
            return not self.live.snapshot()[2]
        return self.manifest_now().get("status") == "running"

    def _build_timelines(self, rows: list[dict[str, Any]]) -> dict[str, list[_Mark]]:
        timelines: dict[str, list[_Mark]] = {n: [] for n in self.names}
        for r in rows:
            name, kind = r["agent"], r["kind"]
            if kind not in ACTION_KINDS or name not in timelines:
                continue
            line = timelines[name]
            before = line[-1] if line else None
            if before is None or before.step != r["step"]:
                before = _Mark(r["step"], "idle", before.place if before else None, "", None)
                line.append(before)
            self._apply(before, name, kind, r)
        return timelines

    def _apply(self, mark: _Mark, name: str, kind: str, row: Mapping[str, Any]) -> None:
        text, place = row["text"], row["location"]
        mark.kind = kind
        if kind == "move":
            left = _after(text, f"{name} goes from ")
            mark.left = left.split(" to ", 1)[0] if left else mark.place
            if mark.left and place:
                minutes = self._world.travel_minutes(mark.left, place)
                mark.arrives = row["time"] + timedelta(minutes=minutes)
            mark.place, mark.activity, mark.partner = place, f"going to {place}", None
        elif kind == "activity":
            mark.place, mark.partner = place, None
            mark.activity = _after(text, f"{name} is ") or text
        elif kind in ("talk", "wait"):
            lead = f"{name} starts talking to " if kind == "talk" else f"{name} is waiting for "
            mark.partner = self._name_in(_after(text, lead))
            mark.place = place or mark.place
            mark.activity = text
        else:  # conversation: "<name> and <partner>: <what it was about>"
            mark.partner = self._partner_in(name, text)
            mark.place = place or mark.place
            mark.activity = text.split(": ", 1)[1] if ": " in text else text

    def _name_in(self, text: str | None) -> str | None:
        return text if text in self.agents else None

    def _partner_in(self, name: str, conversation: str) -> str | None:
        """The partner a ``conversation`` event names: "<name> and <partner>: <summary>"."""
        return next((n for n in self.names if conversation.startswith(f"{name} and {n}:")), None)

    # ---- the endpoints ------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        self.refresh()
        options = self.manifest.get("options", {})
        engine = options.get("engine") or {}
        return {
            "run": {
                "name": self.scenario.name,
                "folder": self.run_dir.name,
                "status": self.manifest_now().get("status", "unknown"),
                "live": self.is_live,
                "seed": options.get("seed"),
                "model": engine.get("model") if isinstance(engine, dict) else None,
            },
            "start": self.scenario.start.isoformat(),
            "step_seconds": self.scenario.step_seconds,
            "steps": {"first": 0, "last": self.last_step},
            "world": self._layout,
            "agents": [{"name": a.name, "home": a.home} for a in self.scenario.agents],
            "kinds": list(EVENT_KINDS),
            "measures": self.measures(),
        }

    def clamp(self, step: int) -> int:
        return min(max(step, 0), self.last_step)

    def state(self, step: int) -> dict[str, Any]:
        """Where every agent is at the end of ``step``."""
        self.refresh()
        step = self.clamp(step)
        now = self.time_at(step) + timedelta(seconds=self.scenario.step_seconds)
        return {
            "step": step,
            "time": self.time_at(step).isoformat(),
            "agents": [self._agent_at(n, step, now) for n in self.names],
        }

    def _agent_at(self, name: str, step: int, now: datetime) -> dict[str, Any]:
        snap = self._snap
        i = bisect.bisect_right(snap.mark_steps[name], step) - 1
        spec = self.agents[name]
        mark = snap.timelines[name][i] if i >= 0 else None
        place = mark.place if mark and mark.place else (spec.start or spec.home)
        travelling = bool(mark and mark.arrives and now < mark.arrives and mark.left)
        progress = None
        if travelling and mark is not None and mark.arrives is not None:
            trip = (mark.arrives - self.time_at(mark.step)).total_seconds()
            done = (now - self.time_at(mark.step)).total_seconds()
            progress = round(min(1.0, max(0.0, done / trip)) if trip > 0 else 1.0, 3)
        sector, _, arena = place.partition(":")
        talking = mark is not None and mark.kind in ("talk", "wait", "conversation")
        return {
            "name": name,
            "place": place,
            "sector": sector,
            "arena": arena,
            "activity": mark.activity if mark else "",
            "kind": mark.kind if mark else "idle",
            "with": mark.partner if mark and talking else None,
            "travelling": travelling,
            "from": mark.left if travelling and mark else None,
            "progress": progress,
        }

    def events(
        self,
        start: int,
        end: int,
        agent: str | None = None,
        kinds: set[str] | None = None,
        limit: int = 500,
    ) -> dict[str, Any]:
        """Events of steps ``start..end``, oldest first, at most ``limit``."""
        self.refresh()
        if end < start:
            raise ViewError(f"from={start} is after to={end}")
        if agent is not None and agent not in self.agents:
            raise ViewError(f"agent={agent!r}: no such agent in this run")
        limit = min(max(limit, 1), MAX_EVENTS)
        snap = self._snap
        lo = bisect.bisect_left(snap.event_steps, start)
        hi = bisect.bisect_right(snap.event_steps, end)
        picked: list[dict[str, Any]] = []
        truncated = False
        for r in snap.events[lo:hi]:
            if agent is not None and r["agent"] != agent:
                continue
            if kinds is not None and r["kind"] not in kinds:
                continue
            if len(picked) == limit:
                truncated = True
                break
            picked.append(_event_json(r))
        return {"from": start, "to": end, "truncated": truncated, "events": picked}

    def agent(self, name: str, step: int) -> dict[str, Any]:
        """One agent's panel at ``step``: persona, plan, memories, retrievals, conversations."""
        self.refresh()
        if name not in self.agents:
            raise ViewError(f"name={name!r}: no such agent in this run")
        step = self.clamp(step)
        now = self.time_at(step)
        spec = self.agents[name]
        steps = checkpoint_steps(self.run_dir)
        memories = self._memories(name, step, now, steps)
        by_id = {m["record_id"]: m for m in memories}
        newest = sorted(memories, key=lambda m: (m["created"], m["record_id"]), reverse=True)
        reflections = [m for m in newest if m["kind"] == "reflection"][:REFLECTIONS_SHOWN]
        return {
            "name": name,
            "persona": {
                "age": spec.age,
                "traits": spec.traits,
                "lifestyle": spec.lifestyle,
                "current_situation": spec.current_situation,
                "home": spec.home,
                "relationships": dict(spec.relationships),
            },
            "plan": self._plan(name, step, now, steps),
            "memories": [_memory_json(m) for m in newest[:MEMORIES_SHOWN]],
            "reflections": [
                {
                    **_memory_json(m),
                    "evidence": [
                        {
                            "record_id": e,
                            "description": by_id.get(e, {}).get("description", ""),
                        }
                        for e in m["evidence"]
                    ],
                }
                for m in reflections
            ],
            "retrievals": self._retrievals(name, step, by_id),
            "conversations": self._conversations(name, step),
        }

    def measures(self) -> dict[str, Any] | None:
        path = self.run_dir / "measures.json"
        if not path.is_file():
            return None
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return {"summary": summary, "figures": [f"/figures/{n}" for n in self.figure_names()]}

    def figure_names(self) -> list[str]:
        """The PNG files in the run's ``figures/`` (the only files of the folder served)."""
        folder = self.run_dir / "figures"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.glob("*.png") if p.is_file() and not p.is_symlink())

    # ---- the agent panel's parts --------------------------------------------------------------

    def _plan(self, name: str, step: int, now: datetime, steps: list[int]) -> dict[str, Any] | None:
        """The day's plan from the first checkpoint (of ``steps``) at or after ``step`` holding
        that day's plan (its blocks decomposed furthest), else the last one before."""
        later = [s for s in steps if s >= step]
        earlier = [s for s in reversed(steps) if s < step]
        for s in later + earlier:
            plan = _checkpoint_plans(self.run_dir, s).get(name)
            if plan is not None and plan.get("date") == now.date().isoformat():
                break
        else:
            return None
        minute = now.hour * 60 + now.minute
        blocks = []
        for e in plan["entries"]:
            start, end = int(e["start"]), int(e["start"]) + int(e["duration"])
            blocks.append(
                {
                    "start": _hhmm(start),
                    "end": _hhmm(end),
                    "activity": e["activity"],
                    "location": e["location"],
                    "current": start <= minute < end,
                    "sub": e.get("parent") is not None,
                }
            )
        return {
            "date": plan["date"],
            "wake_hour": plan["wake_hour"],
            "broad_strokes": list(plan["broad_strokes"]),
            "blocks": blocks,
        }

    def _memories(
        self, name: str, step: int, now: datetime, steps: list[int]
    ) -> list[dict[str, Any]]:
        """``name``'s records created by ``now``: from the memories of the first checkpoint (of
        ``steps``) at or after ``step``, else of the last one (a live run's newest). The end's
        ``memories.parquet`` is the last checkpoint's, so no other file is needed."""
        if not steps:
            return []
        chosen = next((s for s in steps if s >= step), steps[-1])
        path = checkpoint_dir(self.run_dir, chosen) / "memories.parquet"
        table = _memories_table(path, *_stat(path))
        mine = table.filter(pc.equal(table["agent"], name))
        return [m for m in mine.to_pylist() if m["created"] <= now]

    def _retrievals(
        self, name: str, step: int, records: Mapping[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        table = _retrievals_table(self.run_dir, _folder_key(self.run_dir, "retrievals"))
        mine = table.filter(
            pc.and_(pc.equal(table["agent"], name), pc.less_equal(table["step"], step))
        )
        groups: dict[str, dict[str, Any]] = {}
        for r in mine.to_pylist():
            rid = r["retrieval_id"] or f"{r['step']}:{r['query']}"
            group = groups.setdefault(
                rid, {"retrieval_id": rid, "step": r["step"], "query": r["query"], "candidates": []}
            )
            group["candidates"].append(
                {
                    "record_id": r["record_id"],
                    "description": records.get(r["record_id"], {}).get("description", ""),
                    **{k: round(r[k], 4) for k in ("recency", "importance", "relevance", "score")},
                    "rank": r["rank"],
                    "returned": r["returned"],
                }
            )
        newest = list(groups.values())[-RETRIEVALS_SHOWN:][::-1]
        for g in newest:
            g["candidates"].sort(key=lambda c: c["rank"])
        return newest

    def _conversations(self, name: str, step: int) -> list[dict[str, Any]]:
        """``name``'s conversations up to ``step``: each ``conversation`` event with the lines
        both said since ``name`` started or awaited it."""
        snap = self._snap
        rows = snap.events[: bisect.bisect_right(snap.event_steps, step)]
        found = []
        opened = 0
        for i, r in enumerate(rows):
            if r["agent"] != name:
                continue
            if r["kind"] in ("talk", "wait") and opened <= i:
                opened = i
            if r["kind"] != "conversation":
                continue
            partner = self._partner_in(name, r["text"])
            lines = [
                {"speaker": u["agent"], "text": u["text"]}
                for u in rows[opened : i + 1]
                if u["kind"] == "utterance" and u["agent"] in (name, partner)
            ]
            found.append(
                {
                    "step": r["step"],
                    "time": r["time"].isoformat(),
                    "with": partner,
                    "summary": r["text"].split(": ", 1)[1] if ": " in r["text"] else r["text"],
                    "lines": lines,
                }
            )
            opened = i + 1
        return found[::-1]


# ---- helpers ------------------------------------------------------------------------------------


def _after(text: str, lead: str) -> str | None:
    return text[len(lead) :] if text.startswith(lead) else None


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _event_json(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "step": r["step"],
        "time": r["time"].isoformat(),
        "agent": r["agent"],
        "kind": r["kind"],
        "location": r["location"],
        "text": r["text"],
    }


def _memory_json(m: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "record_id": m["record_id"],
        "kind": m["kind"],
        "description": m["description"],
        "created": m["created"].isoformat(),
        "importance": m["importance"],
    }


def _stat(path: Path) -> tuple[float, int]:
    st = path.stat()
    return st.st_mtime, st.st_size


def _folder_key(run_dir: Path, table: str) -> tuple[Any, ...]:
    """What says a table changed: the whole file's and the parts' names, times and sizes."""
    out: list[Any] = []
    for f in table_files(run_dir, table):
        try:
            out.append((f.name, *_stat(f)))
        except OSError:  # a part replaced while we look: read again next time
            out.append((f.name, None))
    return tuple(out)


def _read_table(run_dir: Path, table: str) -> pa.Table:
    try:
        return read_run_table(run_dir, table)
    except TableReadError as exc:
        raise ViewError(str(exc)) from None


def _read_rows(run_dir: Path, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _read_table(run_dir, table).to_pylist()
    return rows


@lru_cache(maxsize=4)
def _retrievals_table(run_dir: Path, key: tuple[Any, ...]) -> pa.Table:
    return _read_table(run_dir, "retrievals")


@lru_cache(maxsize=4)
def _memories_table(path: Path, mtime: float, size: int) -> pa.Table:
    try:
        return pq.read_table(path, schema=MEMORIES)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ViewError(f"{path}: unreadable table ({exc})") from None


@lru_cache(maxsize=8)
def _checkpoint_plans(run_dir: Path, step: int) -> dict[str, Any]:
    """Every agent's plan (``DayPlan.to_dict``) in checkpoint ``step``."""
    try:
        state = read_checkpoint(run_dir, step)
    except CheckpointError:
        return {}
    return {name: a.get("plan") for name, a in state.get("agents", {}).items()}
