import pytest

from serving import openai_protocol as proto
from serving.llm import ModelInfo
from serving.types import ChatMessage, LLMResult
from tests.schemas import PLAN


def test_chat_body_becomes_a_request() -> None:
    body = proto.ChatBody.model_validate(
        {
            "model": "alice",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hello"}]},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "plan", "schema": PLAN, "strict": True},
            },
            "max_completion_tokens": 77,
            "temperature": 0.2,
            "seed": 9,
            "stop": "END",
            "user": "ignored",
        }
    )
    request = proto.chat_request(body, "alice")
    assert request.messages == (ChatMessage("system", "be brief"), ChatMessage("user", "hello"))
    assert request.json_schema == PLAN
    assert (request.max_tokens, request.temperature, request.seed) == (77, 0.2, 9)
    assert request.stop == ("END",) and request.adapter == "alice"


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"stream": True}, "stream"),
        ({"n": 2}, "n=1"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": []}, "empty"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "text"),
        ({"messages": [{"role": "user"}]}, "text"),
        ({"messages": [{"role": "user", "content": [[[1]]]}]}, "content parts"),
        ({"stop": [str(i) for i in range(17)]}, "stop has 17 strings; at most 16"),
    ],
)
def test_unsupported_chat_bodies_are_refused(extra: dict, match: str) -> None:
    body = proto.ChatBody.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    )
    with pytest.raises(proto.ProtocolError, match=match):
        proto.chat_request(body, None)


def test_completion_prompts_fan_out_and_responses_carry_usage() -> None:
    body = proto.CompletionBody.model_validate({"model": "m", "prompt": ["a", "b"]})
    requests = proto.completion_requests(body, None)
    assert [r.prompt for r in requests] == ["a", "b"]
    results = [
        LLMResult(r.request_id, "x", prompt_tokens=2, completion_tokens=3, cached_tokens=1)
        for r in requests
    ]
    response = proto.completion_response(results, "m")
    assert [c["index"] for c in response["choices"]] == [0, 1]
    assert response["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 6,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 2},  # as OpenAI reports prompt caching
    }


def test_model_list_puts_the_base_first() -> None:
    listing = proto.models_response(ModelInfo("base-1b", ("alice", "bob")))
    assert [m["id"] for m in listing["data"]] == ["base-1b", "alice", "bob"]
    assert all(m["parent"] == "base-1b" for m in listing["data"][1:])


def test_completion_response_format_constrains_each_prompt() -> None:
    body = proto.CompletionBody.model_validate(
        {
            "model": "m",
            "prompt": ["a", "b"],
            "response_format": {"type": "json_schema", "json_schema": {"schema": PLAN}},
        }
    )
    assert [r.json_schema for r in proto.completion_requests(body, None)] == [PLAN, PLAN]


def test_a_chat_body_without_max_tokens_takes_the_default_it_is_given() -> None:
    bare = proto.ChatBody.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert not proto.chat_max_tokens_given(bare)
    assert proto.chat_request(bare, None).max_tokens == proto.CHAT_MAX_TOKENS == 256
    assert proto.chat_request(bare, None, default_max_tokens=64).max_tokens == 64
    given = proto.ChatBody.model_validate({**bare.model_dump(), "max_completion_tokens": 9})
    assert proto.chat_max_tokens_given(given)
    assert proto.chat_request(given, None, default_max_tokens=64).max_tokens == 9


def test_error_bodies_carry_the_code() -> None:
    assert proto.error_body(
        "m", "invalid_request_error", "max_tokens", "context_length_exceeded"
    ) == {
        "error": {
            "message": "m",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "context_length_exceeded",
        }
    }


def test_a_completion_body_of_too_many_prompts_is_refused() -> None:
    body = proto.CompletionBody.model_validate({"model": "m", "prompt": ["p"] * 65})
    with pytest.raises(proto.ProtocolError, match="65 prompts; at most 64") as caught:
        proto.completion_requests(body, None)
    assert caught.value.param == "prompt"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "seed", "n"])
def test_a_boolean_is_not_a_number(field: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        proto.ChatBody.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], field: True}
        )
