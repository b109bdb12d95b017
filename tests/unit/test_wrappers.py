"""Wrappers with the LLM interface: retry, recording and replay, accounting, and their stacks."""

import asyncio
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pyarrow.parquet as pq
import pytest

from serving.llm import LLM
from serving.scripted import ScriptedLLM
from serving.types import InvalidSchemaError, LLMError, LLMRequest, LLMResult, UnknownAdapterError
from serving.wrappers import (
    AccountingLLM,
    RecordingLLM,
    ReplayLLM,
    ReplayMissError,
    RetryLLM,
    load_recording,
)
from serving.wrappers.accounting import SCHEMA
from tests.schemas import IMPORTANCE

# --- doubles -------------------------------------------------------------------------------


def prompt(text: str, **kwargs: Any) -> LLMRequest:
    return LLMRequest(prompt=text, **kwargs)


class Counting:
    """Passes calls on and remembers each batch it was sent."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.batches: list[list[LLMRequest]] = []

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        self.batches.append(list(requests))
        return await self.inner.generate(requests)


class Flaky:
    """Raises for its first ``failures`` calls, then passes calls on."""

    def __init__(self, inner: LLM, failures: int, exc: Exception | None = None) -> None:
        self.inner = inner
        self.failures = failures
        self.exc = exc or ConnectionError("replica restarting")
        self.calls = 0

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return await self.inner.generate(requests)


class Slow:
    """Sleeps ``delays[n]`` seconds on call ``n`` (the last delay after that), then answers."""

    def __init__(self, inner: LLM, delays: list[float]) -> None:
        self.inner = inner
        self.delays = delays
        self.calls = 0

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        delay = self.delays[min(self.calls, len(self.delays) - 1)]
        self.calls += 1
        await asyncio.sleep(delay)
        return await self.inner.generate(requests)


class SleepRecorder:
    """A sleep function that only notes how long it was asked to sleep."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def fails_first_times(n: int, answer: str = "fine") -> Callable[[LLMRequest], Any]:
    """A rule function: requests whose prompt starts with 'bad' fail their first ``n`` times."""
    seen: dict[str, int] = {}

    def rule(request: LLMRequest) -> Any:
        text = request.prompt or ""
        seen[text] = seen.get(text, 0) + 1
        if text.startswith("bad") and seen[text] <= n:
            return RuntimeError(f"row hiccup {seen[text]}")
        return f"{answer}: {text}"

    return rule


def same_answer(a: LLMResult, b: LLMResult) -> bool:
    """Equal in everything but the request id."""
    return {**a.to_dict(), "request_id": ""} == {**b.to_dict(), "request_id": ""}


# --- retry ---------------------------------------------------------------------------------


async def test_a_transient_exception_succeeds_on_the_second_attempt() -> None:
    flaky = Flaky(ScriptedLLM(lambda r: "ok"), failures=1)
    sleep = SleepRecorder()
    llm = RetryLLM(flaky, attempts=3, backoff_s=0.5, jitter=0.1, sleep=sleep)
    requests = [prompt("a"), prompt("b")]
    results = await llm.generate(requests)
    assert [r.text for r in results] == ["ok", "ok"]
    assert [r.request_id for r in results] == [q.request_id for q in requests]
    assert flaky.calls == 2
    assert len(sleep.delays) == 1 and 0.45 <= sleep.delays[0] <= 0.55


async def test_only_the_failed_rows_are_retried_with_their_request_ids() -> None:
    counting = Counting(ScriptedLLM(fails_first_times(1)))
    llm = RetryLLM(counting, sleep=SleepRecorder())
    requests = [prompt("good 1"), prompt("bad 1"), prompt("good 2"), prompt("bad 2")]
    results = await llm.generate(requests)
    assert [r.text for r in results] == [
        "fine: good 1",
        "fine: bad 1",
        "fine: good 2",
        "fine: bad 2",
    ]
    assert all(r.ok for r in results)
    assert [r.request_id for r in results] == [q.request_id for q in requests]
    assert [len(b) for b in counting.batches] == [4, 2]
    assert [q.request_id for q in counting.batches[1]] == [
        requests[1].request_id,
        requests[3].request_id,
    ]


