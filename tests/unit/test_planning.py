"""Planning (spec section 5): every plan sums to 1440 minutes, whatever the model answers."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from actors.mind.persona import Persona
from actors.mind.planning import (
    SLEEP,
    DayPlan,
    PlanEntry,
    decompose,
    fit_durations,
    merge_slots,
    plan_day,
    replan,
)
from actors.mind.prompting import Asker, load_prompt
from actors.mind.settings import PlanningSettings
from serving.scripted import ScriptedLLM
from serving.types import LLMRequest

DAY = date(2023, 2, 13)
SETTINGS = PlanningSettings()
KLAUS = Persona(
    "Klaus Mueller",
    20,
    "kind, curious, passionate",
    "studies sociology; goes to bed around 11 pm",
    daily_requirements=("work on his research paper", "eat lunch at the cafe"),
    home="Klaus's apartment",
    known_places=("Hobbs Cafe", "Oak Hill College library", "Klaus's apartment"),
)
PURPOSES = ("plan_day", "plan_hourly", "plan_decompose", "plan_revise")


def asker_for(rules: Any) -> tuple[Asker, ScriptedLLM]:
    llm = ScriptedLLM(rules)
    return Asker(llm, "klaus", seed=3), llm


def check(plan: DayPlan, settings: PlanningSettings = SETTINGS) -> None:
    """The invariants every plan keeps."""
    assert plan.total_minutes() == 1440
    assert plan.entries[0].start == 0 and plan.entries[-1].end == 1440
    for a, b in itertools.pairwise(plan.entries):
        assert a.end == b.start
    for e in plan.entries:
        assert e.duration > 0
        if e.parent is not None:
            assert e.parent != SLEEP
            assert settings.subtask_min_minutes <= e.duration <= settings.subtask_max_minutes
            assert e.duration % settings.subtask_step_minutes == 0
    assert DayPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def hourly_answer(activities: list[tuple[str, str]]) -> Callable[[LLMRequest], Any]:
    """An answer of exactly the asked length, cycling through ``activities``."""

    def answer(request: LLMRequest) -> Any:
        assert request.json_schema is not None
        n = request.json_schema["minItems"]
        assert n == request.json_schema["maxItems"]
        return [
            {"activity": a, "location": loc}
            for a, loc in itertools.islice(itertools.cycle(activities), n)
        ]

    return answer


GOOD_DAY = {"wake_hour": 6, "broad_strokes": ["wake up", "work", "lunch", "study", "sleep"]}
GOOD_HOURS = [
    ("waking up and getting ready", "Klaus's apartment"),
    ("having breakfast", "Hobbs Cafe"),
    ("working on his research paper", "Oak Hill College library"),
    ("working on his research paper", "Oak Hill College library"),
    ("working on his research paper", "Oak Hill College library"),
    ("eating lunch", "Hobbs Cafe"),
]


def sample(schema: dict[str, Any], rng: random.Random) -> Any:
    """A random valid answer to any of planning's schemas (arrays of any allowed length)."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema["type"]
    if kind == "object":
        return {k: sample(v, rng) for k, v in schema["properties"].items()}
    if kind == "array":
        n = rng.randint(schema["minItems"], schema["maxItems"])
        return [sample(schema["items"], rng) for _ in range(n)]
    if kind == "integer":
        return rng.randint(schema["minimum"], schema["maximum"])
    words = ["walk", "read", "cook", "talk", "paint", "garden", "study", "rest", "sleeping"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))


def test_prompts_load_with_their_fields() -> None:
    for name in PURPOSES:
        assert "persona" in load_prompt(name).fields


