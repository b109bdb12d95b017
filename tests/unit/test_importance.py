"""Importance scoring (spec section 3): idle and plans without a call, one batch, fallback."""

from actors.mind.importance import clamp, score_importance
from actors.mind.persona import Persona
from actors.mind.prompting import Asker
from actors.mind.settings import ImportanceSettings
from serving.scripted import Answer, ScriptedLLM
from serving.types import LLMRequest

PERSONA = Persona("Klaus Mueller", 20, "curious, kind", "a student who studies at the library")
SETTINGS = ImportanceSettings()


def user_text(request: LLMRequest) -> str:
    """The memory asked about: the user message's first paragraph (the scale follows it)."""
    assert request.messages is not None
    return request.messages[-1].content.split("\n\n")[0]


async def test_idle_descriptions_score_1_with_no_model_call() -> None:
    llm = ScriptedLLM([("importance", {"importance": 9})])
    asker = Asker(llm, PERSONA.name)
    scores = await score_importance(
        asker, PERSONA, ["the desk is idle", "Klaus Mueller is idle"], SETTINGS
    )
    assert scores == [1, 1]
    assert llm.calls == []


async def test_plans_score_5_with_no_model_call() -> None:
    llm = ScriptedLLM([("importance", {"importance": 9})])
    scores = await score_importance(
        Asker(llm, PERSONA.name), PERSONA, ["wake up at 7, study, sleep"], SETTINGS, kind="plan"
    )
    assert scores == [5]
    assert llm.calls == []


async def test_the_rest_is_asked_in_one_batch_in_order() -> None:
    def rate(request: LLMRequest) -> Answer:
        text = user_text(request)
        return {"importance": 8 if "break-up" in text else 2}

    llm = ScriptedLLM(rate)
    descriptions = [
        "Klaus is brushing his teeth",
        "the bed is idle",
        "Klaus hears about Maria's break-up",
        "Klaus makes the bed",
    ]
    scores = await score_importance(Asker(llm, PERSONA.name), PERSONA, descriptions, SETTINGS)
    assert scores == [2, 1, 8, 2]
    assert llm.batch_sizes == [3]
    assert {r.purpose for r in llm.calls} == {"importance"}
    assert "1 is purely mundane" in (llm.calls[0].messages or ())[-1].content
    assert (llm.calls[0].json_schema or {})["properties"]["importance"]["maximum"] == 10


async def test_a_bad_answer_scores_4_and_is_counted() -> None:
    def rate(request: LLMRequest) -> Answer:
        if "party" in user_text(request):
            return "a ten, clearly"  # not JSON: fails twice
        return {"importance": 6}

    llm = ScriptedLLM(rate)
    asker = Asker(llm, PERSONA.name)
    scores = await score_importance(
        asker, PERSONA, ["Klaus reads", "Isabella plans a party"], SETTINGS
    )
    assert scores == [6, 4]
    assert asker.stats.failures["importance"] == 1
    assert asker.stats.retries["importance"] == 1


async def test_out_of_range_answers_are_rejected_or_clamped() -> None:
    llm = ScriptedLLM([("importance", {"importance": 11})])
    asker = Asker(llm, PERSONA.name)
    assert await score_importance(asker, PERSONA, ["Klaus reads"], SETTINGS) == [4]
    assert asker.stats.failures["importance"] == 1
    assert (clamp(15, 4), clamp(0, 4), clamp(7.0, 4), clamp("x", 4), clamp(True, 4)) == (
        10,
        1,
        7,
        4,
        4,
    )
