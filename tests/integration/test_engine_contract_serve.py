"""The engine contract (tests/contract) on the ``openai`` engine against ``simulacra serve``
(its own private local cluster: Ray, Serve's HTTP proxy, the hf engine on smollm2 and two LoRA
adapters), and a run of three of the town's people with that server as its upstream."""

import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from cluster.run import RunOptions, read_manifest, start_run
from scenarios.loader import parse_scenario
from serving.config import EngineConfig
from serving.engines.openai import OpenAIEngine
from tests.contract.engine_contract import Backend, EngineContract, EngineTraits
from tests.servers import free_port, running_server
from tests.town_checks import eight_of_the_town

pytestmark = pytest.mark.integration

# the hf engine behind HTTP: batch-invariant, its radix-tree prefix cache reported in usage
SIMULACRA_SERVE = EngineTraits(name="openai -> simulacra serve", batch_invariant=True)
API_KEY = "contract-key"


@pytest.fixture(scope="module")
def simulacra_server(
    smollm2_adapters: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    adapters = [f"--adapter={n}={p}" for n, p in sorted(smollm2_adapters.items())]
    command = [sys.executable, "-m", "cluster.cli", "serve", "--model", "smollm2", *adapters]
    command += ["--port", str(port), "--api-key", API_KEY]
    log_path = tmp_path_factory.mktemp("simulacra-serve") / "serve.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    # Ctrl-C (SIGINT): it stops its services and Ray
    with running_server(command, f"{base_url}/models", log_path, 300, headers, signal.SIGINT):
        yield base_url


def _engine(base_url: str) -> EngineConfig:
    return EngineConfig(engine="openai", model="smollm2", base_url=base_url, api_key=API_KEY)


@pytest.fixture(scope="module")
async def backend(simulacra_server: str, smollm2_dir: Path) -> AsyncIterator[Backend]:
    engine = OpenAIEngine(_engine(simulacra_server))
    engine.start()
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    yield Backend(engine, SIMULACRA_SERVE, tokenizer)
    await engine.aclose()


class TestOpenAIEngineOnSimulacraServe(EngineContract):
    pass


def test_a_run_with_simulacra_serve_upstream(
    simulacra_server: str, restores_services: None, tmp_path: Path
) -> None:
    town = eight_of_the_town().model_dump(mode="json")
    town["agents"] = [a for a in town["agents"] if a["name"] in ("Owen Castell", "Lucia Castell")]
    for agent in town["agents"]:
        agent["relationships"] = {
            k: v
            for k, v in agent["relationships"].items()
            if k in ("Owen Castell", "Lucia Castell")
        }
    town["events"] = []
    town.pop("measures", None)  # they name the others
    scenario = parse_scenario(town, "two of the town")
    options = RunOptions(engine=_engine(simulacra_server), steps=1, progress=False, seed=5)
    run = start_run(scenario, options, out=tmp_path / "run")
    assert read_manifest(run)["status"] == "finished"
    calls = pq.read_table(run / "llm_calls.parquet").to_pylist()
    assert len(calls) >= 10 and all(c["ok"] for c in calls)
    planned = {
        e["agent"] for e in pq.read_table(run / "events.parquet").to_pylist() if e["kind"] == "plan"
    }
    assert planned == {"Owen Castell", "Lucia Castell"}
