"""Seeds: one per run, and one rule that derives every other seed from it.

:func:`derive` hashes the run's seed with the names of what it seeds (an agent, a counter, a
request's content) and keeps the leading ``bits`` of the digest. Everything seeded in a run
goes through it: the agents' request seeds (``actors.mind.prompting.Asker``), their record ids
(``actors.mind.records.RecordIds``), the sampling seed of a request that brings none
(:func:`derive_seed`, in every engine).
"""

from __future__ import annotations

import hashlib

from serving.types import LLMRequest


def derive(seed: int, *parts: object, bits: int = 63) -> int:
    """The leading ``bits`` (1..64) of ``sha256("seed:part:part...")``."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in 1..64, not {bits}")
    text = ":".join(str(p) for p in (seed, *parts))
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


def derive_seed(base_seed: int, request: LLMRequest) -> int:
    """The sampling seed of a request: its own, or one derived from the run's seed and its content.

    Derived seeds depend only on the request's content, never on its batch, so the same request
    gives the same answer wherever it runs.
    """
    if request.seed is not None:
        return request.seed
    return derive(base_seed, request.content_key()[0])


def sampling_seed(request: LLMRequest, base_seed: int | None) -> int | None:
    """The seed an engine passes on: the request's own, else for a sampled request one derived
    as :func:`derive_seed` does (an answer must not depend on its batch); greedy requests, and
    engines without a seed, need none."""
    if request.seed is not None:
        return request.seed
    if base_seed is None or request.temperature == 0:
        return None
    return derive_seed(base_seed, request)
