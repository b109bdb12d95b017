"""The vLLM tier's fixtures (``pytest -m vllm`` in ``.venv-vllm``): vLLM's own OpenAI server on
smollm2 and two LoRA adapters, started once per session as a user would start it
(``serving.vllm_server``)."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.config import EngineConfig

SERVER_START_S = 600  # a cold start compiles the model (about 90 s here), then it is cached
KV_CACHE_MB = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(server, base_url, log_path)
        yield base_url
    finally:
        _stop(server)


def _wait_until_up(server: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"vllm serve exited with {server.returncode} at start:\n{tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    _stop(server)
    pytest.fail(f"vllm serve not up within {SERVER_START_S} s; log: {log_path}")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
