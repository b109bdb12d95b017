"""The scripted LLM: canned answers behind the LLM interface, validated like a real engine's."""

from typing import Any

import pytest

from serving.llm import LLM
from serving.scripted import ScriptedLLM
from serving.types import InvalidSchemaError, LLMRequest, UnknownAdapterError
from tests.schemas import IMPORTANCE


def prompt(text: str, **kwargs: Any) -> LLMRequest:
    return LLMRequest(prompt=text, **kwargs)


async def test_a_rule_function_answers_and_every_call_is_counted() -> None:
    llm = ScriptedLLM(lambda r: (r.prompt or "").upper())
    assert isinstance(llm, LLM)
    requests = [prompt("one two"), prompt("three")]
    results = await llm.generate(requests)
    await llm.generate([prompt("four")])
    assert [r.text for r in results] == ["ONE TWO", "THREE"]
    assert [r.request_id for r in results] == [q.request_id for q in requests]
    assert [r.prompt_tokens for r in results] == [2, 1]
    assert all(r.ok and r.finish_reason == "stop" and r.batch_size == 2 for r in results)
    assert llm.batch_sizes == [2, 1]
    assert [c.prompt for c in llm.calls] == ["one two", "three", "four"]


async def test_rules_match_by_purpose_substring_or_predicate_first_match_wins() -> None:
    llm = ScriptedLLM(
        [
            ("importance", {"importance": 7}),
            ("Klaus", "Klaus is studying."),
            (lambda r: r.adapter == "alice", "alice speaking"),
            ("library", "never reached for Klaus"),
        ],
        default="fallback",
    )
    results = await llm.generate(
        [
            prompt("rate this", purpose="importance"),
            prompt("Where is Klaus? At the library."),
            LLMRequest.chat([("user", "hello")], adapter="alice"),
            prompt("the library is open"),
            prompt("nothing matches"),
        ]
    )
    assert [r.text for r in results] == [
        '{"importance": 7}',
        "Klaus is studying.",
        "alice speaking",
        "never reached for Klaus",
        "fallback",
    ]
    assert results[2].adapter == "alice"


async def test_a_request_no_rule_matches_is_an_error_row_naming_its_purpose() -> None:
    llm = ScriptedLLM([("plan", "x")])
    (result,) = await llm.generate([prompt("?", purpose="reflect")])
    assert not result.ok and result.finish_reason == "error"
    assert "no scripted rule" in (result.error or "") and "'reflect'" in (result.error or "")


async def test_answers_with_a_schema_are_parsed_and_an_invalid_one_is_an_error_row() -> None:
    llm = ScriptedLLM(
        [("good", {"importance": 3}), ("bad", {"importance": 99}), ("prose", "not json")]
    )
    good, bad, prose = await llm.generate(
        [prompt(p, json_schema=IMPORTANCE) for p in ("good", "bad", "prose")]
    )
    assert good.ok and good.parsed == {"importance": 3}
    assert not bad.ok and bad.parsed is None and bad.finish_reason == "error"
    assert "does not match the schema at importance" in (bad.error or "")
    assert bad.text == '{"importance": 99}'  # the rejected answer is kept, as the engine does
    assert not prose.ok and "not valid JSON" in (prose.error or "")


async def test_an_exception_answer_fails_its_row_only() -> None:
    llm = ScriptedLLM([("boom", RuntimeError("engine hiccup"))], default="fine")
    boom, fine = await llm.generate([prompt("boom"), prompt("calm")])
    assert not boom.ok and boom.error == "RuntimeError: engine hiccup" and boom.text == ""
    assert fine.ok and fine.text == "fine"


async def test_refusals_raise_like_the_service() -> None:
    llm = ScriptedLLM([("ghost", UnknownAdapterError("ghost", ("alice",)))], default="ok")
    with pytest.raises(UnknownAdapterError, match="unknown adapter 'ghost'"):
        await llm.generate([prompt("calm"), prompt("ghost")])
    with pytest.raises(InvalidSchemaError):
        await llm.generate([prompt("calm", json_schema={"type": "nonsense"})])
    assert llm.batch_sizes == [2, 1]  # refused calls are counted too


async def test_answers_can_be_functions_of_the_request_and_are_deterministic() -> None:
    llm = ScriptedLLM([("echo", lambda r: {"n": len(r.prompt or "")})])
    first = await llm.generate([prompt("echo me")])
    second = await llm.generate([prompt("echo me")])
    assert first[0].text == second[0].text == '{"n": 7}'
    assert first[0].request_id != second[0].request_id
