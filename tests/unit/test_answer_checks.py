"""The checks bench/bench_prompts.py makes of a model's answers (bench/answer_checks.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from answer_checks import (
    Context,
    english,
    judge,
    plan_slots,
    reflection_checks,
    script_checks,
    utterance_checks,
    wake_hour_of,
)

TOBIAS = Context(
    agent="Tobias Marrow",
    other="Elin Marrow",
    places=("The Harbour:quay", "Marrow House:kitchen"),
    wake_hour=4.5,
)


def test_wake_hours_from_lifestyles() -> None:
    assert wake_hour_of("goes to bed around 9pm, wakes up around 4:30am, eats") == 4.5
    assert wake_hour_of("wakes up at 7am") == 7.0
    assert wake_hour_of("wakes up around 12:15pm") == 12.25
    assert wake_hour_of("sleeps whenever") is None


def test_english_and_utterances() -> None:
    assert english("Good morning, Elin.") and not english("::: 123 ---") and not english("")
    ctx = Context(agent="Tobias Marrow", other="Elin Marrow", previous="How are you?")
    assert utterance_checks("I am well, thank you!", ctx) == []
    assert utterance_checks("Tobias: I am well.", ctx) == ["own_name"]
    assert utterance_checks("Tobias Marrow here, all fine.", ctx) == ["own_name"]
    assert utterance_checks("Tobiasz is a name.", ctx) == []  # not his name
    assert utterance_checks("how are you?", ctx) == ["sentence", "repeat"]
    assert utterance_checks("I am well", ctx) == ["sentence"]  # no final punctuation
    assert "sentence" in utterance_checks("Ok.", ctx)  # one word


def test_plans_in_order_and_in_known_places() -> None:
    hourly = [
        {"activity": "taking the boat out", "location": "The Harbour:quay"},
        {"activity": "selling the catch", "location": "The Harbour:quay"},
        {"activity": "lunch", "location": "Marrow House:kitchen"},
    ]
    ctx = Context(**{**TOBIAS.__dict__, "asked": 3})
    assert judge("plan_hourly", hourly, ctx) == (True, [])
    moved = [*hourly[:2], {"activity": "lunch", "location": "Mars"}]
    assert judge("plan_hourly", moved, ctx) == (True, ["places"])
    assert judge("plan_hourly", hourly[:2], ctx) == (False, ["usable"])  # not the count asked
    asleep = [{"activity": "sleeping", "location": "Marrow House:kitchen"}, *hourly[1:]]
    assert "awake" in judge("plan_hourly", asleep, ctx)[1]
    keyed = {"05:00": {"activity": "a b"}, "04:00": {"activity": "c d"}}
    assert [s for s, _ in plan_slots(keyed)] == ["05:00", "04:00"]
    assert "order" in judge("plan_decompose", keyed, TOBIAS)[1]


def test_decomposition_must_fill_its_block_and_revisions_the_day() -> None:
    steps = [{"activity": "load the nets", "minutes": 15}, {"activity": "cast off", "minutes": 15}]
    assert judge("plan_decompose", steps, Context(block_minutes=30)) == (True, [])
    assert judge("plan_decompose", steps, Context(block_minutes=60)) == (True, ["order"])
    rest = [{"activity": "mending nets", "location": "The Harbour:quay", "minutes": 120}]
    assert judge("plan_revise", rest, Context(remaining=180, places=TOBIAS.places)) == (True, [])
    assert judge("plan_revise", rest, Context(remaining=60, places=TOBIAS.places)) == (
        True,
        ["order"],
    )


def test_day_plan_checks_the_lifestyles_wake_hour() -> None:
    day = {"wake_hour": 5, "broad_strokes": ["take the boat out", "sell the catch"]}
    assert judge("plan_day", day, TOBIAS) == (True, [])
    late = {**day, "wake_hour": 8}
    assert judge("plan_day", late, TOBIAS) == (True, ["wake_hour"])
    twice = {"wake_hour": 4, "broad_strokes": ["mend nets", "mend nets"]}
    assert judge("plan_day", twice, TOBIAS) == (True, ["distinct"])


def test_reflections_cite_existing_statements() -> None:
    answer = {
        "insights": [
            {"insight": "Tobias worries about the boat.", "evidence": [1, 3]},
            {"insight": "Tobias trusts Bram.", "evidence": [2]},
        ]
    }
    assert reflection_checks(answer, Context(statements=3, asked=2)) == []
    assert reflection_checks(answer, Context(statements=2, asked=2)) == ["cites"]
    assert reflection_checks(answer, Context(statements=3, asked=3)) == ["count"]
    uncited = {"insights": [{"insight": "Tobias is tired.", "evidence": [9]}]}
    assert judge("reflection_insights", uncited, Context(statements=3)) == (False, ["usable"])


def test_scripts_must_parse() -> None:
    good = (
        "Background: The agora at noon.\n\nSocrates (speaking)\nWhat is virtue?\n\n"
        "Meno (speaking)\nI do not know.\n\nSocrates (thinking)\nGood.\n"
    )
    ctx = Context(agent="Socrates")
    assert script_checks(good, ctx) == []
    assert script_checks("Socrates: hello", ctx) == ["parses"]
    assert judge("character.experience", good, ctx) == (True, [])
    assert judge("character.experience", "  ", ctx) == (False, ["usable"])


def test_unusable_answers_and_unknown_purposes() -> None:
    assert judge("importance", {"importance": 11}, Context()) == (False, ["usable"])
    assert judge("importance", {"importance": 3}, Context()) == (True, [])
    assert judge("dialogue", {"utterance": " ", "end": True}, Context()) == (False, ["usable"])
    assert judge("chat_summary", None, Context()) == (False, ["usable"])
    assert judge("something.else", {"x": 1}, Context()) == (True, [])
