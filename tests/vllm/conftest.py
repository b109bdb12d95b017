"""The vLLM tier's fixtures (``pytest -m vllm`` in ``.venv-vllm``): vLLM's own OpenAI server on
smollm2 and two LoRA adapters, started once per session as a user would start it
(``serving.vllm_server``)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.config import EngineConfig
from tests.servers import free_port, running_server

SERVER_START_S = 600  # a cold start compiles the model (about 90 s here), then it is cached
KV_CACHE_MB = 1024


def vllm_config(adapters: dict[str, str], **kwargs) -> EngineConfig:
    """The tier's vllm engine settings: smollm2, the adapters, a small KV cache."""
    return EngineConfig(
        engine="vllm",
        model="smollm2",
        adapters=adapters,
        max_lora_rank=8,
        kv_cache_mb=KV_CACHE_MB,
        **kwargs,
    )


@pytest.fixture(scope="session")
def vllm_server(
    smollm2_dir: Path, smollm2_adapters: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The base URL of ``vllm serve`` (its OpenAI server module) on smollm2 and the adapters."""
    from serving.vllm_server import server_command

    port = free_port()
    config = vllm_config(smollm2_adapters)
    command = server_command(config, str(smollm2_dir), smollm2_adapters, port)
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    with running_server(command, f"{base_url}/models", log_path, SERVER_START_S):
        yield base_url
