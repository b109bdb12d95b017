"""Agents hosted in a Ray actor, calling the LLM and embedding services through Serve."""

from datetime import datetime, timedelta

import pytest
import ray

from actors.host import remote_host
from actors.mind.persona import Persona
from tests.integration.conftest import Services

pytestmark = pytest.mark.integration

PERSONAS = [
    Persona("Ayesha Khan", 24, "curious", "studies literature", home="dorm", adapter="alice"),
    Persona("Wolfgang Schulz", 21, "hard-working", "studies chemistry", home="dorm", adapter="bob"),
]


async def test_a_ray_host_steps_its_agents_through_the_services(services: Services) -> None:
    host = remote_host().remote([p.to_dict() for p in PERSONAS], seed=1)
    assert await host.ping.remote() is True
    assert await host.names.remote() == [p.name for p in PERSONAS]
    start = datetime(2023, 2, 13, 7, 0)
    seen = {p.name: 0 for p in PERSONAS}
    calls_made = 0
    before = len(await services.llm.batch_sizes())
    for i in range(4):
        now = start + timedelta(minutes=20 * i)
        obs = {
            "Ayesha Khan": [
                {
                    "kind": "agent",
                    "subject": "Wolfgang Schulz",
                    "description": "Wolfgang Schulz is reading",
                    "location": "library",
                    "distance": 2.0,
                }
            ],
            "Wolfgang Schulz": [],
        }
        result = await host.step.remote(obs, now.isoformat(), i)
        calls_made += result["calls"]
        for name, acts in result["actions"].items():
            seen[name] += len(acts)
    assert all(n > 0 for n in seen.values()) and calls_made > 0
    executed = (await services.llm.batch_sizes())[before:]
    assert max(executed) > 1  # the two agents' requests met in one batch

    state = await host.get_state.remote()
    twin = remote_host().remote([p.to_dict() for p in PERSONAS], seed=1)
    await twin.set_state.remote(state)
    assert await twin.get_state.remote() == state

    reply = await host.interview.remote("Ayesha Khan", "Who did you see?", start.isoformat())
    assert reply["agent"] == "Ayesha Khan" and isinstance(reply["answer"], str)
    drained = await host.drain.remote()
    calls, traces = drained["llm_calls"], drained["retrievals"]
    assert {r["agent"] for r in calls} == {p.name for p in PERSONAS}
    assert 0 in {r["step"] for r in calls} and {r["step"] for r in calls} <= {0, 1, 2, 3, None}
    mine = [r for r in traces if r["agent"] == "Ayesha Khan"]
    assert mine and {"score", "rank", "returned"} <= set(mine[0])

    memories = await host.export_memories.remote()
    await twin.restore.remote(state, memories, start.isoformat())
    assert await twin.export_memories.remote() == memories
    await host.close.remote()
    await twin.close.remote()
    ray.kill(host)
    ray.kill(twin)
