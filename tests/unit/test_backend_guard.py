"""The backend guard: rows the backend failed are sent again with backoff for a bounded time,
then a typed error; ok rows and bad rows pass as they are. And what marks a row the backend's:
the retry wrapper's transport failures (``LLMResult.backend_error``)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import asdict

import pytest

from serving.llm import LLM
from serving.scripted import ScriptedLLM
from serving.types import LLMRequest, LLMResult, UnknownAdapterError
from serving.wrappers import BackendGuardLLM, BackendUnavailableError, RetryLLM

OK = {"importance": 5}
SCHEMA = {
    "type": "object",
    "properties": {"importance": {"type": "integer"}},
    "required": ["importance"],
}


def _request(purpose: str) -> LLMRequest:
    return LLMRequest.chat([("user", f"rate {purpose}")], json_schema=SCHEMA, purpose=purpose)


class Clock:
    """A clock that only the recorded sleeps advance (no real waiting)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Backend:
    """A scripted model whose backend is down for its first ``down_calls`` calls: every row of
    those calls fails as the backend's (the purpose ``"bad"`` always answers invalid JSON)."""

    def __init__(self, down_calls: int) -> None:
        self.down_calls = down_calls
        self.batches: list[list[str]] = []
        self.model = ScriptedLLM(self._answer)

    def _answer(self, request: LLMRequest) -> object:
        if len(self.batches) <= self.down_calls:
            return ConnectionError("cannot reach the server: connection refused")
        return "not json" if request.purpose == "bad" else OK

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        self.batches.append([r.purpose for r in requests])
        return await self.model.generate(requests)


def _guard(inner: LLM, clock: Clock, wait_s: float = 120.0) -> BackendGuardLLM:
    return BackendGuardLLM(
        inner,
        wait_s=wait_s,
        backend="the test server",
        sleep=clock.sleep,
        clock=clock,
    )


async def test_ok_rows_and_bad_rows_pass_in_one_call_as_they_are() -> None:
    clock = Clock()
    backend = Backend(down_calls=0)
    requests = [_request("a"), _request("bad"), _request("c")]
    results = await _guard(backend, clock).generate(requests)
    assert backend.batches == [["a", "bad", "c"]] and clock.sleeps == []
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert [r.ok for r in results] == [True, False, True]
    assert not results[1].backend_error and "JSON" in (results[1].error or "")


async def test_rows_the_backend_failed_are_sent_again_alone_with_backoff_in_order() -> None:
    clock = Clock()
    flaky: list[int] = []

    def answer(request: LLMRequest) -> object:  # b's backend fails its first 3 tries
        if request.purpose == "b":
            flaky.append(1)
            if len(flaky) <= 3:
                return TimeoutError("no answer from the server within 120 s")
        return "not json" if request.purpose == "bad" else OK

    inner = ScriptedLLM(answer)
    requests = [_request("a"), _request("b"), _request("bad")]
    results = await _guard(inner, clock).generate(requests)
    assert inner.batch_sizes == [3, 1, 1, 1]  # b alone, again and again
    assert all(r.request_id == requests[1].request_id for r in inner.calls[3:])
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert [r.ok for r in results] == [True, True, False]
    assert not any(r.backend_error for r in results)


async def test_a_backend_still_failing_after_the_wait_raises_with_the_last_error() -> None:
    clock = Clock()
    backend = Backend(down_calls=1000)
    with pytest.raises(BackendUnavailableError) as info:
        await _guard(backend, clock, wait_s=120).generate([_request("a"), _request("bad")])
    error = info.value
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 29.0]  # 120 s in all
    assert len(backend.batches) == 9
    assert error.backend == "the test server" and error.rows == 2 and error.waited_s == 120
    assert error.last_error == "ConnectionError: cannot reach the server: connection refused"
    assert "the test server kept failing for 120 s" in str(error)
    assert "connection refused" in str(error)


async def test_a_backend_that_comes_back_within_the_wait_is_not_an_error() -> None:
    clock = Clock()
    backend = Backend(down_calls=4)
    results = await _guard(backend, clock).generate([_request("a")])
    assert results[0].ok and clock.sleeps == [1.0, 2.0, 4.0, 8.0]


async def test_no_wait_raises_at_the_first_failure_without_sleeping() -> None:
    clock = Clock()
    with pytest.raises(BackendUnavailableError, match="the test server failed"):
        await _guard(Backend(down_calls=1), clock, wait_s=0).generate([_request("a")])
    assert clock.sleeps == []


async def test_a_refusal_of_the_request_propagates_at_once() -> None:
    clock = Clock()
    inner = ScriptedLLM(lambda r: UnknownAdapterError("ghost", ("alice",)))
    with pytest.raises(UnknownAdapterError):
        await _guard(inner, clock).generate([_request("a")])
    assert clock.sleeps == []


def test_the_error_keeps_its_fields_across_pickling() -> None:
    error = BackendUnavailableError("the LLM service", "HTTP 500 from the server: dead", 121.5, 3)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is BackendUnavailableError and str(again) == str(error)
    assert (again.backend, again.last_error, again.waited_s, again.rows) == (
        "the LLM service",
        "HTTP 500 from the server: dead",
        121.5,
        3,
    )


def test_a_result_recorded_before_the_marker_existed_reads_back() -> None:
    old = asdict(LLMResult(request_id="r1", text="hi"))
    del old["backend_error"]
    assert LLMResult.from_dict(old) == LLMResult(request_id="r1", text="hi")


# -- the retry wrapper marks its transport failures as the backend's ------------------------------


class _Unreachable:
    """A Serve handle client whose replica is gone: every call raises."""

    def __init__(self) -> None:
        self.calls = 0

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        self.calls += 1
        raise ConnectionError("the replica is gone")


async def _no_sleep(seconds: float) -> None:
    return None


async def test_rows_whose_calls_kept_failing_in_transport_are_the_backends() -> None:
    inner = _Unreachable()
    retry = RetryLLM(inner, attempts=3, retry_row_errors=False, sleep=_no_sleep)
    [row] = await retry.generate([_request("a")])
    assert inner.calls == 3 and row.backend_error
    assert row.error == "failed after 3 attempts: ConnectionError: the replica is gone"


async def test_bad_rows_through_the_retry_wrapper_are_not_the_backends() -> None:
    retry = RetryLLM(ScriptedLLM(lambda r: "not json"), attempts=2, sleep=_no_sleep)
    [row] = await retry.generate([_request("a")])
    assert not row.ok and not row.backend_error