async def test_a_row_failing_every_attempt_comes_back_as_an_error_row() -> None:
    counting = Counting(ScriptedLLM(fails_first_times(10)))
    llm = RetryLLM(counting, attempts=3, sleep=SleepRecorder())
    requests = [prompt("bad forever"), prompt("good")]
    bad, good = await llm.generate(requests)
    assert good.ok and good.text == "fine: good"
    assert not bad.ok and bad.finish_reason == "error"
    assert bad.request_id == requests[0].request_id
    assert bad.error == "failed after 3 attempts: RuntimeError: row hiccup 3"
    assert [len(b) for b in counting.batches] == [2, 1, 1]


async def test_an_exception_on_every_attempt_gives_error_rows_not_an_exception() -> None:
    flaky = Flaky(ScriptedLLM(lambda r: "never"), failures=99)
    llm = RetryLLM(flaky, attempts=4, sleep=SleepRecorder())
    requests = [prompt("a"), prompt("b")]
    results = await llm.generate(requests)
    assert flaky.calls == 4
    assert [r.request_id for r in results] == [q.request_id for q in requests]
    assert all(
        r.error == "failed after 4 attempts: ConnectionError: replica restarting" for r in results
    )


async def test_timeouts_give_error_rows_in_bounded_time() -> None:
    slow = Slow(ScriptedLLM(lambda r: "late"), delays=[30.0])
    llm = RetryLLM(slow, attempts=3, timeout_s=0.05, backoff_s=0.01, jitter=0)
    requests = [prompt("a"), prompt("b")]
    start = time.perf_counter()
    results = await llm.generate(requests)
    elapsed = time.perf_counter() - start
    assert slow.calls == 3
    assert 0.15 <= elapsed < 2.0
    assert [r.request_id for r in results] == [q.request_id for q in requests]
    assert all(r.error == "failed after 3 attempts: timed out after 0.05s" for r in results)


async def test_a_call_that_timed_out_once_succeeds_on_the_retry() -> None:
    slow = Slow(ScriptedLLM(lambda r: "on time"), delays=[30.0, 0.0])
    llm = RetryLLM(slow, timeout_s=0.05, sleep=SleepRecorder())
    (result,) = await asyncio.wait_for(llm.generate([prompt("a")]), 2.0)
    assert result.ok and result.text == "on time" and slow.calls == 2


@pytest.mark.parametrize(
    "refusal",
    [UnknownAdapterError("ghost", ("alice",)), InvalidSchemaError("bad schema")],
    ids=["unknown-adapter", "invalid-schema"],
)
async def test_refusals_are_not_retried(refusal: LLMError) -> None:
    scripted = ScriptedLLM([("refuse", refusal)], default="ok")
    llm = RetryLLM(scripted, sleep=SleepRecorder())
    with pytest.raises(type(refusal)):
        await llm.generate([prompt("refuse me")])
    assert scripted.batch_sizes == [1]


async def test_exceptions_outside_retry_on_propagate_at_once() -> None:
    flaky = Flaky(ScriptedLLM(lambda r: "x"), failures=1, exc=TypeError("a bug, not a hiccup"))
    llm = RetryLLM(flaky, retry_on=(ConnectionError, OSError), sleep=SleepRecorder())
    with pytest.raises(TypeError, match="a bug"):
        await llm.generate([prompt("a")])
    assert flaky.calls == 1


async def test_the_hosts_retry_transport_failures_of_the_service_only() -> None:
    from ray.exceptions import ActorDiedError

    from serving.clients import transport_errors

    def hosts_retry(inner: LLM) -> RetryLLM:  # as actors.host.AgentHost wraps the Serve client
        return RetryLLM(
            inner,
            timeout_s=None,
            retry_row_errors=False,
            retry_on=transport_errors(),
            sleep=SleepRecorder(),
        )

    flaky = Flaky(ScriptedLLM(lambda r: "ok"), failures=1, exc=ActorDiedError())
    [result] = await hosts_retry(flaky).generate([prompt("a")])
    assert result.text == "ok" and flaky.calls == 2  # the replica was gone: sent again
    broken = Flaky(ScriptedLLM(lambda r: "ok"), failures=1, exc=RuntimeError("engine bug"))
    with pytest.raises(RuntimeError, match="engine bug"):
        await hosts_retry(broken).generate([prompt("a")])
    counting = Counting(ScriptedLLM(fails_first_times(1)))
    [row] = await hosts_retry(counting).generate([prompt("bad 1")])
    assert not row.ok and len(counting.batches) == 1  # a failed row is the mind's to handle


