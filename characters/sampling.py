"""Which profile chunks the scene-extraction prompts use (spec section 1, step 2).

The paper draws 100 prompts per character: every paragraph repeated ``floor(100 / paragraphs)``
times, the rest topped up at random weighted by paragraph length, with a fixed seed.

Choices of ours, where the paper says nothing:
- the top-up draws *without replacement* (weighted by length in characters), so no paragraph is
  used more than once more than the others;
- with more paragraphs than prompts (``floor`` is 0), ``n`` distinct paragraphs are drawn the
  same way, so some paragraphs get no prompt at all;
- the result is sorted, so prompt ``k`` is stable given the profile, ``n`` and the seed.
"""

from __future__ import annotations

import random

from characters.profile import Profile


def _weighted_without_replacement(weights: list[float], k: int, rng: random.Random) -> list[int]:
    """``k`` distinct indices drawn with probability proportional to ``weights``
    (Efraimidis-Spirakis: the ``k`` largest keys ``u ** (1 / w)``)."""
    keys = [(rng.random() ** (1.0 / max(w, 1e-9)), i) for i, w in enumerate(weights)]
    return [i for _, i in sorted(keys, reverse=True)[:k]]


def scene_prompts(profile: Profile, n: int = 100, seed: int = 0) -> list[int]:
    """The paragraph index of each of the ``n`` scene-extraction prompts, sorted."""
    if n < 0:
        raise ValueError(f"the number of prompts must be >= 0, not {n}")
    count = len(profile.paragraphs)
    repeats, rest = divmod(n, count)
    indices = [i for i in range(count) for _ in range(repeats)]
    weights = [float(len(p)) for p in profile.paragraphs]
    indices += _weighted_without_replacement(weights, rest, random.Random(seed))
    return sorted(indices)
