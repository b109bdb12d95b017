"""The engine contract (tests/contract) on the ``hf`` engine, in this process: smollm2 and two
LoRA adapters."""

from collections.abc import Iterator

import pytest

from serving.config import EngineConfig
from serving.engines.hf import HFEngine
from tests.contract.engine_contract import Backend, EngineContract, EngineTraits

HF = EngineTraits(name="hf", batch_invariant=True)


@pytest.fixture(scope="module")
def backend(smollm2_adapters: dict[str, str]) -> Iterator[Backend]:
    engine = HFEngine(EngineConfig(model="smollm2", adapters=smollm2_adapters))
    engine.start()
    scheduler = engine._scheduler

    def running() -> int:
        return len(scheduler.running) + len(scheduler.waiting)

    yield Backend(engine, HF, engine._tokenizer, running)
    engine.close()


class TestHFEngine(EngineContract):
    pass
