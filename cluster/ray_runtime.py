"""Starting or joining Ray."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> None:
    """Joins the Ray cluster at ``address`` or starts a local one (no dashboard). Idempotent."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, **kwargs)
    else:
        # A local cluster listens on the loopback interface only.
        kwargs.setdefault("_node_ip_address", "127.0.0.1")
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    log.info("Ray ready: %s", ray.cluster_resources())
