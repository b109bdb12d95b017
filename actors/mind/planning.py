"""Planning (spec section 5): the day plan, the hourly schedule, decomposition, re-planning.

A :class:`DayPlan` is a tuple of contiguous :class:`PlanEntry` blocks from midnight to midnight;
it always sums to exactly 1440 minutes (checked when it is built). Every step that asks the model
has a deterministic fallback, so a failed answer (``None`` from :class:`Asker`) never crashes a
run, and every answer, however silly, is fitted back into a valid day.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import Any

from actors.mind import schemas
from actors.mind.persona import Persona
from actors.mind.prompting import Asker, Question, persona_block
from actors.mind.settings import PlanningSettings

DAY_MINUTES = 1440
SLEEP = "sleeping"
FALLBACK_WAKE_HOUR = 7
WAKE_HOURS = tuple(range(3, 12))
"""The hours an agent may wake up at (an enum of the day plan's schema)."""
ACTIVITY_CHARS = 50
"""The longest activity phrase asked for (a plan entry's text)."""
FREE_TIME = "free time at home"
_SLEEP_WORDS = {"sleep", "sleeping", "asleep", "in bed sleeping", "sleeping in bed"}

PURPOSE_DAY = "plan_day"
PURPOSE_HOURLY = "plan_hourly"
PURPOSE_DECOMPOSE = "plan_decompose"
PURPOSE_REVISE = "plan_revise"


def format_hhmm(minute: int) -> str:
    """Minutes from midnight as HH:MM (1440 is written 24:00)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class PlanEntry:
    """One block of the day. ``parent`` is the decomposed block's activity, set on subtasks."""

    start: int  # minutes from midnight
    duration: int
    activity: str
    location: str
    parent: str | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration

    @property
    def is_sleep(self) -> bool:
        return self.activity == SLEEP

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanEntry:
        return cls(
            start=int(d["start"]),
            duration=int(d["duration"]),
            activity=str(d["activity"]),
            location=str(d["location"]),
            parent=None if d.get("parent") is None else str(d["parent"]),
        )


@dataclass(frozen=True)
class DayPlan:
    """A day's plan: wake-up hour, broad strokes, and contiguous entries covering 00:00-24:00."""

    date: date
    wake_hour: int
    broad_strokes: tuple[str, ...]
    entries: tuple[PlanEntry, ...]

    def __post_init__(self) -> None:
        cursor = 0
        for e in self.entries:
            if e.start != cursor or e.duration <= 0:
                raise ValueError(f"plan for {self.date}: entry {e} does not follow at {cursor}")
            cursor = e.end
        if cursor != DAY_MINUTES:
            raise ValueError(f"plan for {self.date}: sums to {cursor} minutes, not 1440")

    def total_minutes(self) -> int:
        return sum(e.duration for e in self.entries)

    def index_at(self, minute: int) -> int:
        """The index of the entry in progress at ``minute`` (clamped to the day)."""
        minute = min(max(minute, 0), DAY_MINUTES - 1)
        starts = [e.start for e in self.entries]
        return bisect.bisect_right(starts, minute) - 1

    def entry_at(self, minute: int) -> PlanEntry:
        """The entry in progress at ``minute`` (clamped to 0..1439)."""
        return self.entries[self.index_at(minute)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "wake_hour": self.wake_hour,
            "broad_strokes": list(self.broad_strokes),
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DayPlan:
        return cls(
            date=date.fromisoformat(d["date"]),
            wake_hour=int(d["wake_hour"]),
            broad_strokes=tuple(str(s) for s in d["broad_strokes"]),
            entries=tuple(PlanEntry.from_dict(e) for e in d["entries"]),
        )

    def describe(self, name: str) -> str:
        """The text of the day's ``plan`` memory record."""
        day = f"{self.date:%A, %B} {self.date.day}, {self.date.year}"
        strokes = ", ".join(
            f"{i}) {s.strip().rstrip('.')}" for i, s in enumerate(self.broad_strokes, 1)
        )
        text = f"This is {name}'s plan for {day}: wake up at {format_hhmm(self.wake_hour * 60)}"
        return f"{text}, {strokes}." if strokes else f"{text}."

    def schedule_text(self, start: int = 0, end: int = DAY_MINUTES) -> str:
        """The entries overlapping [start, end) as lines ``HH:MM-HH:MM activity (location)``."""
        return "\n".join(
            f"{format_hhmm(e.start)}-{format_hhmm(e.end)} {e.activity} ({e.location})"
            for e in self.entries
            if e.end > start and e.start < end
        )


def outline(plan: DayPlan, start: int = 0, end: int = DAY_MINUTES) -> str:
    """Like :meth:`DayPlan.schedule_text`, with each run of subtasks shown as its parent."""
    lines: list[tuple[int, int, str, str]] = []
    for e in plan.entries:
        if e.end <= start or e.start >= end:
            continue
        activity = e.parent or e.activity
        if lines and e.parent is not None and lines[-1][1] == e.start:
            first, _, last_activity, location = lines[-1]
            if (last_activity, location) == (activity, e.location):
                lines[-1] = (first, e.end, activity, location)
                continue
        lines.append((e.start, e.end, activity, e.location))
    return "\n".join(
        f"{format_hhmm(a)}-{format_hhmm(b)} {what} ({where})" for a, b, what, where in lines
    )


def _day_text(day: date) -> str:
    return f"{day:%A, %B} {day.day}, {day.year}"


# -- pure helpers -----------------------------------------------------------------------------


def fit_durations(durations: Sequence[int], total: int, lo: int, hi: int, step: int) -> list[int]:
    """Durations close to ``durations``, each a multiple of ``step`` in [lo, hi], summing to total.

    Each duration is rounded to the nearest multiple of ``step`` and clamped; then the count is
    changed only as much as needed (dropping from the end, or adding ``hi`` at the end), and the
    difference is spread one step at a time over the entries, from the last one backwards.
    An input that already satisfies everything comes back unchanged.
    Raises ValueError where no such list exists (``total`` not a multiple of ``step`` ...).
    """
    if step <= 0 or lo <= 0 or lo > hi or lo % step or hi % step:
        raise ValueError(f"bad bounds lo={lo} hi={hi} step={step}")
    if total < 0 or total % step:
        raise ValueError(f"total {total} is not a non-negative multiple of {step}")
    if total == 0:
        return []
    n_min, n_max = math.ceil(total / hi), total // lo
    if n_min > n_max:
        raise ValueError(f"{total} cannot be split into parts of {lo}..{hi}")
    out = [min(max(step * round(int(d) / step), lo), hi) for d in durations]
    n = min(max(len(out), n_min), n_max)
    out = out[:n] + [hi] * (n - len(out))
    diff = total - sum(out)
    i = n - 1
    while diff:
        if diff > 0 and out[i] < hi:
            out[i] += step
            diff -= step
        elif diff < 0 and out[i] > lo:
            out[i] -= step
            diff += step
        i = (i - 1) % n
    return out


def merge_slots(
    slots: Sequence[tuple[str, str]], start: int = 0, unit: int = 60
) -> list[PlanEntry]:
    """Consecutive equal (activity, location) slots of ``unit`` minutes, merged into blocks."""
    entries: list[PlanEntry] = []
    for k, (activity, location) in enumerate(slots):
        at = start + k * unit
        last = entries[-1] if entries else None
        if last is not None and (last.activity, last.location, last.parent) == (
            activity,
            location,
            None,
        ):
            entries[-1] = replace(last, duration=last.duration + unit)
        else:
            entries.append(PlanEntry(at, unit, activity, location))
    return entries


def _merge_entries(entries: Sequence[PlanEntry]) -> list[PlanEntry]:
    out: list[PlanEntry] = []
    for e in entries:
        last = out[-1] if out else None
        if (
            last is not None
            and last.end == e.start
            and last.parent is None  # subtasks stay as they are
            and (last.activity, last.location, last.parent) == (e.activity, e.location, e.parent)
        ):
            out[-1] = replace(last, duration=last.duration + e.duration)
        else:
            out.append(e)
    return out


def places_of(persona: Persona) -> tuple[str, ...]:
    """Where the agent may plan to be: its known places, or its home."""
    places = tuple(dict.fromkeys(p for p in (*persona.known_places, persona.home) if p))
    return places or ("home",)


def home_of(persona: Persona) -> str:
    return persona.home or places_of(persona)[0]


def normalise_activity(activity: str) -> str:
    """A cleaned activity; any way of saying "sleeping" becomes :data:`SLEEP`."""
    text = " ".join(str(activity).split()).strip(" .")
    if text.lower() in _SLEEP_WORDS:
        return SLEEP
    return text or FREE_TIME


def _place(location: Any, persona: Persona) -> str:
    places = places_of(persona)
    return location if isinstance(location, str) and location in places else home_of(persona)


def fallback_strokes(persona: Persona) -> tuple[str, ...]:
    return tuple(persona.daily_requirements) or (FREE_TIME,)


def fallback_slots(persona: Persona, wake_hour: int) -> list[tuple[str, str]]:
    """A generic waking day: get ready, the daily requirements in order, free time, then sleep."""
    home = home_of(persona)
    slots: list[tuple[str, str]] = [(SLEEP, home)] * wake_hour
    slots.append(("waking up and getting ready", home))
    middle = list(range(wake_hour + 1, 23))
    reqs = [normalise_activity(r) for r in persona.daily_requirements]
    for k, _hour in enumerate(middle):
        activity = reqs[k * len(reqs) // len(middle)] if reqs else FREE_TIME
        slots.append((activity, home))
    slots.append((SLEEP, home))
    return slots[:24]


# -- asking the model -------------------------------------------------------------------------


async def plan_day(
    asker: Asker,
    persona: Persona,
    day: date,
    yesterday: str,
    settings: PlanningSettings,
) -> DayPlan:
    """The day's wake-up hour and broad strokes, then its hourly schedule merged into blocks."""
    day_text = _day_text(day)
    system = persona_block(persona)
    first = Question(
        "plan_day",
        {
            "persona": system,
            "date": day_text,
            "yesterday": yesterday.strip() or "nothing in particular",
            "lifestyle": persona.lifestyle,
            "requirements": "\n".join(f"- {r}" for r in persona.daily_requirements) or "- none",
            "earliest": WAKE_HOURS[0],
            "latest": WAKE_HOURS[-1],
            "min": settings.broad_strokes_min,
            "max": settings.broad_strokes_max,
        },
        schemas.obj(
            wake_hour=schemas.integer_choice(WAKE_HOURS),
            broad_strokes=schemas.array(
                schemas.phrase(ACTIVITY_CHARS + 20),
                settings.broad_strokes_min,
                settings.broad_strokes_max,
            ),
        ),
        PURPOSE_DAY,
    )
    answer = await asker.ask_one(first)
    wake_hour, strokes = FALLBACK_WAKE_HOUR, fallback_strokes(persona)
    if isinstance(answer, dict):
        try:
            wake_hour = min(max(int(answer["wake_hour"]), 3), 11)
            got = tuple(str(s).strip() for s in answer["broad_strokes"] if str(s).strip())
            strokes = got or strokes
        except (KeyError, TypeError, ValueError):
            wake_hour, strokes = FALLBACK_WAKE_HOUR, fallback_strokes(persona)

    places = places_of(persona)
    waking = 24 - wake_hour
    second = Question(
        "plan_hourly",
        {
            "persona": system,
            "date": day_text,
            "wake": format_hhmm(wake_hour * 60),
            "strokes": "\n".join(f"{i}) {s}" for i, s in enumerate(strokes, 1)),
            "hours": ", ".join(format_hhmm(h * 60) for h in range(wake_hour, 24)),
            "count": waking,
        },
        schemas.array(
            schemas.obj(activity=schemas.phrase(ACTIVITY_CHARS), location=schemas.choice(places)),
            waking,
            waking,
        ),
        PURPOSE_HOURLY,
    )
    hourly = await asker.ask_one(second)
    slots = fallback_slots(persona, wake_hour)
    if isinstance(hourly, list) and hourly:
        home = home_of(persona)
        asked: list[tuple[str, str]] = []
        for item in hourly[:waking]:
            item = item if isinstance(item, dict) else {}
            activity = normalise_activity(str(item.get("activity", FREE_TIME)))
            location = home if activity == SLEEP else _place(item.get("location"), persona)
            asked.append((activity, location))
        while len(asked) < waking:  # too short: the evening is spent asleep
            asked.append((SLEEP, home))
        slots = [(SLEEP, home)] * wake_hour + asked
    return DayPlan(day, wake_hour, tuple(strokes), tuple(merge_slots(slots)))


def _blocks(plan: DayPlan) -> list[tuple[int, int]]:
    """(first, last+1) entry indices of each block: a plain entry, or a run of subtasks."""
    blocks: list[tuple[int, int]] = []
    for k, e in enumerate(plan.entries):
        if blocks and e.parent is not None:
            prev = plan.entries[k - 1]
            if (prev.parent, prev.location) == (e.parent, e.location):
                blocks[-1] = (blocks[-1][0], k + 1)
                continue
        blocks.append((k, k + 1))
    return blocks


def decomposable(entry: PlanEntry, settings: PlanningSettings) -> bool:
    return (
        entry.parent is None
        and not entry.is_sleep
        and entry.duration >= settings.decompose_min_block_minutes
        and entry.duration % settings.subtask_step_minutes == 0
        and entry.duration >= settings.subtask_min_minutes
    )


async def decompose(
    asker: Asker,
    persona: Persona,
    plan: DayPlan,
    now_minute: int,
    settings: PlanningSettings,
) -> DayPlan:
    """Breaks the current block and the next one into subtasks (when long enough, not sleep,
    and not already decomposed). Subtask durations are multiples of the step within the
    settings' bounds and sum to the parent's duration; a failed answer splits the parent
    into equal parts of the same activity."""
    lo, hi, step = (
        settings.subtask_min_minutes,
        settings.subtask_max_minutes,
        settings.subtask_step_minutes,
    )
    blocks = _blocks(plan)
    current = plan.index_at(now_minute)
    b = next(k for k, (first, stop) in enumerate(blocks) if first <= current < stop)
    targets = [
        blocks[k][0]
        for k in (b, b + 1)
        if k < len(blocks)
        and blocks[k][1] - blocks[k][0] == 1
        and decomposable(plan.entries[blocks[k][0]], settings)
    ]
    if not targets:
        return plan
    day_text = _day_text(plan.date)
    system = persona_block(persona)
    minutes_enum = schemas.integer_choice(range(lo, hi + 1, step))
    questions = []
    for idx in targets:
        e = plan.entries[idx]
        count = min(math.ceil(e.duration / hi), e.duration // lo)
        durations = fit_durations([hi] * count, e.duration, lo, hi, step)
        starts = [e.start + sum(durations[:k]) for k in range(len(durations))]
        questions.append(
            Question(
                "plan_decompose",
                {
                    "persona": system,
                    "date": day_text,
                    "activity": e.activity,
                    "location": e.location,
                    "start": format_hhmm(e.start),
                    "end": format_hhmm(e.end),
                    "minutes": e.duration,
                    "count": len(durations),
                    "slots": ", ".join(
                        f"{format_hhmm(a)}-{format_hhmm(a + d)}"
                        for a, d in zip(starts, durations, strict=True)
                    ),
                    "schedule": outline(plan, e.start - 120, e.end + 120),
                },
                schemas.array(
                    schemas.obj(activity=schemas.phrase(ACTIVITY_CHARS), minutes=minutes_enum),
                    len(durations),
                    len(durations),
                ),
                PURPOSE_DECOMPOSE,
            )
        )
    answers = await asker.ask(questions)
    replaced: dict[int, list[PlanEntry]] = {}
    for idx, answer in zip(targets, answers, strict=True):
        e = plan.entries[idx]
        items = [a for a in answer if isinstance(a, dict)] if isinstance(answer, list) else []
        durations = [int(a.get("minutes", hi)) for a in items]
        activities = [normalise_activity(str(a.get("activity", e.activity))) for a in items]
        fitted = fit_durations(durations, e.duration, lo, hi, step)
        subtasks, at = [], e.start
        for k, minutes in enumerate(fitted):
            activity = activities[k] if k < len(activities) else e.activity
            subtasks.append(PlanEntry(at, minutes, activity, e.location, parent=e.activity))
            at += minutes
        replaced[idx] = subtasks
    entries: list[PlanEntry] = []
    for k, e in enumerate(plan.entries):
        entries.extend(replaced.get(k, [e]))
    return replace(plan, entries=tuple(entries))


async def replan(
    asker: Asker,
    persona: Persona,
    plan: DayPlan,
    now_minute: int,
    reason: str,
    settings: PlanningSettings,
) -> DayPlan:
    """Re-plans the rest of the day from ``now_minute``.

    What came before is kept (the entry in progress is cut at now; a cut subtask becomes a
    plain entry), the model's new entries follow, cut at midnight, and sleep fills whatever they
    leave. New entries end on multiples of the step. A failed answer keeps the old plan."""
    now = min(max(int(now_minute), 0), DAY_MINUTES)
    if now >= DAY_MINUTES:
        return plan
    step = settings.subtask_step_minutes
    places = places_of(persona)
    remaining = DAY_MINUTES - now
    most = min(max(math.ceil(remaining / 60), 1), 16)  # about one entry an hour
    longest = max(step, min(240, step * (remaining // step)))
    question = Question(
        "plan_revise",
        {
            "persona": persona_block(persona),
            "date": _day_text(plan.date),
            "now": format_hhmm(now),
            "reason": reason.strip() or "something happened",
            "so_far": outline(plan, max(0, now - 180), now) or "nothing yet",
            "old_rest": outline(plan, now, DAY_MINUTES),
            "remaining": remaining,
            "most": most,
            "sleep": SLEEP,
        },
        schemas.array(
            schemas.obj(
                activity=schemas.phrase(ACTIVITY_CHARS),
                location=schemas.choice(places),
                minutes=schemas.integer_choice(range(step, longest + 1, step)),
            ),
            1,
            most,
        ),
        PURPOSE_REVISE,
    )
    answer = await asker.ask_one(question)
    items = [a for a in answer if isinstance(a, dict)] if isinstance(answer, list) else []
    if not items:
        return plan

    kept: list[PlanEntry] = []
    for e in plan.entries:
        if e.end <= now:
            kept.append(e)
        elif e.start < now:  # cut at now; a cut subtask is no longer a whole subtask
            kept.append(replace(e, duration=now - e.start, parent=None))
    home = home_of(persona)
    new: list[PlanEntry] = []
    cursor = now
    for item in items:
        if cursor >= DAY_MINUTES:
            break
        try:
            minutes = int(item.get("minutes", 60))
        except (TypeError, ValueError):
            minutes = 60
        # entries end on multiples of the step (the first one absorbs an unaligned now)
        end = step * round((cursor + max(minutes, 1)) / step)
        end = min(max(end, step * (cursor // step + 1)), DAY_MINUTES)
        activity = normalise_activity(str(item.get("activity", FREE_TIME)))
        location = home if activity == SLEEP else _place(item.get("location"), persona)
        new.append(PlanEntry(cursor, end - cursor, activity, location))
        cursor = end
    if cursor < DAY_MINUTES:
        new.append(PlanEntry(cursor, DAY_MINUTES - cursor, SLEEP, home))
    return replace(plan, entries=tuple(_merge_entries([*kept, *new])))
