"""A Ray cluster of several nodes on this one machine (Ray's ``cluster_utils.Cluster``): a head,
a node with the LLM's custom resource and workers with the hosts' resource; for tests and
benchmarks of multi-node runs, and for trying ``--address`` without machines. :func:`lose_node`
takes a node away as a lost machine goes: its raylet and every worker process on it at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cluster.placement import HOST_RESOURCE, LLM_RESOURCE


@dataclass
class LocalCluster:
    """The cluster and its nodes (``ray._private.node.Node``)."""

    cluster: Any  # ray.cluster_utils.Cluster
    llm_node: Any
    workers: list[Any]

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def node_names(self) -> dict[str, str]:
        """Node id -> ``head``, ``llm`` or ``worker<i>``."""
        nodes = {"head": self.cluster.head_node, "llm": self.llm_node}
        nodes.update({f"worker{i}": w for i, w in enumerate(self.workers)})
        return {n.node_id: name for name, n in nodes.items()}

    def shutdown(self) -> None:
        """Stops every node (this process leaves the cluster first if it joined this one; a
        connection to another cluster is left alone)."""
        import ray

        if ray.is_initialized():
            node = ray._private.worker.global_worker.node
            if getattr(node, "gcs_address", None) == self.cluster.gcs_address:
                ray.shutdown()
        self.cluster.shutdown()


def start_local_cluster(workers: int = 2, cpus_per_node: int = 1) -> LocalCluster:
    """Starts the head, the LLM node and ``workers`` plain workers; waits until all are up."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node})
    llm_node = cluster.add_node(num_cpus=cpus_per_node, resources={LLM_RESOURCE: 1})
    nodes = [
        cluster.add_node(num_cpus=cpus_per_node, resources={HOST_RESOURCE: 1})
        for _ in range(workers)
    ]
    cluster.wait_for_nodes()
    return LocalCluster(cluster, llm_node, nodes)


def lose_node(local: LocalCluster, node: Any, pids: Iterable[int] = ()) -> None:
    """Takes ``node`` (a worker) away: its worker processes killed, then its raylet (Ray's
    ``remove_node`` alone kills the raylet and leaves the workers it spawned answering).

    Args:
        pids: processes known to run on the node (the hosts a run's manifest places there),
            killed with the rest whatever Ray's process tree says.
    """
    import psutil
    from ray._private import ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    workers = {p.pid: p for p in psutil.Process(raylet).children(recursive=True)}
    for process in psutil.process_iter():  # every worker of the node names its raylet
        with contextlib.suppress(psutil.Error):
            if process.environ().get("RAY_RAYLET_PID") == str(raylet):
                workers[process.pid] = process
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            workers[pid] = psutil.Process(pid)
    for worker in workers.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
    local.cluster.remove_node(node, allow_graceful=False)
    local.workers.remove(node)
    _, alive = psutil.wait_procs(list(workers.values()), timeout=10)
    if alive:
        raise RuntimeError(f"processes of the lost node still alive: {[p.pid for p in alive]}")
