"""Relationship formation (Park et al. 2023, section 7.1): the network of who knows whom and
its density 2|E| / (|V| (|V| - 1)).

By interview, as the paper: an edge where both agents say yes to "Do you know of <name>?". From
memory: an edge where the two talked (a conversation record holds both voices) or either holds
a record naming the other.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

Edge = tuple[str, str]
"""An undirected edge: the two names in sorted order."""


def edge(a: str, b: str) -> Edge:
    return (a, b) if a <= b else (b, a)


def density(n_agents: int, edges: Collection[Edge]) -> float:
    """2|E| / (|V| (|V| - 1)); 0 for fewer than two agents."""
    if n_agents < 2:
        return 0.0
    return 2 * len(edges) / (n_agents * (n_agents - 1))


def mutual_edges(says_yes: Mapping[tuple[str, str], bool]) -> set[Edge]:
    """``says_yes[(a, b)]``: a says it knows b. An edge where both say yes."""
    return {edge(a, b) for (a, b), yes in says_yes.items() if yes and says_yes.get((b, a), False)}


def memory_edges(
    names: Sequence[str], records: Mapping[str, Sequence[Mapping[str, Any]]]
) -> set[Edge]:
    """Pairs that talked (a conversation record of one holds the other's voice) or where one
    holds a record naming the other (records: checkpoint data per agent)."""
    known = set(names)
    found: set[Edge] = set()
    for agent, own in records.items():
        others = [n for n in names if n != agent]
        for record in own:
            for speaker, _line in record.get("transcript") or ():
                if speaker in known and speaker != agent:
                    found.add(edge(agent, speaker))
            text = str(record["description"])
            found.update(edge(agent, other) for other in others if other in text)
    return found