def test_plan_entries_and_state() -> None:
    slots = [(SLEEP, "home")] * 7 + [("work", "office")] * 10 + [("rest", "home")] * 7
    plan = DayPlan(DAY, 7, ("work",), tuple(merge_slots(slots)))
    check(plan)
    assert [(e.start, e.duration, e.activity) for e in plan.entries] == [
        (0, 420, SLEEP),
        (420, 600, "work"),
        (1020, 420, "rest"),
    ]
    assert plan.entry_at(0).activity == SLEEP and plan.entry_at(419).activity == SLEEP
    assert plan.entry_at(420).activity == "work" and plan.entry_at(1439).activity == "rest"
    assert plan.entry_at(5000).activity == "rest"  # clamped to the day
    assert DayPlan.from_dict(plan.to_dict()) == plan
    text = plan.describe("Klaus Mueller")
    assert text.startswith("This is Klaus Mueller's plan for Monday, February 13, 2023: ")
    assert "07:00" in text and "1) work" in text
    with pytest.raises(ValueError, match="1440"):
        DayPlan(DAY, 7, (), (PlanEntry(0, 600, "work", "office"),))
    with pytest.raises(ValueError, match="does not follow"):
        DayPlan(DAY, 7, (), (PlanEntry(0, 600, "a", "x"), PlanEntry(700, 740, "b", "x")))


async def test_plan_day_wakes_then_follows_the_hourly_schedule() -> None:
    asker, llm = asker_for([("plan_day", GOOD_DAY), ("plan_hourly", hourly_answer(GOOD_HOURS))])
    plan = await plan_day(asker, KLAUS, DAY, "Klaus studied late.", SETTINGS)
    check(plan)
    assert plan.wake_hour == 6 and plan.broad_strokes == tuple(GOOD_DAY["broad_strokes"])
    assert plan.entries[0] == PlanEntry(0, 360, SLEEP, "Klaus's apartment")
    for minute in range(0, 360, 10):
        assert plan.entry_at(minute).activity == SLEEP
    assert plan.entry_at(360).activity == "waking up and getting ready"
    work = plan.entry_at(8 * 60)
    assert (work.start, work.duration) == (480, 180)  # three equal hours merged
    assert [r.purpose for r in llm.calls] == ["plan_day", "plan_hourly"]
    schema = llm.calls[1].json_schema
    assert schema is not None and schema["minItems"] == 18
    assert "Klaus studied late." in llm.calls[0].messages[1].content  # type: ignore[index]


@pytest.mark.parametrize(
    "day_answer,hourly",
    [
        (None, None),  # everything fails
        (GOOD_DAY, None),  # the hourly schedule fails
        (None, hourly_answer(GOOD_HOURS)),  # the day fails, its fallback is still scheduled
        ({"wake_hour": 1, "broad_strokes": ["x"]}, None),  # out of range: fails the schema
        (GOOD_DAY, lambda r: [{"activity": "work", "location": "Hobbs Cafe"}] * 30),  # too long
        (GOOD_DAY, lambda r: [{"activity": "work", "location": "Hobbs Cafe"}] * 2),  # too short
        (GOOD_DAY, lambda r: [{"activity": "work", "location": "Mars"}] * 18),  # unknown place
        (GOOD_DAY, "not json at all"),
    ],
)
async def test_plan_day_falls_back_and_still_sums_to_1440(day_answer: Any, hourly: Any) -> None:
    rules: list[Any] = []
    if day_answer is not None:
        rules.append(("plan_day", day_answer))
    if hourly is not None:
        rules.append(("plan_hourly", hourly))
    asker, _ = asker_for(rules)
    plan = await plan_day(asker, KLAUS, DAY, "", SETTINGS)
    check(plan)
    assert 3 <= plan.wake_hour <= 11
    for minute in range(0, plan.wake_hour * 60, 15):
        assert plan.entry_at(minute).activity == SLEEP
    if day_answer is None or day_answer.get("wake_hour") == 1:
        assert plan.wake_hour == 7 and plan.broad_strokes == KLAUS.daily_requirements
    assert sum(asker.stats.calls.values()) == 2


async def test_plan_day_fallback_without_requirements_or_places() -> None:
    nobody = Persona("Ann Lee", 30, "calm", "quiet")
    asker, _ = asker_for([])
    plan = await plan_day(asker, nobody, DAY, "", SETTINGS)
    check(plan)
    assert asker.stats.failures["plan_day"] == 1 and asker.stats.failures["plan_hourly"] == 1
    assert plan.entry_at(12 * 60).activity == "free time at home"
    assert plan.entry_at(23 * 60 + 30).activity == SLEEP