async def test_backoff_doubles_up_to_its_cap_and_jitter_follows_the_seed() -> None:
    sleep = SleepRecorder()
    llm = RetryLLM(
        Flaky(ScriptedLLM(lambda r: "x"), failures=99),
        attempts=6,
        backoff_s=1.0,
        max_backoff_s=4.0,
        jitter=0,
        sleep=sleep,
    )
    await llm.generate([prompt("a")])
    assert sleep.delays == [1.0, 2.0, 4.0, 4.0, 4.0]

    async def jittered(seed: int) -> list[float]:
        rec = SleepRecorder()
        inner = Flaky(ScriptedLLM(lambda r: "x"), failures=99)
        await RetryLLM(inner, attempts=4, backoff_s=1.0, jitter=0.5, seed=seed, sleep=rec).generate(
            [prompt("a")]
        )
        return rec.delays

    first, again, other = await jittered(1), await jittered(1), await jittered(2)
    assert first == again != other
    assert all(0.5 * b <= d <= 1.5 * b for d, b in zip(first, [1.0, 2.0, 4.0], strict=True))


async def test_a_wrong_number_of_results_is_retried_then_reported() -> None:
    class Short:
        async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
            return [LLMResult(request_id=requests[0].request_id, text="only one")]

    results = await RetryLLM(Short(), attempts=2, sleep=SleepRecorder()).generate(
        [prompt("a"), prompt("b")]
    )
    assert len(results) == 2
    assert all("failed after 2 attempts" in (r.error or "") for r in results)


async def test_an_empty_batch_makes_no_call() -> None:
    scripted = ScriptedLLM(lambda r: "x")
    assert await RetryLLM(scripted).generate([]) == []
    assert scripted.batch_sizes == []


# --- recording and replay ------------------------------------------------------------------


def town_llm() -> ScriptedLLM:
    return ScriptedLLM(
        [
            ("importance", {"importance": 4}),
            ("overrated", {"importance": 42}),  # fails the schema: an error row
            ("boom", RuntimeError("engine hiccup")),
        ],
        default="Klaus is at the library.",
    )


def town_requests() -> list[LLMRequest]:
    return [
        prompt("rate: eating breakfast", json_schema=IMPORTANCE, purpose="importance"),
        prompt("rate: overrated", json_schema=IMPORTANCE, purpose="score"),
        LLMRequest.chat(
            [("system", "You are Isabella."), ("user", "Where is Klaus?")],
            adapter="isabella",
            temperature=0.7,
            seed=3,
            purpose="dialogue",
        ),
        prompt("boom", purpose="plan"),
    ]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return tmp_path / "run" / "answers.msgpack"


async def test_record_then_replay_gives_identical_results_without_an_engine(
    recording: Path,
) -> None:
    recorder = RecordingLLM(town_llm(), recording)
    assert isinstance(recorder, LLM)
    originals = await recorder.generate(town_requests()[:2])
    originals += await recorder.generate(town_requests()[2:])
    assert [r.ok for r in originals] == [True, False, True, False]

    engine = Counting(ScriptedLLM(lambda r: "must not be asked"))
    replay = ReplayLLM(recording, fallback=engine)  # would be asked only for a miss
    fresh = town_requests()  # new request ids
    replayed = await replay.generate(fresh)
    assert engine.batches == []
    assert [r.request_id for r in replayed] == [q.request_id for q in fresh]
    for original, again in zip(originals, replayed, strict=True):
        assert same_answer(original, again)
    assert replayed[0].parsed == {"importance": 4}
    assert replayed[2].adapter == "isabella" and replayed[2].text == "Klaus is at the library."
    assert replayed[3].error == "RuntimeError: engine hiccup"
    assert replay.hits == 4 and replay.misses == 0 and len(replay) == 0


async def test_a_recording_is_a_versioned_msgpack_stream_of_requests_and_results(
    recording: Path,
) -> None:
    requests = town_requests()
    results = await RecordingLLM(town_llm(), recording).generate(requests)
    with open(recording, "rb") as f:
        records = list(msgpack.Unpacker(f, raw=False))
    assert records[0] == {"format": "simulacra-llm-recording", "version": 1}
    assert records[1:] == [
        {"request": q.to_dict(), "result": r.to_dict()}
        for q, r in zip(requests, results, strict=True)
    ]
    assert load_recording(recording) == list(zip(requests, results, strict=True))


async def test_each_call_is_on_disk_when_it_returns(recording: Path) -> None:
    recorder = RecordingLLM(town_llm(), recording)
    assert load_recording(recording) == []
    await recorder.generate([prompt("first")])
    assert [q.prompt for q, _ in load_recording(recording)] == ["first"]
    await recorder.generate([prompt("second"), prompt("third")])
    assert [q.prompt for q, _ in load_recording(recording)] == ["first", "second", "third"]


