"""Servers the tests start: a free loopback port, and a server command run as a user runs it
(``vllm serve``, ``simulacra serve``), waited for until it answers and stopped with its
process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    ready_url: str,
    log_path: Path,
    start_s: float,
    headers: Mapping[str, str] | None = None,
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[None]:
    """Runs ``command`` (its output in ``log_path``) until ``ready_url`` answers 2xx, within
    ``start_s`` (else the test fails with the log's tail); on exit sends ``stop`` to its process
    group, then SIGKILL after a minute."""
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + start_s
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"{command[:4]} did not come up within {start_s:.0f} s:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, headers=dict(headers or {}), timeout=2).is_success:
                    break
            time.sleep(1)
        yield
    finally:
        if server.poll() is None:
            os.killpg(server.pid, stop)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
