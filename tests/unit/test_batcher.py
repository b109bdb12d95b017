import asyncio

import pytest

from serving.batcher import DynamicBatcher


async def test_concurrent_submissions_share_batches_and_keep_order() -> None:
    seen: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        seen.append(items)
        await asyncio.sleep(0.01)
        return [2 * i for i in items]

    batcher = DynamicBatcher(double, max_batch_size=8, wait_s=0.005)
    results = await asyncio.gather(*[batcher.submit_many([i]) for i in range(30)])
    assert [r[0] for r in results] == [2 * i for i in range(30)]
    assert max(batcher.batch_sizes) == 8
    assert sum(batcher.batch_sizes) == 30
    assert all(len(b) <= 8 for b in seen)


async def test_a_multi_item_submission_returns_in_order() -> None:
    async def ident(items: list[str]) -> list[str]:
        return items

    batcher = DynamicBatcher(ident, max_batch_size=3, wait_s=0)
    assert await batcher.submit_many(list("abcdefg")) == list("abcdefg")


async def test_a_failing_batch_fails_its_callers_and_the_worker_lives_on() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("engine fell over")
        return items

    batcher = DynamicBatcher(flaky, max_batch_size=4, wait_s=0)
    with pytest.raises(RuntimeError, match="engine fell over"):
        await batcher.submit_many([1])
    assert await batcher.submit_many([2]) == [2]


async def test_a_wrong_number_of_results_is_an_error_not_a_hang() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = DynamicBatcher(short, max_batch_size=4, wait_s=0)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        await asyncio.wait_for(batcher.submit_many([1, 2]), 2)


async def test_a_lone_caller_does_not_wait_for_company() -> None:
    async def ident(items: list[int]) -> list[int]:
        return items

    batcher = DynamicBatcher(ident, max_batch_size=8, wait_s=0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(3):
        assert await batcher.submit_many([i]) == [i]
    assert loop.time() - start < 0.25
    assert batcher.batch_sizes == [1, 1, 1]