async def test_the_same_request_asked_again_gets_the_next_recorded_answer(
    recording: Path,
) -> None:
    count = 0

    def counter(request: LLMRequest) -> str:
        nonlocal count
        count += 1
        return f"answer {count}"

    recorder = RecordingLLM(ScriptedLLM(counter), recording)
    await recorder.generate([prompt("same"), prompt("other")])
    await recorder.generate([prompt("same"), prompt("same")])

    replay = ReplayLLM(recording)
    # purpose is not part of the content: it may differ on replay
    assert [r.text for r in await replay.generate([prompt("same", purpose="x")])] == ["answer 1"]
    assert [r.text for r in await replay.generate([prompt("same"), prompt("other")])] == [
        "answer 3",
        "answer 2",
    ]
    assert [r.text for r in await replay.generate([prompt("same")])] == ["answer 4"]
    with pytest.raises(ReplayMissError, match="asked more often than recorded"):
        await replay.generate([prompt("same")])


async def test_a_request_missing_from_the_recording_raises_naming_file_and_request(
    recording: Path,
) -> None:
    await RecordingLLM(town_llm(), recording).generate([prompt("known")])
    replay = ReplayLLM(recording)
    missing = prompt("unknown question", purpose="reflection")
    with pytest.raises(ReplayMissError) as caught:
        await replay.generate([prompt("known"), missing])
    message = str(caught.value)
    assert isinstance(caught.value, LLMError)
    assert str(recording) in message and "'reflection'" in message
    assert missing.request_id in message and "unknown question" in message
    # the failed call consumed nothing: the known answer is still there
    assert [r.text for r in await replay.generate([prompt("known")])] == [
        "Klaus is at the library."
    ]


async def test_misses_go_to_the_fallback_or_become_error_rows_when_not_strict(
    recording: Path,
) -> None:
    await RecordingLLM(town_llm(), recording).generate([prompt("known")])
    engine = Counting(ScriptedLLM(lambda r: "live answer"))
    with_fallback = ReplayLLM(recording, fallback=engine)
    results = await with_fallback.generate([prompt("new"), prompt("known")])
    assert [r.text for r in results] == ["live answer", "Klaus is at the library."]
    assert [[q.prompt for q in b] for b in engine.batches] == [["new"]]

    lenient = ReplayLLM(recording, strict=False)
    missing = prompt("new", purpose="plan")
    miss, hit = await lenient.generate([missing, prompt("known")])
    assert hit.ok and not miss.ok and miss.request_id == missing.request_id
    assert "'plan'" in (miss.error or "") and str(recording) in (miss.error or "")


async def test_a_truncated_last_record_is_ignored_and_cut_before_appending(
    recording: Path,
) -> None:
    recorder = RecordingLLM(town_llm(), recording)
    await recorder.generate([prompt("one"), prompt("two"), prompt("three")])
    whole = recording.read_bytes()
    recording.write_bytes(whole[:-7])  # a run killed mid-write

    assert [q.prompt for q, _ in load_recording(recording)] == ["one", "two"]
    replay = ReplayLLM(recording)
    assert len(replay) == 2
    assert len(await replay.generate([prompt("two"), prompt("one")])) == 2
    with pytest.raises(ReplayMissError):
        await replay.generate([prompt("three")])

    resumed = RecordingLLM(town_llm(), recording, append=True)
    await resumed.generate([prompt("four")])
    assert [q.prompt for q, _ in load_recording(recording)] == ["one", "two", "four"]


async def test_an_existing_recording_is_never_overwritten(recording: Path) -> None:
    await RecordingLLM(town_llm(), recording).generate([prompt("precious")])
    before = recording.read_bytes()
    with pytest.raises(FileExistsError, match=re.escape(str(recording))):
        RecordingLLM(town_llm(), recording)
    assert recording.read_bytes() == before

    await RecordingLLM(town_llm(), recording, append=True).generate([prompt("more")])
    assert [q.prompt for q, _ in load_recording(recording)] == ["precious", "more"]
    assert recording.read_bytes().startswith(before)

    empty = recording.with_name("empty.msgpack")
    empty.touch()
    RecordingLLM(town_llm(), empty)  # an empty file holds nothing to lose
    assert load_recording(empty) == []


