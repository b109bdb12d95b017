import msgpack
import pytest

from serving.adapters import check_adapter_name, check_request_adapter, parse_adapter_spec
from serving.schema import check_schema, parse_and_validate
from serving.types import (
    InvalidAdapterNameError,
    InvalidSchemaError,
    LLMRequest,
    LLMResult,
    UnknownAdapterError,
)
from tests.schemas import IMPORTANCE


def test_request_round_trips_through_msgpack() -> None:
    request = LLMRequest.chat(
        [("system", "be brief"), ("user", "hi")],
        json_schema=IMPORTANCE,
        adapter="alice",
        stop=("\n",),
        seed=7,
        purpose="importance",
    )
    back = LLMRequest.from_dict(msgpack.unpackb(msgpack.packb(request.to_dict())))
    assert back == request
    result = LLMResult(request.request_id, '{"importance": 3}', {"importance": 3}, 5, 4)
    assert LLMResult.from_dict(msgpack.unpackb(msgpack.packb(result.to_dict()))) == result


def test_content_key_ignores_the_id_and_purpose_only() -> None:
    a = LLMRequest(prompt="x", purpose="a")
    assert a.content_key() == LLMRequest(prompt="x", purpose="b").content_key()
    assert a.content_key() != LLMRequest(prompt="x", seed=1).content_key()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of"),
        ({"prompt": "a", "messages": ()}, "exactly one of"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "top_p": 0}, "top_p"),
        ({"prompt": "a", "temperature": -1}, "temperature"),
    ],
)
def test_bad_requests_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LLMRequest(**kwargs)


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", "", "base", "x y"])
def test_unsafe_adapter_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidAdapterNameError):
        check_adapter_name(name)


def test_adapter_checks() -> None:
    assert check_adapter_name("Hermione-v2.1_lora") == "Hermione-v2.1_lora"
    check_request_adapter(LLMRequest(prompt="x"), [])
    with pytest.raises(UnknownAdapterError, match=r"'carol'.*alice, bob"):
        check_request_adapter(LLMRequest(prompt="x", adapter="carol"), ["alice", "bob"])
    with pytest.raises(InvalidAdapterNameError):
        check_request_adapter(LLMRequest(prompt="x", adapter="../a"), ["alice"])
    assert parse_adapter_spec("alice=/tmp/a") == ("alice", "/tmp/a")
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_adapter_spec("alice")


def test_schema_checks() -> None:
    check_schema(IMPORTANCE)
    with pytest.raises(InvalidSchemaError, match="at type"):
        check_schema({"type": "nonsense"})
    with pytest.raises(InvalidSchemaError, match="must be an object"):
        check_schema(["not", "a", "schema"])
    assert parse_and_validate('{"importance": 3}', IMPORTANCE) == ({"importance": 3}, None)
    value, why = parse_and_validate('{"importance": 11}', IMPORTANCE)
    assert value is None and why is not None and "importance" in why
    value, why = parse_and_validate('{"importance": ', IMPORTANCE)
    assert value is None and why is not None and "not valid JSON" in why
