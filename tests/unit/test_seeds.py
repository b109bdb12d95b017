"""One rule for every seed of a run: the leading bits of sha256 of the run's seed and parts."""

import hashlib

import pytest

from actors.mind.prompting import Asker
from serving.scripted import ScriptedLLM
from serving.seeds import derive, derive_seed, sampling_seed
from serving.types import LLMRequest


def test_derive_keeps_the_leading_bits_of_the_digest() -> None:
    digest = hashlib.sha256(b"7:Klaus Mueller:3").digest()
    assert derive(7, "Klaus Mueller", 3, bits=64) == int.from_bytes(digest[:8], "big")
    assert derive(7, "Klaus Mueller", 3, bits=32) == int.from_bytes(digest[:4], "big")
    assert derive(7, "Klaus Mueller", 3) < 2**63 and derive(8, "Klaus Mueller", 3) != derive(
        7, "Klaus Mueller", 3
    )
    with pytest.raises(ValueError, match="bits"):
        derive(7, bits=65)


def test_an_agents_request_seeds_follow_the_rule() -> None:
    asker = Asker(ScriptedLLM([]), "Klaus Mueller", seed=5)
    assert [asker._seed() for _ in range(2)] == [
        derive(5, "Klaus Mueller", n, bits=32) for n in (1, 2)
    ]


def test_a_request_without_a_seed_gets_one_from_its_content_when_sampled() -> None:
    sampled = LLMRequest(prompt="hello", temperature=0.7)
    assert derive_seed(3, sampled) == derive(3, sampled.content_key()[0])
    assert sampling_seed(sampled, 3) == derive_seed(3, sampled)
    assert sampling_seed(LLMRequest(prompt="hello", temperature=0.0), 3) is None
    assert sampling_seed(LLMRequest(prompt="hello", temperature=0.7, seed=9), 3) == 9
    assert sampling_seed(sampled, None) is None
