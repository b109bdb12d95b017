"""Seeds: one per run, threaded into every request that samples."""

from __future__ import annotations

import hashlib

from serving.types import LLMRequest


def derive_seed(base_seed: int, request: LLMRequest) -> int:
    """The sampling seed of a request: its own, or one derived from the run's seed and its content.

    Derived seeds depend only on the request's content, never on its batch, so the same request
    gives the same answer wherever it runs.
    """
    if request.seed is not None:
        return request.seed
    digest = hashlib.sha256(f"{base_seed}:{request.content_key()[0]}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)
