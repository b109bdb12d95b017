"""A request no engine can run is refused when it is made, naming the parameter."""

import math
import pickle

import pytest

from serving.types import (
    ContextLengthError,
    InvalidRequestError,
    LLMError,
    LLMRequest,
    RequestLimitError,
)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": math.nan}, "top_p"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -1}, "seed"),
        ({"prompt": "hi \ud800"}, "prompt"),
        ({"stop": ("\udfff",)}, "stop[0]"),
    ],
)
def test_a_bad_value_is_refused_naming_its_parameter(kwargs: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        LLMRequest(**{"prompt": "hi", **kwargs})
    assert info.value.param == param and isinstance(info.value, LLMError)
    assert info.value.status_code == 400


def test_a_bad_message_is_named_by_its_index() -> None:
    with pytest.raises(InvalidRequestError, match=r"messages\[1\]\.content") as info:
        LLMRequest.chat([("system", "ok"), ("user", "bad \ud800")])
    assert info.value.param == "messages[1].content"


def test_good_values_pass() -> None:
    request = LLMRequest(prompt="hi", max_tokens=1, temperature=0.0, top_p=1.0, seed=2**63 - 1)
    assert request.seed == 2**63 - 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ContextLengthError("too long", "r1", param="messages"), "context_length_exceeded"),
        (RequestLimitError("too big", "r2", param="max_tokens"), "request_limit_exceeded"),
        (InvalidRequestError("bad", "r3", param="seed"), None),
    ],
)
def test_limit_errors_keep_their_fields_across_processes(error: LLMError, code: str | None):
    again = pickle.loads(pickle.dumps(error))  # as Ray carries it to the caller
    assert type(again) is type(error) and isinstance(again, InvalidRequestError)
    assert (again.message, again.request_id, again.param) == (
        error.message,
        error.request_id,
        error.param,
    )
    assert (again.code, again.status_code, again.error_type) == (code, 400, "invalid_request_error")