def test_a_file_that_is_not_a_recording_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.msgpack"
    other.write_bytes(msgpack.packb({"something": "else"}))
    with pytest.raises(ValueError, match="not an LLM recording"):
        load_recording(other)
    future = tmp_path / "future.msgpack"
    future.write_bytes(msgpack.packb({"format": "simulacra-llm-recording", "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        ReplayLLM(future)


async def test_replay_position_round_trips_through_get_state(recording: Path) -> None:
    count = 0

    def counter(request: LLMRequest) -> str:
        nonlocal count
        count += 1
        return f"answer {count}"

    recorder = RecordingLLM(ScriptedLLM(counter), recording)
    for _ in range(3):
        await recorder.generate([prompt("same")])
    replay = ReplayLLM(recording)
    await replay.generate([prompt("same")])
    state = msgpack.unpackb(msgpack.packb(replay.get_state()))  # plain data

    resumed = ReplayLLM(recording)
    resumed.set_state(state)
    assert [r.text for r in await resumed.generate([prompt("same")])] == ["answer 2"]
    assert [r.text for r in await replay.generate([prompt("same")])] == ["answer 2"]


# --- accounting ----------------------------------------------------------------------------


def ticking(*times: float) -> Callable[[], float]:
    """A clock that returns the given times in turn."""
    it: Iterator[float] = iter(times)
    return lambda: next(it)


async def test_accounting_keeps_one_row_per_request() -> None:
    acc = AccountingLLM(town_llm(), clock=ticking(10.0, 12.5))
    assert isinstance(acc, LLM)
    requests = town_requests()
    results = await acc.generate(requests)
    rows = acc.rows()
    assert [r["request_id"] for r in rows] == [q.request_id for q in requests]
    assert [r["purpose"] for r in rows] == ["importance", "score", "dialogue", "plan"]
    assert [r["adapter"] for r in rows] == [None, None, "isabella", None]
    assert [r["ok"] for r in rows] == [True, False, True, False]
    assert rows[3]["error"] == "RuntimeError: engine hiccup"
    assert [r["prompt_tokens"] for r in rows] == [r.prompt_tokens for r in results]
    assert [r["completion_tokens"] for r in rows] == [r.completion_tokens for r in results]
    assert all(r["latency_s"] == 2.5 and r["batch_size"] == 4 for r in rows)
    assert all(r["call"] == 0 and r["step"] is None and r["agent"] is None for r in rows)
    assert set(rows[0]) == set(SCHEMA.names)


async def test_context_fields_fill_the_step_and_agent_columns() -> None:
    acc = AccountingLLM(ScriptedLLM(lambda r: "x"))
    acc.base_context["step"] = 1
    await acc.generate([prompt("driver")])

    async def agent(name: str, step: int) -> None:
        with acc.context(agent=name, step=step):
            await asyncio.sleep(0)  # interleave the agents
            await acc.generate([prompt(name)])

    await asyncio.gather(agent("alice", 7), agent("bob", 8))
    await acc.generate([prompt("after")])
    rows = {(r["step"], r["agent"]) for r in acc.rows()}
    assert rows == {(1, None), (7, "alice"), (8, "bob")}
    assert [r["agent"] for r in acc.rows()] == [None, "alice", "bob", None]
    with pytest.raises(TypeError, match="unknown accounting context fields"), acc.context(w=1):
        pass


async def test_the_table_has_a_fixed_schema_even_when_empty_and_round_trips_parquet(
    tmp_path: Path,
) -> None:
    acc = AccountingLLM(town_llm())
    empty = acc.table()
    assert empty.num_rows == 0 and empty.schema == SCHEMA
    assert {"request_id", "purpose", "adapter", "prompt_tokens", "completion_tokens"} <= set(
        empty.column_names
    )
    assert {"latency_s", "engine_s", "batch_size", "ok", "error", "step", "agent"} <= set(
        empty.column_names
    )

    with acc.context(step=2, agent="isabella"):
        await acc.generate(town_requests())
    path = acc.write_parquet(tmp_path / "out" / "llm_calls.parquet")
    read = pq.read_table(path)
    assert read.equals(acc.table())
    assert read.column("agent").to_pylist() == ["isabella"] * 4
    assert read.column("ok").to_pylist() == [True, False, True, False]
    assert sorted(p.name for p in path.parent.iterdir()) == ["llm_calls.parquet"]  # no temp left

    empty_path = tmp_path / "empty.parquet"
    AccountingLLM(town_llm()).write_parquet(empty_path)
    assert pq.read_table(empty_path).schema == SCHEMA


async def test_the_summary_adds_up() -> None:
    acc = AccountingLLM(ScriptedLLM([("boom", RuntimeError("x"))], default="two words"))
    await acc.generate([prompt("a b c"), prompt("boom")])
    await acc.generate([prompt("d")])
    assert acc.summary() == {
        "calls": 2,
        "requests": 3,
        "prompt_tokens": 3 + 1 + 1,
        "completion_tokens": 2 + 0 + 2,
        "cached_tokens": 0,
        "mean_batch_size": (2 + 2 + 1) / 3,
        "mean_latency_s": pytest.approx(acc.summary()["mean_latency_s"]),
        "errors": 1,
    }
    assert acc.summary()["mean_latency_s"] >= 0
    assert AccountingLLM(town_llm()).summary()["requests"] == 0


async def test_a_refused_call_is_accounted_and_still_raises() -> None:
    acc = AccountingLLM(ScriptedLLM([("ghost", UnknownAdapterError("ghost"))], default="ok"))
    with pytest.raises(UnknownAdapterError):
        await acc.generate([prompt("ghost", adapter="ghost")])
    (row,) = acc.rows()
    assert row["ok"] is False and "unknown adapter 'ghost'" in row["error"]
    assert row["batch_size"] is None and row["adapter"] == "ghost"
    assert acc.table().num_rows == 1


async def test_accounting_state_round_trips_and_clear_keeps_numbering() -> None:
    acc = AccountingLLM(town_llm())
    with acc.context(step=5):
        await acc.generate(town_requests())
    state = msgpack.unpackb(msgpack.packb(acc.get_state()))  # plain data
    restored = AccountingLLM(town_llm())
    restored.set_state(state)
    assert restored.rows() == acc.rows()
    assert restored.table().equals(acc.table())
    assert restored.summary() == acc.summary()

    restored.clear()
    assert restored.rows() == [] and restored.summary()["requests"] == 0
    await restored.generate([prompt("next")])
    assert [r["call"] for r in restored.rows()] == [1]


# --- stacks --------------------------------------------------------------------------------


async def test_wrappers_compose_and_a_recorded_stack_replays_identically(
    recording: Path,
) -> None:
    scripted = ScriptedLLM(fails_first_times(1))
    flaky = Flaky(scripted, failures=1)
    acc = AccountingLLM(RetryLLM(RecordingLLM(flaky, recording), sleep=SleepRecorder()))
    requests = [prompt("good"), prompt("bad apple"), prompt("good too")]
    with acc.context(step=1, agent="klaus"):
        results = await acc.generate(requests)
    assert all(r.ok for r in results)
    assert [r.request_id for r in results] == [q.request_id for q in requests]
    assert scripted.batch_sizes == [3, 1]  # the raising call never reached it
    # the recording holds every answer the engine gave, the failed row included
    assert [(q.prompt, r.ok) for q, r in load_recording(recording)] == [
        ("good", True),
        ("bad apple", False),
        ("good too", True),
        ("bad apple", True),
    ]
    assert [(r["request_id"], r["ok"], r["agent"]) for r in acc.rows()] == [
        (q.request_id, True, "klaus") for q in requests
    ]

    engine = Counting(ScriptedLLM(lambda r: "must not be asked"))
    replay_acc = AccountingLLM(
        RetryLLM(ReplayLLM(recording, fallback=engine), sleep=SleepRecorder())
    )
    again = await replay_acc.generate([prompt("good"), prompt("bad apple"), prompt("good too")])
    assert engine.batches == []
    for original, replayed in zip(results, again, strict=True):
        assert same_answer(original, replayed)


async def test_replay_can_repeat_the_last_answer_after_a_rollback(tmp_path: Path) -> None:
    from serving.wrappers.recording import RecordingLLM, ReplayLLM, ReplayMissError

    path = tmp_path / "rec.msgpack"
    recorder = RecordingLLM(ScriptedLLM(lambda r: {"n": r.seed}), path)
    request = LLMRequest(prompt="same question", json_schema={"type": "object"}, seed=5)
    (first,) = await recorder.generate([request])
    strict = ReplayLLM(path)
    await strict.generate([request])
    with pytest.raises(ReplayMissError):
        await strict.generate([request])
    again = ReplayLLM(path, repeat_last=True)
    answers = [(await again.generate([request]))[0] for _ in range(3)]
    assert [a.text for a in answers] == [first.text] * 3
    assert len(again) == 0  # the one recorded answer was used once, then repeated
