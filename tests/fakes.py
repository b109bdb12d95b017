"""Deterministic stand-ins for logic tests (the real ones are used in integration tests)."""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Sequence

import numpy as np


class HashEmbedder:
    """Bag-of-words embedding by hashing: equal texts embed equally, shared words are close.

    Real enough for logic tests of retrieval (relevance follows word overlap), with no model.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.sha256(word.strip(".,!?").encode()).digest()[:4], "big")
                out[row, h % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else np.eye(self.dim, dtype=np.float32)[0]
        return out


_WORDS = ["walk", "read", "cook", "talk", "paint", "garden", "study", "rest"]


def sample_from_pattern(pattern: str, rng: random.Random) -> str:
    """A random string matching ``pattern`` (the regex subset the schema builders write):
    literals, classes, alternations, groups and bounded repeats, kept short and word-like."""
    import re._constants as c
    import re._parser as p

    def chars_of(items: list) -> list[str]:
        out: list[str] = []
        for op, arg in items:
            if op is c.LITERAL:
                out.append(chr(arg))
            elif op is c.RANGE:
                out.extend(chr(x) for x in range(arg[0], arg[1] + 1))
        return out

    def gen(parsed, budget: int) -> str:
        text = ""
        for op, arg in parsed:
            if op is c.LITERAL:
                text += chr(arg)
            elif op is c.IN:
                options = chars_of(arg)
                plain = [ch for ch in options if ch.islower() or ch == " "]
                text += rng.choice(plain or options)
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                lo, hi, item = arg
                n = rng.randint(lo, max(lo, min(hi, lo + budget)))
                text += "".join(gen(item, 3) for _ in range(n))
            elif op is c.SUBPATTERN:
                text += gen(arg[-1], budget)
            elif op is c.BRANCH:
                text += gen(rng.choice(arg[1]), budget)
            elif op is c.AT:
                continue
            else:
                raise ValueError(f"no sampler for {op} in {pattern!r}")
        return text

    for _ in range(100):
        out = gen(p.parse(pattern), 24)
        if re.fullmatch(pattern, out):
            return out
    raise ValueError(f"could not sample {pattern!r}")


def sample_from_schema(schema: dict, rng: random.Random) -> object:
    """A random value valid under the mind's schemas (the subset ``actors.mind.schemas`` builds)."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    if "anyOf" in schema:
        return sample_from_schema(rng.choice(schema["anyOf"]), rng)
    kind = schema.get("type")
    if kind == "object":
        return {k: sample_from_schema(v, rng) for k, v in schema["properties"].items()}
    if kind == "array":
        lo = schema.get("minItems", 0)
        n = rng.randint(lo, min(schema.get("maxItems", lo + 3), lo + 4))
        return [sample_from_schema(schema["items"], rng) for _ in range(n)]
    if kind == "integer":
        return rng.randint(schema.get("minimum", 0), schema.get("maximum", 100))
    if kind == "boolean":
        return rng.random() < 0.3
    if kind == "string":
        pattern = schema.get("pattern", "")
        if pattern.startswith("^([01][0-9]"):
            return f"{rng.randint(0, 23):02d}:{rng.choice(['00', '15', '30', '45'])}"
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
        if not pattern or re.fullmatch(pattern, words):
            return words
        return sample_from_pattern(pattern, rng)
    raise ValueError(f"no sampler for schema {schema}")


def random_valid_answers(seed: int = 0):
    """A ScriptedLLM rule giving a random valid answer to any request with a schema."""
    rng = random.Random(seed)
    return lambda request: sample_from_schema(request.json_schema, rng)


def content_seeded_answers(seed: int = 0):
    """A ScriptedLLM rule whose random valid answer depends only on the request's content.

    Unlike :func:`random_valid_answers`, the answer does not depend on the order requests
    arrive in, so runs whose agents interleave differently still get the same answers.
    """
    import hashlib

    def answer(request):
        digest = hashlib.sha256(f"{seed}:{request.content_key()!r}".encode()).digest()
        return sample_from_schema(request.json_schema, random.Random(digest))

    return answer


def scripted_host_factory(scenario, answers_seed: int = 0, dim: int = 64):
    """Local hosts (no Ray) for ``scenario``: a scripted model giving content-seeded answers,
    the hash embedder and in-memory stores; the real driver runs on them in one process."""
    from actors.mind.memory_store import InMemoryStore
    from cluster.hosts import local_host_factory
    from scenarios.loader import mind_settings
    from serving.scripted import ScriptedLLM

    return local_host_factory(
        mind_settings(scenario),
        0,
        ScriptedLLM(content_seeded_answers(answers_seed)),
        HashEmbedder(dim),
        lambda i: InMemoryStore(dim),
    )


_ids = itertools.count(1)


def new_id() -> str:
    """A fresh record id for a record a test makes itself (a mind's come from its memory)."""
    return f"{next(_ids):032x}"
