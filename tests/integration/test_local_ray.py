"""A process can start a local Ray cluster, stop it and start another (runs one after another in
one process, as an experiment does): each has the process's token, and each answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

TWO_CLUSTERS = """
import ray
from cluster.ray_runtime import init_ray
for i in range(2):
    init_ray(num_cpus=1)
    print(i, ray.get(ray.remote(lambda: 42).remote()), flush=True)
    ray.shutdown()
"""


def test_two_local_clusters_one_after_another_in_one_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", TWO_CLUSTERS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0", "42", "1", "42"]