def test_fit_durations_examples() -> None:
    assert fit_durations([10, 15, 5], 30, 5, 15, 5) == [10, 15, 5]  # already valid: unchanged
    assert fit_durations([], 60, 5, 15, 5) == [15, 15, 15, 15]
    assert fit_durations([7, 7, 7], 60, 5, 15, 5) == [15, 15, 15, 15]
    assert fit_durations([60], 60, 5, 15, 5) == [15, 15, 15, 15]
    assert fit_durations([5] * 20, 60, 5, 15, 5) == [5] * 12
    assert sum(fit_durations([10, 10], 30, 5, 15, 5)) == 30
    assert fit_durations([3], 0, 5, 15, 5) == []
    with pytest.raises(ValueError):
        fit_durations([5], 62, 5, 15, 5)  # not a multiple of the step
    with pytest.raises(ValueError):
        fit_durations([5], 15, 10, 10, 5)  # no count of 10s makes 15
    with pytest.raises(ValueError):
        fit_durations([5], 15, 5, 12, 5)  # bounds not multiples of the step


def test_fit_durations_many_random_cases() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        step = rng.choice([1, 5, 10])
        lo = step * rng.randint(1, 3)
        hi = lo + step * rng.randint(0, 4)
        total = step * rng.randint(0, 300)
        durations = [rng.randint(-50, 400) for _ in range(rng.randint(0, 40))]
        feasible = total == 0 or -(-total // hi) <= total // lo
        if not feasible:
            with pytest.raises(ValueError):
                fit_durations(durations, total, lo, hi, step)
            continue
        out = fit_durations(durations, total, lo, hi, step)
        assert sum(out) == total
        assert all(lo <= d <= hi and d % step == 0 for d in out)
        assert fit_durations(out, total, lo, hi, step) == out  # a fixed point


def base_plan() -> DayPlan:
    slots = (
        [(SLEEP, "Klaus's apartment")] * 7
        + [("morning routine", "Klaus's apartment")]
        + [("working on his research paper", "Oak Hill College library")] * 3
        + [("eating lunch", "Hobbs Cafe")]
        + [("reading", "Oak Hill College library")] * 6
        + [("dinner", "Hobbs Cafe")]
        + [("free time", "Klaus's apartment")] * 4
        + [(SLEEP, "Klaus's apartment")]
    )
    plan = DayPlan(DAY, 7, ("work",), tuple(merge_slots(slots)))
    check(plan)
    return plan


def subtasks_of(plan: DayPlan, parent: PlanEntry) -> list[PlanEntry]:
    return [
        e
        for e in plan.entries
        if e.parent == parent.activity and parent.start <= e.start < parent.end
    ]


@pytest.mark.parametrize(
    "answer",
    [
        [{"activity": "open the laptop", "minutes": 10}]
        + [{"activity": "write", "minutes": 15}] * 8,
        [{"activity": "write", "minutes": 7}] * 8,  # too short, not multiples of 5
        [{"activity": "write", "minutes": 5}] * 8,  # too short
        [{"activity": "write", "minutes": 15}] * 24,  # far too long
        [{"activity": "write", "minutes": 15}] * 3,  # too few items: fails the schema
        [{"activity": "write", "minutes": 99}],  # fails the schema, then falls back
        None,  # the model fails
    ],
)
async def test_decompose_current_and_next_block(answer: Any) -> None:
    asker, llm = asker_for([("plan_decompose", answer)] if answer is not None else [])
    plan = base_plan()
    work, lunch = plan.entry_at(8 * 60), plan.entry_at(11 * 60)
    out = await decompose(asker, KLAUS, plan, 8 * 60 + 30, SETTINGS)
    check(out)
    for parent in (work, lunch):
        subs = subtasks_of(out, parent)
        assert subs and sum(e.duration for e in subs) == parent.duration
        assert subs[0].start == parent.start and subs[-1].end == parent.end
        assert all(e.location == parent.location for e in subs)
    assert out.entry_at(12 * 60).parent is None  # only the current block and the next one
    calls = len(llm.calls)
    again = await decompose(asker, KLAUS, out, 8 * 60 + 45, SETTINGS)
    assert again == out and len(llm.calls) == calls  # already decomposed: nothing asked


async def test_sleep_is_never_decomposed_but_the_block_after_it_is() -> None:
    asker, _ = asker_for([("plan_decompose", [{"activity": "shower", "minutes": 10}] * 4)])
    plan = base_plan()
    out = await decompose(asker, KLAUS, plan, 3 * 60, SETTINGS)
    check(out)
    assert out.entries[0] == plan.entries[0]  # sleep untouched
    assert [e.activity for e in subtasks_of(out, plan.entry_at(7 * 60))] == ["shower"] * 4
    late = await decompose(asker, KLAUS, out, 23 * 60 + 30, SETTINGS)
    assert late == out  # the last sleep block: nothing to break up


async def test_short_blocks_are_not_decomposed() -> None:
    slots = [(SLEEP, "home")] * 8 + [("a", "home"), ("b", "home")] * 8
    plan = DayPlan(DAY, 8, (), tuple(merge_slots(slots)))
    asker, llm = asker_for([])
    settings = PlanningSettings(decompose_min_block_minutes=90)
    assert await decompose(asker, KLAUS, plan, 9 * 60, settings) == plan
    assert not llm.calls


@pytest.mark.parametrize("now", [0, 9 * 60 + 37, 10 * 60, 23 * 60 + 59, 1440])
@pytest.mark.parametrize(
    "answer",
    [
        [{"activity": "talk with Maria", "location": "Hobbs Cafe", "minutes": 30}],  # too short
        [{"activity": "study", "location": "Oak Hill College library", "minutes": 240}] * 24,
        [{"activity": "sleep", "location": "Hobbs Cafe", "minutes": 7}] * 3,
        None,  # failure: the old plan stays
    ],
)
async def test_replan_keeps_the_past_and_sums_to_1440(now: int, answer: Any) -> None:
    asker, _ = asker_for([("plan_revise", answer)] if answer is not None else [])
    plan = base_plan()
    plan = await decompose(asker_for([])[0], KLAUS, plan, 8 * 60, SETTINGS)
    out = await replan(asker, KLAUS, plan, now, "Klaus met Maria at the cafe", SETTINGS)
    check(out)
    if answer is None or now >= 1440:
        assert out == plan
        return
    # everything before now is as it was (the entry in progress cut at now)
    for minute in range(0, now):
        assert out.entry_at(minute).activity == plan.entry_at(minute).activity
    first_new = out.entry_at(now)
    assert first_new.start == now or first_new.activity == plan.entry_at(now - 1).activity
    assert out.entries[-1].activity == SLEEP or out.entries[-1].end == 1440
    if answer[0]["minutes"] == 30 and now < 1400:
        assert out.entry_at(now).activity == "talk with Maria"
        assert out.entry_at(1439).activity == SLEEP  # the short plan ends with sleep
    for e in out.entries:
        if e.start >= now and e.activity == SLEEP:
            assert e.location == KLAUS.home


async def test_random_valid_answers_keep_every_invariant() -> None:
    for seed in range(25):
        rng = random.Random(seed)
        asker, _ = asker_for(lambda r, rng=rng: sample(r.json_schema, rng))
        plan = await plan_day(asker, KLAUS, DAY, "", SETTINGS)
        check(plan)
        for minute in sorted(rng.sample(range(1440), 6)):
            plan = await decompose(asker, KLAUS, plan, minute, SETTINGS)
            check(plan)
            if rng.random() < 0.5:
                plan = await replan(asker, KLAUS, plan, minute + rng.randint(0, 30), "x", SETTINGS)
                check(plan)
                plan = await decompose(asker, KLAUS, plan, minute + 30, SETTINGS)
                check(plan)
