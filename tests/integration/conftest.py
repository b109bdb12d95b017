"""Integration fixtures: local Ray and the real services, started once per session."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from serving.clients import ServeEmbedder, ServeLLM
from serving.config import EngineConfig
from tests.servers import free_port

API_KEY = "test-key"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    from cluster.ray_runtime import init_ray

    init_ray(num_cpus=2)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@dataclass(frozen=True)
class Services:
    llm: ServeLLM
    embedder: ServeEmbedder
    base_url: str
    config: EngineConfig


@pytest.fixture(scope="session")
def services(ray_cluster: None) -> Services:
    """The LLM service (hf engine, tiny model and its adapters) and the embedding service."""
    from serving.service import ServiceOptions, start_services

    port = free_port()
    config = EngineConfig(engine="hf", model="tiny", max_batch_size=32, batch_wait_ms=10)
    llm, embedder = start_services(config, ServiceOptions(port=port, api_key=API_KEY))
    assert embedder is not None
    return Services(llm, embedder, f"http://127.0.0.1:{port}/v1", config)


def _redeploy(services: Services) -> None:
    from urllib.parse import urlparse

    from serving.service import ServiceOptions, start_services

    port = urlparse(services.base_url).port
    assert port is not None
    start_services(services.config, ServiceOptions(port=port, api_key=API_KEY))


@pytest.fixture
def restores_services(services: Services) -> Iterator[None]:
    """For a test whose run deploys its own LLM service over the session's: puts the session's
    back afterwards, so later tests find the services they expect."""
    yield
    _redeploy(services)


@pytest.fixture(scope="module")
def restores_services_after_module(services: Services) -> Iterator[None]:
    """The same, once after a whole module."""
    yield
    _redeploy(services)
