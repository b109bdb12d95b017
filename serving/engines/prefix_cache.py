"""A radix tree of prompt prefixes and their KV, bounded by a memory budget (LRU).

As in SGLang's RadixAttention: each node holds a run of tokens and the KV of those tokens,
so prompts that share leading tokens (an agent's persona, a template's header) share the nodes
of that prefix. A lookup walks the tree along the prompt's tokens and returns the KV of the
longest prefix found; the engine copies it into the new sequence's own cache, so entries are
never referenced by running sequences and any of them can be evicted at any time. One tree per
adapter: a LoRA adapter on the k/v projections changes the KV of the same tokens.

The KV tensors are opaque here (``[..., n, head_dim]`` with the token axis at
:data:`TOKEN_AXIS`); only their size and slicing matter.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

TOKEN_AXIS = 3  # [layers, 2, kv_heads, tokens, head_dim]


@dataclass(eq=False)
class _Node:
    tokens: tuple[int, ...]
    kv: torch.Tensor | None  # None only at a root
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)
    last_used: int = 0

    @property
    def nbytes(self) -> int:
        return 0 if self.kv is None else self.kv.numel() * self.kv.element_size()


@dataclass(frozen=True)
class PrefixHit:
    """The KV of the longest cached prefix of a prompt: ``length`` tokens in ``parts``."""

    length: int
    parts: tuple[torch.Tensor, ...]  # consecutive pieces along the token axis


class PrefixCache:
    """Prompt prefixes and their KV, per adapter, within ``budget_bytes``.

    Args:
        budget_bytes: most bytes of KV kept; the least recently used leaves go first.
        min_tokens: a new node shorter than this is not worth storing.
    """

    def __init__(self, budget_bytes: int, min_tokens: int = 16) -> None:
        self.budget_bytes = budget_bytes
        self.min_tokens = min_tokens
        self._roots: dict[str | None, _Node] = {}
        self._clock = itertools.count(1)
        self.nbytes = 0
        self.evicted_tokens = 0

    def _root(self, adapter: str | None) -> _Node:
        if adapter not in self._roots:
            self._roots[adapter] = _Node((), None, None)
        return self._roots[adapter]

    def match(self, adapter: str | None, tokens: Sequence[int], limit: int) -> PrefixHit:
        """The cached KV of the longest prefix of ``tokens`` (at most ``limit`` tokens)."""
        node = self._roots.get(adapter)
        parts: list[torch.Tensor] = []
        length = 0
        now = next(self._clock)
        while node is not None and length < limit:
            child = node.children.get(tokens[length]) if length < len(tokens) else None
            if child is None:
                break
            common = _common_length(child.tokens, tokens, length, limit - length)
            if common == 0:
                break
            assert child.kv is not None
            child.last_used = now
            parts.append(child.kv if common == len(child.tokens) else _head(child.kv, common))
            length += common
            if common < len(child.tokens):
                break
            node = child
        return PrefixHit(length, tuple(parts))

    def insert(self, adapter: str | None, tokens: Sequence[int], kv: torch.Tensor) -> int:
        """Stores the KV of ``tokens`` (``kv`` holds at least ``len(tokens)`` positions, from 0).

        Returns how many new tokens were stored (0 when already cached or too few)."""
        node = self._root(adapter)
        now = next(self._clock)
        length = 0
        while length < len(tokens):
            child = node.children.get(tokens[length])
            if child is None:
                break
            common = _common_length(child.tokens, tokens, length, len(tokens) - length)
            child.last_used = now
            if common < len(child.tokens):
                child = self._split(child, common)
            length += common
            node = child
        new = len(tokens) - length
        if new < self.min_tokens:
            return 0
        piece = kv.narrow(TOKEN_AXIS, length, new).clone()
        leaf = _Node(tuple(tokens[length:]), piece, node, last_used=now)
        node.children[leaf.tokens[0]] = leaf
        self.nbytes += leaf.nbytes
        self._evict()
        return new

    def _split(self, node: _Node, at: int) -> _Node:
        """Cuts ``node`` after ``at`` tokens; returns the new upper part."""
        assert node.kv is not None and node.parent is not None and 0 < at < len(node.tokens)
        upper = _Node(node.tokens[:at], _head(node.kv, at).clone(), node.parent)
        upper.last_used = node.last_used
        lower_kv = node.kv.narrow(TOKEN_AXIS, at, len(node.tokens) - at).clone()
        self.nbytes += upper.nbytes + lower_kv.numel() * lower_kv.element_size() - node.nbytes
        node.parent.children[upper.tokens[0]] = upper
        node.tokens, node.kv, node.parent = node.tokens[at:], lower_kv, upper
        upper.children[node.tokens[0]] = node
        return upper

    def _evict(self) -> None:
        while self.nbytes > self.budget_bytes:
            leaves = [n for n in self._nodes() if not n.children]
            if not leaves:
                return
            victim = min(leaves, key=lambda n: n.last_used)
            assert victim.parent is not None
            del victim.parent.children[victim.tokens[0]]
            self.nbytes -= victim.nbytes
            self.evicted_tokens += len(victim.tokens)

    def _nodes(self) -> list[_Node]:
        found: list[_Node] = []
        stack = [child for root in self._roots.values() for child in root.children.values()]
        while stack:
            node = stack.pop()
            found.append(node)
            stack.extend(node.children.values())
        return found

    @property
    def tokens(self) -> int:
        """Tokens stored, over all adapters."""
        return sum(len(n.tokens) for n in self._nodes())

    def clear(self) -> None:
        self._roots.clear()
        self.nbytes = 0


def _head(kv: torch.Tensor, n: int) -> torch.Tensor:
    return kv.narrow(TOKEN_AXIS, 0, n)


def _common_length(run: tuple[int, ...], tokens: Sequence[int], offset: int, limit: int) -> int:
    """How many leading tokens of ``run`` equal ``tokens[offset:]`` (at most ``limit``)."""
    n = min(len(run), len(tokens) - offset, limit)
    for i in range(n):
        if run[i] != tokens[offset + i]:
            return i
    return n
