"""Checks a program can make of a model's answers, per purpose (``bench/bench_prompts.py``).

Two questions per answer: is it *usable* (what the code does with it is not a fallback: it has
the parts the code reads, non-empty once stripped), and which *checks* does it fail (plan items
in time order inside the day, places the agent knows, utterances that are English sentences
addressed to the other agent, reflections that cite existing statements, scripts that parse).
Both take the parsed JSON answer (or a script's text) and a :class:`Context` of what the asker
knew. Answers of the older and the newer prompt layouts are both understood, so the same
checks measure both (hourly entries as a list or as an object keyed by start time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.mind.planning import SLEEP, normalise_activity
from characters.protective import parse_protective
from characters.script_parser import parse_script


@dataclass(frozen=True)
class Context:
    """What the asker knew when it asked (the checks compare the answer with it)."""

    agent: str = ""  # who answers (an agent, or a character)
    other: str = ""  # whom an utterance is addressed to / a relationship is about
    places: tuple[str, ...] = ()  # the agent's known places
    wake_hour: float | None = None  # from the persona's lifestyle ("wakes up around 6:30am")
    previous: str = ""  # the previous line of the conversation
    statements: int = 0  # how many numbered statements the prompt showed
    block_minutes: int = 0  # the decomposed block's length
    remaining: int = 0  # minutes from now to midnight (re-planning)
    asked: int = 0  # how many items were asked for


_TIME_KEY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_WAKE = re.compile(
    r"wakes?\s+up\s+(?:at\s+|around\s+|about\s+|by\s+)?(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?",
    re.IGNORECASE,
)


def wake_hour_of(lifestyle: str) -> float | None:
    """The wake-up time a lifestyle names ("wakes up around 4:30am" -> 4.5), else None."""
    m = _WAKE.search(lifestyle)
    if not m:
        return None
    hour = int(m[1]) % 12 if m[3] else int(m[1])
    if m[3] and m[3].lower().startswith("p"):
        hour += 12
    return hour + int(m[2] or 0) / 60


def english(text: Any, min_words: int = 1) -> bool:
    """Mostly ASCII letters (>= 80% of the non-space characters), at least ``min_words`` words."""
    if not isinstance(text, str):
        return False
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return False
    letters = sum(c.isascii() and c.isalpha() for c in chars)
    return letters / len(chars) >= 0.8 and len(text.split()) >= min_words


def sentence(text: Any, min_words: int = 3) -> bool:
    """English, starts with a capital letter (or a quote), ends with . ! or ?"""
    if not english(text, min_words):
        return False
    s = str(text).strip().strip("\"'")
    return bool(s) and s[0].isupper() and s[-1] in ".!?"


def _first_name(name: str) -> str:
    return name.split()[0] if name.split() else name


def _starts_with_name(text: str, name: str) -> bool:
    """``text`` opens with ``name`` (or its first name) as a speaker label or a self-address."""
    head = text.strip().lower()
    return any(
        head.startswith(n.lower()) and not head[len(n) : len(n) + 1].isalpha()
        for n in {name, _first_name(name)}
        if n
    )


def _norm(text: Any) -> str:
    return " ".join(str(text).lower().split()).strip(" .!?")


# -- plans ------------------------------------------------------------------------------------


def plan_slots(answer: Any) -> list[tuple[str | None, dict[str, Any]]]:
    """(start "HH:MM" or None, item) per plan item: a list of items, or an object keyed by time
    (``{"07:00": {...}}``), or ``{"entries": ...}`` around either."""
    if isinstance(answer, dict) and set(answer) == {"entries"}:
        answer = answer["entries"]
    if isinstance(answer, list):
        return [(None, a if isinstance(a, dict) else {}) for a in answer]
    if isinstance(answer, dict) and all(_TIME_KEY.match(str(k)) for k in answer):
        return [(str(k), v if isinstance(v, dict) else {"activity": v}) for k, v in answer.items()]
    return []


def _keys_in_order(starts: Sequence[str | None]) -> bool:
    times = [s for s in starts if s is not None]
    return len(times) == len(starts) and times == sorted(times) and len(set(times)) == len(times)


def _activities(slots: Sequence[tuple[str | None, dict[str, Any]]]) -> list[str]:
    return [str(item.get("activity", "")).strip() for _, item in slots]


def _plan_checks(
    slots: Sequence[tuple[str | None, dict[str, Any]]], ctx: Context, total: int | None
) -> list[str]:
    failed: list[str] = []
    activities = _activities(slots)
    if not all(english(a) for a in activities):
        failed.append("english")
    if ctx.places and any(
        "location" in item and item["location"] not in ctx.places for _, item in slots
    ):
        failed.append("places")
    if all(s is None for s, _ in slots):  # a list with minutes: the sum must fit
        minutes = [item.get("minutes") for _, item in slots]
        ints = [m for m in minutes if isinstance(m, int) and not isinstance(m, bool)]
        if total is not None and (len(ints) != len(minutes) or sum(ints) > total):
            failed.append("order")
    elif not _keys_in_order([s for s, _ in slots]):
        failed.append("order")
    return failed


def _day_usable(answer: Any, ctx: Context) -> bool:
    if not isinstance(answer, dict):
        return False
    strokes = answer.get("broad_strokes")
    wake = answer.get("wake_hour")
    return (
        isinstance(wake, int | str)
        and isinstance(strokes, list)
        and any(str(s).strip() for s in strokes)
    )


def _wake_value(wake: Any) -> float | None:
    if isinstance(wake, bool):
        return None
    if isinstance(wake, int):
        return float(wake)
    if isinstance(wake, str) and _TIME_KEY.match(wake):
        return int(wake[:2]) + int(wake[3:]) / 60
    return None


def _day_checks(answer: Any, ctx: Context) -> list[str]:
    failed = []
    strokes = [str(s).strip() for s in answer.get("broad_strokes", [])]
    if not all(english(s, 2) for s in strokes):
        failed.append("english")
    if len({_norm(s) for s in strokes}) != len(strokes):
        failed.append("distinct")
    wake = _wake_value(answer.get("wake_hour"))
    if ctx.wake_hour is not None and (wake is None or abs(wake - ctx.wake_hour) > 1.01):
        failed.append("wake_hour")
    return failed


def _hourly_usable(answer: Any, ctx: Context) -> bool:
    slots = plan_slots(answer)
    return bool(slots) and (not ctx.asked or len(slots) == ctx.asked) and any(_activities(slots))


def _hourly_checks(answer: Any, ctx: Context) -> list[str]:
    slots = plan_slots(answer)
    failed = _plan_checks(slots, ctx, None)
    activities = [normalise_activity(a) for a in _activities(slots)]
    if activities and activities[0] == SLEEP:
        failed.append("awake")  # the first waking hour is spent asleep
    if len(set(activities)) < min(3, len(activities)):
        failed.append("varied")
    return failed


def _decompose_usable(answer: Any, ctx: Context) -> bool:
    return any(_activities(plan_slots(answer)))


def _decompose_checks(answer: Any, ctx: Context) -> list[str]:
    slots = plan_slots(answer)
    failed = _plan_checks(slots, ctx, None)
    if all(s is None for s, _ in slots) and ctx.block_minutes:
        minutes = [item.get("minutes") for _, item in slots]
        if sum(m for m in minutes if isinstance(m, int)) != ctx.block_minutes:
            failed.append("order")  # the steps do not fill the block
    activities = [_norm(a) for a in _activities(slots)]
    if len(activities) > 1 and len(set(activities)) == 1:
        failed.append("varied")
    return failed


def _revise_checks(answer: Any, ctx: Context) -> list[str]:
    return _plan_checks(plan_slots(answer), ctx, ctx.remaining or None)


# -- the rest of the mind ---------------------------------------------------------------------


def _field(answer: Any, key: str) -> Any:
    return answer.get(key) if isinstance(answer, dict) else None


def _text_usable(key: str) -> Callable[[Any, Context], bool]:
    def usable(answer: Any, ctx: Context) -> bool:
        value = _field(answer, key)
        return isinstance(value, str) and bool(value.strip())

    return usable


def _importance_usable(answer: Any, ctx: Context) -> bool:
    value = _field(answer, "importance")
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10


def _reaction_usable(answer: Any, ctx: Context) -> bool:
    return _field(answer, "reaction") in ("talk", "wait", "continue")


def _no_checks(answer: Any, ctx: Context) -> list[str]:
    return []


def utterance_checks(text: Any, ctx: Context) -> list[str]:
    """An English sentence addressed to the other agent, not a repeat of the previous line."""
    failed = []
    if not sentence(text, 2):
        failed.append("sentence")
    if isinstance(text, str) and ctx.agent and _starts_with_name(text, ctx.agent):
        failed.append("own_name")
    if isinstance(text, str) and ctx.previous and _norm(text) == _norm(ctx.previous):
        failed.append("repeat")
    return failed


def _utterance_usable(answer: Any, ctx: Context) -> bool:
    return _text_usable("utterance")(answer, ctx) and isinstance(_field(answer, "end"), bool)


def _utterance_checks(answer: Any, ctx: Context) -> list[str]:
    return utterance_checks(_field(answer, "utterance"), ctx)


def _mentions(text: str, *names: str) -> bool:
    low = text.lower()
    return any(_first_name(n).lower() in low for n in names if n)


def _summary_checks(answer: Any, ctx: Context) -> list[str]:
    text = str(_field(answer, "summary") or "")
    failed = [] if english(text, 3) else ["english"]
    if not _mentions(text, ctx.agent, ctx.other):
        failed.append("names")
    return failed


def _chat_reflection_usable(answer: Any, ctx: Context) -> bool:
    return any(_text_usable(k)(answer, ctx) for k in ("plans", "memo"))


def _chat_reflection_checks(answer: Any, ctx: Context) -> list[str]:
    notes = [_field(answer, k) for k in ("plans", "memo")]
    return [] if all(english(n, 3) for n in notes) else ["english"]


def _questions(answer: Any) -> list[str]:
    found = _field(answer, "questions")
    return [str(q).strip() for q in found] if isinstance(found, list) else []


def _questions_usable(answer: Any, ctx: Context) -> bool:
    return any(_questions(answer))


def _questions_checks(answer: Any, ctx: Context) -> list[str]:
    qs = _questions(answer)
    failed = []
    if not all(english(q, 3) and q.endswith("?") for q in qs):
        failed.append("question")
    if len({_norm(q) for q in qs}) != len(qs):
        failed.append("distinct")
    if ctx.asked and len(qs) != ctx.asked:
        failed.append("count")
    return failed


def _insights(answer: Any) -> list[dict[str, Any]]:
    found = _field(answer, "insights")
    return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []


def _cited(item: dict[str, Any]) -> list[Any]:
    found = item.get("evidence")
    return list(found) if isinstance(found, list) else []


def _insights_usable(answer: Any, ctx: Context) -> bool:
    """What :func:`actors.mind.reflection.reflect` keeps: an insight citing a shown statement."""
    n = ctx.statements or 10**9
    return any(
        str(i.get("insight", "")).strip()
        and any(isinstance(c, int) and 1 <= c <= n for c in _cited(i))
        for i in _insights(answer)
    )


def reflection_checks(answer: Any, ctx: Context) -> list[str]:
    """Every insight in English, citing only existing statement numbers (1..N)."""
    items = _insights(answer)
    failed = []
    n = ctx.statements
    if not all(
        _cited(i)
        and all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= n for c in _cited(i))
        for i in items
    ):
        failed.append("cites")
    if not all(english(i.get("insight"), 3) for i in items):
        failed.append("english")
    if ctx.asked and len(items) != ctx.asked:
        failed.append("count")
    return failed


def _about_other_checks(key: str) -> Callable[[Any, Context], list[str]]:
    def checks(answer: Any, ctx: Context) -> list[str]:
        text = str(_field(answer, key) or "")
        failed = [] if english(text, 3) else ["english"]
        if ctx.other and not _mentions(text, ctx.other):
            failed.append("names")
        return failed

    return checks


def _interview_checks(answer: Any, ctx: Context) -> list[str]:
    return [] if sentence(_field(answer, "answer")) else ["sentence"]


# -- characters -------------------------------------------------------------------------------


def _scenes(answer: Any) -> list[dict[str, Any]]:
    found = _field(answer, "scenes")
    return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []


def _scenes_usable(answer: Any, ctx: Context) -> bool:
    """What :func:`characters.scenes.read_scene_seeds` keeps: at least one whole scene."""
    return any(
        all(isinstance(s.get(k), str) and s[k].strip() for k in ("type", "location", "background"))
        for s in _scenes(answer)
    )


def _scenes_checks(answer: Any, ctx: Context) -> list[str]:
    scenes = _scenes(answer)
    failed = []
    if ctx.asked and len(scenes) != ctx.asked:
        failed.append("count")
    if not all(english(s.get("location"), 1) and english(s.get("background"), 3) for s in scenes):
        failed.append("english")
    if len({_norm(s.get("background")) for s in scenes}) != len(scenes):
        failed.append("distinct")
    return failed


def _script_usable(answer: Any, ctx: Context) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


def script_checks(text: Any, ctx: Context) -> list[str]:
    """The script parses into a scene (``characters.script_parser``)."""
    if not isinstance(text, str):
        return ["parses"]
    scene, _ = parse_script(text, ctx.agent)
    return [] if scene is not None else ["parses"]


def protective_checks(text: Any, ctx: Context) -> list[str]:
    if not isinstance(text, str):
        return ["parses"]
    scene, _ = parse_protective(text, ctx.agent, "")
    return [] if scene is not None else ["parses"]


@dataclass(frozen=True)
class Rule:
    usable: Callable[[Any, Context], bool]
    checks: Callable[[Any, Context], list[str]]


RULES: dict[str, Rule] = {
    "plan_day": Rule(_day_usable, _day_checks),
    "plan_hourly": Rule(_hourly_usable, _hourly_checks),
    "plan_decompose": Rule(_decompose_usable, _decompose_checks),
    "plan_revise": Rule(_decompose_usable, _revise_checks),
    "importance": Rule(_importance_usable, _no_checks),
    "reaction": Rule(_reaction_usable, _no_checks),
    "dialogue": Rule(_utterance_usable, _utterance_checks),
    "chat_summary": Rule(_text_usable("summary"), _summary_checks),
    "chat_reflection": Rule(_chat_reflection_usable, _chat_reflection_checks),
    "reflection_questions": Rule(_questions_usable, _questions_checks),
    "reflection_insights": Rule(_insights_usable, reflection_checks),
    "relationship": Rule(_text_usable("summary"), _about_other_checks("summary")),
    "interview": Rule(_text_usable("answer"), _interview_checks),
    "character.scenes": Rule(_scenes_usable, _scenes_checks),
    "character.experience": Rule(_script_usable, script_checks),
    "character.protective": Rule(_script_usable, protective_checks),
}


def judge(purpose: str, answer: Any, ctx: Context) -> tuple[bool, list[str]]:
    """(usable, failed checks) of one answer; an unusable answer fails ``usable`` only."""
    rule = RULES.get(purpose, Rule(lambda a, c: a is not None, _no_checks))
    if answer is None or not rule.usable(answer, ctx):
        return False, ["usable"]
    return True, rule.checks(answer, ctx)
