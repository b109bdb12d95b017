"""``OpenAIEngine.check_server`` and ``simulacra run --engine openai`` before anything starts:
a server that is down, that does not serve the model, or that ignores JSON schemas is refused
naming its URL."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cluster.run import RunError, check_engine
from serving.config import EngineConfig
from serving.engines.openai import PROBE_SCHEMA, OpenAIEngine, UpstreamError
from tests.unit.test_openai_engine import _chat_response

URL = "http://127.0.0.1:9/v1"


def _server(answer: str, models: tuple[str, ...] = ("smollm2", "alice")) -> Callable:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "x"} for m in models]
            return httpx.Response(200, json={"object": "list", "data": data})
        body = json.loads(request.content)
        assert body["response_format"]["json_schema"]["schema"] == PROBE_SCHEMA
        return httpx.Response(200, json=_chat_response(answer))

    return handle


def _engine(handle: Callable[[httpx.Request], httpx.Response], **config: Any) -> OpenAIEngine:
    cfg = EngineConfig(engine="openai", model="smollm2", base_url=URL, **config)
    return OpenAIEngine(cfg, sync_http_client=httpx.Client(transport=httpx.MockTransport(handle)))


def test_a_server_that_decodes_under_the_schema_passes():
    _engine(_server('{"ok":true}')).check_server()


def test_a_server_that_ignores_the_schema_is_refused_with_its_answer():
    engine = _engine(_server("Fresh bread is warm and soft."))
    with pytest.raises(UpstreamError, match=r"127\.0\.0\.1:9/v1 does not decode under a JSON "):
        engine.check_server()


def test_a_server_without_the_model_is_refused_naming_what_it_serves():
    engine = _engine(_server('{"ok":true}', models=("llama3", "alice")))
    with pytest.raises(UpstreamError, match=r"does not serve 'smollm2' \(it serves: alice, llama3"):
        engine.check_server()


def test_a_server_that_fails_the_probe_is_refused():
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return _server("")(request)
        return httpx.Response(500, json={"error": {"message": "EngineCore died"}})

    with pytest.raises(UpstreamError, match=r"failed a JSON-schema request.*EngineCore died"):
        _engine(handle).check_server()


def test_a_run_against_a_server_that_is_not_up_fails_before_anything_starts():
    # nothing listens on port 9 (discard) of the loopback here: the connection is refused
    config = EngineConfig(engine="openai", model="smollm2", base_url=URL, timeout_s=5)
    with pytest.raises(RunError, match=r"--base-url: cannot list the models of http://127"):
        check_engine(config, fresh=True)
