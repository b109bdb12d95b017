"""The paths to a real cluster, checked: ``ray_config.yaml`` against the Ray cluster launcher's
own schema, the KubeRay manifests for what simulacra's placement, authentication and Qdrant
need, and every command they run against simulacra's own command line."""

from __future__ import annotations

import json
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cluster.cli import build_parser
from cluster.placement import EMBEDDING_RESOURCE, HOST_RESOURCE, LLM_RESOURCE

ROOT = Path(__file__).parents[2]
KUBERAY = ROOT / "cluster" / "kuberay"


def launcher_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "ray_config.yaml").read_text())


def manifests(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((KUBERAY / name).read_text()))


def simulacra_command(line: str) -> list[str]:
    """The arguments of a ``simulacra ...`` command found in ``line`` (a shell line)."""
    words = shlex.split(line.replace("$QDRANT_URL", "http://qdrant:6333"))
    start = next(i for i, w in enumerate(words) if w in ("simulacra", ".venv/bin/simulacra"))
    return words[start + 1 :]


def test_the_launcher_config_is_valid_for_rays_cluster_launcher() -> None:
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(launcher_config(), json.loads(schema_path.read_text()))


def test_the_launcher_config_offers_the_resources_placement_reads_and_a_token() -> None:
    config = launcher_config()
    offered = {name: node["resources"] for name, node in config["available_node_types"].items()}
    assert any(LLM_RESOURCE in r for r in offered.values())
    assert any(EMBEDDING_RESOURCE in r for r in offered.values())
    assert any(HOST_RESOURCE in r for r in offered.values())
    assert "~/.ray/auth_token" in config["file_mounts"]
    for line in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in line:
            assert "RAY_AUTH_MODE=token" in line
    assert any("qdrant" in line for line in config["head_setup_commands"])


def test_the_launcher_configs_run_command_is_one_simulacra_accepts() -> None:
    header = (ROOT / "ray_config.yaml").read_text().split("cluster_name:")[0]
    lines = [ln.lstrip("# ").rstrip("\\") for ln in header.splitlines()]
    start = next(i for i, ln in enumerate(lines) if "simulacra run" in ln)
    command = " ".join(lines[start : start + 2])
    args = build_parser().parse_args(simulacra_command(command))
    assert args.address == "auto" and args.qdrant_url


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["template"]["spec"]["containers"]


def _start_resources(params: dict[str, Any]) -> dict[str, float]:
    raw = params.get("resources")
    return json.loads(json.loads(raw)) if raw else {}  # KubeRay's quoted JSON string


def test_the_raycluster_places_the_services_by_resource_and_authenticates() -> None:
    (cluster,) = manifests("raycluster.yaml")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    spec = cluster["spec"]
    assert spec["rayVersion"] == metadata.version("ray")
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    head = _start_resources(spec["headGroupSpec"]["rayStartParams"])
    assert EMBEDDING_RESOURCE in head
    assert HOST_RESOURCE in _start_resources(groups["hosts"]["rayStartParams"])
    (llm_group,) = [
        g for g in groups.values() if LLM_RESOURCE in _start_resources(g["rayStartParams"])
    ]
    (llm_container,) = _containers(llm_group)
    assert llm_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    everything = [spec["headGroupSpec"], *groups.values()]
    for group in everything:
        for container in _containers(group):
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert (
                env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "simulacra-ray-token"
            )
            assert env["QDRANT_URL"]["value"] == qdrant_url()


def qdrant_url() -> str:
    """The URL the Qdrant manifest's service answers at, inside the cluster."""
    (service,) = [m for m in manifests("qdrant.yaml") if m["kind"] == "Service"]
    (port,) = service["spec"]["ports"]
    assert service["spec"]["type"] == "ClusterIP"  # not reachable from outside the cluster
    return f"http://{service['metadata']['name']}:{port['port']}"


def test_the_qdrant_server_keeps_its_storage_on_a_volume() -> None:
    (stateful,) = [m for m in manifests("qdrant.yaml") if m["kind"] == "StatefulSet"]
    (container,) = stateful["spec"]["template"]["spec"]["containers"]
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/qdrant/storage"
    assert stateful["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == mount["name"]


def test_the_rayjob_runs_a_command_simulacra_accepts_on_that_cluster() -> None:
    (job,) = manifests("rayjob.yaml")
    (cluster,) = manifests("raycluster.yaml")
    assert job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    args = build_parser().parse_args(simulacra_command(job["spec"]["entrypoint"]))
    assert args.command == "run" and args.address == "auto"
    assert args.qdrant_url and args.out


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml", "qdrant.yaml"])
def test_every_manifest_names_its_kind_and_itself(name: str) -> None:
    for doc in manifests(name):
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


def test_hosts_go_round_robin_over_the_live_nodes_offering_the_hosts_resource() -> None:
    from cluster.placement import host_nodes

    nodes = [
        {"NodeID": "c", "Alive": True, "Resources": {HOST_RESOURCE: 1.0}},
        {"NodeID": "a", "Alive": True, "Resources": {HOST_RESOURCE: 1.0}},
        {"NodeID": "b", "Alive": False, "Resources": {HOST_RESOURCE: 1.0}},
        {"NodeID": "gpu", "Alive": True, "Resources": {LLM_RESOURCE: 1.0}},
    ]
    assert host_nodes(nodes) == ["a", "c"]  # the dead one and the LLM's node left out
    plain = [{"NodeID": n, "Alive": True, "Resources": {"CPU": 1.0}} for n in ("y", "x")]
    assert host_nodes(plain) == ["x", "y"]  # no node offers it: every live node
