"""The prefix cache: a radix tree of prompt prefixes and their KV, per adapter, LRU-bounded."""

import asyncio
from typing import Any

import pytest
import torch

from serving.engines.hf import HFEngine
from serving.engines.prefix_cache import PrefixCache
from serving.types import LLMRequest

BYTES_PER_TOKEN = 2 * 3 * 4  # the fake KV below: [1, 2, 1, n, 3] float32


def _kv(tokens: list[int]) -> torch.Tensor:
    """A fake KV whose values say which token made them (so a hit can be checked)."""
    t = torch.tensor(tokens, dtype=torch.float32)
    return t.view(1, 1, 1, -1, 1).expand(1, 2, 1, -1, 3).clone()


def _joined(hit: Any) -> list[int]:
    if not hit.parts:
        return []
    return torch.cat(hit.parts, dim=3)[0, 0, 0, :, 0].long().tolist()


def test_the_longest_prefix_is_found_across_split_nodes():
    cache = PrefixCache(budget_bytes=1 << 20, min_tokens=1)
    a = list(range(100, 140))
    b = [*a[:25], *range(500, 510)]
    assert cache.insert(None, a, _kv(a)) == 40
    assert cache.insert(None, b, _kv(b)) == 10  # shares 25 tokens: the node is split there
    assert cache.nbytes == 50 * BYTES_PER_TOKEN and cache.tokens == 50
    query = [*b, 7, 8]
    hit = cache.match(None, query, limit=len(query) - 1)
    assert hit.length == 35 and _joined(hit) == b
    partial = cache.match(None, [*a[:30], 1, 2], limit=31)
    assert partial.length == 30 and _joined(partial) == a[:30]
    assert cache.match(None, a, limit=39).length == 39  # at least one token is left to compute
    assert cache.match(None, [1, *a], limit=40).length == 0


def test_adapters_have_their_own_prefixes():
    cache = PrefixCache(budget_bytes=1 << 20, min_tokens=1)
    tokens = list(range(20))
    cache.insert("alice", tokens, _kv(tokens))
    assert cache.match("alice", tokens, 19).length == 19
    assert cache.match(None, tokens, 19).length == 0
    assert cache.match("bob", tokens, 19).length == 0


def test_the_budget_evicts_the_least_recently_used():
    cache = PrefixCache(budget_bytes=60 * BYTES_PER_TOKEN, min_tokens=1)
    first, second, third = (list(range(s, s + 25)) for s in (0, 1000, 2000))
    cache.insert(None, first, _kv(first))
    cache.insert(None, second, _kv(second))
    cache.match(None, first, 24)  # first is used again: second is now the oldest
    cache.insert(None, third, _kv(third))
    assert cache.nbytes <= cache.budget_bytes and cache.evicted_tokens == 25
    assert cache.match(None, second, 24).length == 0
    assert cache.match(None, first, 24).length == 24
    assert cache.match(None, third, 24).length == 24


def test_short_new_runs_are_not_stored():
    cache = PrefixCache(budget_bytes=1 << 20, min_tokens=16)
    tokens = list(range(40))
    cache.insert(None, tokens, _kv(tokens))
    assert cache.insert(None, [*tokens, 1, 2, 3], _kv([*tokens, 1, 2, 3])) == 0
    assert cache.tokens == 40


PERSONA = (
    "You are Owen Castell, 41, who runs the Anchor pub in Saltmere. He is warm, talkative and "
    "stubborn, and he is planning a party on Tuesday at 19:00 for the whole town."
)


def _ask(task: str, adapter: str | None = None, **kwargs: Any) -> LLMRequest:
    return LLMRequest.chat([("system", PERSONA), ("user", task)], adapter=adapter, **kwargs)


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.fixture(scope="module")
def cached(start_tiny_engine: Any) -> HFEngine:
    return start_tiny_engine()


@pytest.fixture(scope="module")
def uncached(start_tiny_engine: Any) -> HFEngine:
    return start_tiny_engine(prefix_cache_mb=0)


@pytest.mark.parametrize("adapter", ["alice", None])
async def test_an_agents_second_request_hits_with_the_same_greedy_tokens(
    cached: HFEngine, uncached: HFEngine, adapter: str | None
):
    tasks = ["Plan your morning.", "Who will you talk to today?", "Rate this memory."]
    first = await cached.generate([_ask(tasks[0], adapter, max_tokens=20)])
    later = await cached.generate([_ask(t, adapter, max_tokens=20) for t in tasks[1:]])
    assert first[0].cached_tokens == 0
    prompt = cached._encode(_ask(tasks[0]))
    for task, result in zip(tasks[1:], later, strict=True):
        shared = _common(prompt, cached._encode(_ask(task)))
        assert shared > len(cached._encode(_ask(""))) // 2  # the persona, at least
        assert result.cached_tokens == shared
    again = await cached.generate([_ask(tasks[0], adapter, max_tokens=20)])
    assert again[0].cached_tokens == again[0].prompt_tokens - 1  # all but the last token
    fresh = await uncached.generate([_ask(t, adapter, max_tokens=20) for t in tasks])
    assert all(r.cached_tokens == 0 for r in fresh)
    for a, b in zip([*first, *later], fresh, strict=True):
        assert (a.text, a.completion_tokens) == (b.text, b.completion_tokens)
    assert again[0].text == fresh[0].text


async def test_concurrent_requests_with_a_shared_prefix(cached: HFEngine, uncached: HFEngine):
    await cached.generate([_ask("Warm up.", "bob", max_tokens=2)])
    requests = [_ask(f"Task number {i}: what now?", "bob", max_tokens=12) for i in range(6)]
    hits, plain = await asyncio.gather(cached.generate(requests), uncached.generate(requests))
    assert all(r.cached_tokens > 20 for r in hits)
    assert [r.text for r in hits] == [r.text for r in plain]


async def test_the_engines_budget_evicts(start_tiny_engine: Any):
    small = start_tiny_engine(prefix_cache_mb=1)
    per_token = small._forward.spec.bytes_per_token
    filler = "the market and the river " * 100
    stored = 0
    for i in range(6):  # distinct from the first token: nothing is shared
        [r] = await small.generate([LLMRequest(prompt=f"{i} {filler}", max_tokens=1)])
        stored += r.prompt_tokens
    cache = small.prefix_cache
    assert cache.nbytes <= 1 << 20 < stored * per_token
    assert cache.evicted_tokens > 0 and cache.tokens + cache.evicted_tokens == stored
    [last] = await small.generate([LLMRequest(prompt=f"5 {filler}", max_tokens=1)])
    [first] = await small.generate([LLMRequest(prompt=f"0 {filler}", max_tokens=1)])
    assert last.cached_tokens == last.prompt_tokens - 1 and first.cached_tokens == 0


async def test_requests_sent_together_reuse_what_the_first_computed(
    start_tiny_engine: Any, uncached: HFEngine
):
    cold = start_tiny_engine(prefill_chunk_tokens=16)
    requests = [_ask(f"Task number {i}: what now?", max_tokens=8) for i in range(4)]
    results = await cold.generate(requests)  # one call: admitted together, cache empty
    assert results[0].cached_tokens == 0
    shared = _common(cold._encode(requests[0]), cold._encode(requests[1]))
    assert all(r.cached_tokens >= shared - 16 for r in results[1:])  # within one chunk
    plain = await uncached.generate(requests)
    assert [r.text for r in results] == [r.text for r in plain]
