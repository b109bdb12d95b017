"""Where things run on a Ray cluster: the services by custom resources, the hosts spread.

A node started with the custom resource :data:`LLM_RESOURCE` (``ray start --resources
'{"simulacra_llm": 1}'``; a GPU node on a real cluster) takes the LLM service; one with
:data:`EMBEDDING_RESOURCE` takes the embedding service, which otherwise goes where the LLM
goes. Without either resource (one machine) the services go wherever Ray puts them. Agent hosts
are spread over the nodes by Ray's ``SPREAD`` strategy, so a lost node costs a share of the hosts,
which the driver re-places on the nodes left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LLM_RESOURCE = "simulacra_llm"
EMBEDDING_RESOURCE = "simulacra_embedding"
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


def host_actor_options() -> dict[str, Any]:
    """Ray options of an agent host actor: spread over the cluster's nodes."""
    return {"scheduling_strategy": "SPREAD"}
