"""Where things run on a Ray cluster: the services by custom resources, the hosts spread.

A node started with the custom resource :data:`LLM_RESOURCE` (``ray start --resources
'{"simulacra_llm": 1}'``; a GPU node on a real cluster) takes the LLM service; one with
:data:`EMBEDDING_RESOURCE` takes the embedding service, which otherwise goes where the LLM
goes. Without either resource (one machine) the services go wherever Ray puts them. Agent hosts
go round robin over the live nodes offering :data:`HOST_RESOURCE` (every live node when none
does), so a lost node costs a share of the hosts, which the driver re-places on the nodes left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LLM_RESOURCE = "simulacra_llm"
EMBEDDING_RESOURCE = "simulacra_embedding"
HOST_RESOURCE = "simulacra_hosts"
SERVICE_SHARE = 0.01  # of a node's resource unit: one node can hold many replicas or runs


@dataclass(frozen=True)
class ServicePlacement:
    """The custom resources each service's replica asks for (empty: anywhere)."""

    llm: dict[str, float] = field(default_factory=dict)
    embedding: dict[str, float] = field(default_factory=dict)


def service_placement(cluster_resources: Mapping[str, float]) -> ServicePlacement:
    """The services' placement on a cluster with these total resources."""
    llm = {LLM_RESOURCE: SERVICE_SHARE} if LLM_RESOURCE in cluster_resources else {}
    if EMBEDDING_RESOURCE in cluster_resources:
        embedding = {EMBEDDING_RESOURCE: SERVICE_SHARE}
    else:
        embedding = dict(llm)
    return ServicePlacement(llm=llm, embedding=embedding)


def host_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The nodes agent hosts go to, in a fixed order (``ray.nodes()`` entries): the live nodes
    offering :data:`HOST_RESOURCE`, or every live node when none does."""
    alive = [n for n in nodes if n.get("Alive")]
    offering = [n for n in alive if HOST_RESOURCE in n.get("Resources", {})]
    return sorted(str(n["NodeID"]) for n in (offering or alive))


def host_actor_options(index: int, nodes: Sequence[str]) -> dict[str, Any]:
    """Ray options of agent host ``index``: round robin over ``nodes`` (:func:`host_nodes`), so
    hosts spread evenly whatever Ray's best-effort ``SPREAD`` would do. Hard affinity (a soft
    one spills to another node while the chosen one is busy starting workers): a node gone
    meanwhile fails the host's placement, which the driver answers by placing it again on the
    nodes then alive."""
    if not nodes:
        return {"scheduling_strategy": "SPREAD"}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = nodes[index % len(nodes)]
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}
